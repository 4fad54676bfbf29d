"""Stamping filled-in values onto the original PDF: placement, rotation, fonts, images.

Every PDF and image is built here with reportlab, pypdf and Pillow. PDFium (the renderer
the portal shows pages with) reads the results back: the characters it finds and where,
and the pixels it draws. Field rects are made the way the editor makes them, in display
space, and turned into PDF space with ``display_to_pdf``.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypdfium2
import pypdfium2.raw as pdfium_c
import pytest
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter
from pypdf.generic import RectangleObject
from reportlab.pdfgen import canvas

from portal.documents.authoring.fonts import _fonts
from portal.documents.geometry import Rect, display_to_pdf, pdf_to_display
from portal.documents.inspect import PageBox, inspect_pdf
from portal.documents.pages import PDFIUM_LOCK
from portal.documents.stamp import ELLIPSIS, TEXT_MIN_SIZE, Stamp, _fit_text, stamp_pdf

ARTIFACTS = Path(__file__).parent / "artifacts"
LETTER = (0.0, 0.0, 612.0, 792.0)

Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------- builders


@dataclass(frozen=True)
class PageSpec:
    """A test page: media box, optional crop box, /Rotate, and what the original shows."""

    media: Box = LETTER
    crop: Box | None = None
    rotation: int = 0
    label: bool = True  # "Original page N" in a corner away from the fields
    grey: Rect | None = None  # a mid-grey block, in display space, under an image field


def _display_size(spec: PageSpec) -> tuple[float, float]:
    x0, y0, x1, y1 = spec.crop or spec.media
    w, h = x1 - x0, y1 - y0
    return (h, w) if spec.rotation in (90, 270) else (w, h)


def _box(spec: PageSpec, number: int = 1) -> PageBox:
    x0, y0, x1, y1 = spec.crop or spec.media
    return PageBox(number, x0, y0, x1, y1, spec.rotation)


def build_pdf(specs: Sequence[PageSpec]) -> bytes:
    """One page per spec, drawn in absolute user space, then given its boxes and /Rotate."""
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(700, 900))
    for number, spec in enumerate(specs, start=1):
        box = _box(spec, number)
        if spec.grey is not None:
            grey = display_to_pdf(box, spec.grey)
            c.setFillColorRGB(0.6, 0.6, 0.6)
            c.rect(grey.x, grey.y, grey.w, grey.h, stroke=0, fill=1)
        if spec.label:
            # Near the display bottom-right, well away from the fields near the top-left.
            width, height = _display_size(spec)
            anchor = display_to_pdf(box, Rect(width - 250, height - 120, 0, 0))
            c.setFillColorRGB(0, 0, 0)
            c.setFont("Helvetica", 12)
            c.drawString(anchor.x, anchor.y, f"Original page {number}")
        c.showPage()
    c.save()

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(out.getvalue())))
    for page, spec in zip(writer.pages, specs, strict=True):
        page.mediabox = RectangleObject(spec.media)
        if spec.crop:
            page.cropbox = RectangleObject(spec.crop)
        if spec.rotation:
            page.rotate(spec.rotation)
    result = io.BytesIO()
    writer.write(result)
    return result.getvalue()


def signature_png(colour: tuple[int, int, int, int] = (0, 0, 0, 255)) -> bytes:
    """300 x 100, transparent, with a 6 px frame and a filled marker square at the top-left."""
    image = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 299, 99), outline=colour, width=6)
    draw.rectangle((0, 0, 39, 39), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def scribble_png() -> bytes:
    """A drawn-looking signature: a blue pen stroke on a transparent background."""
    image = Image.new("RGBA", (600, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    points = [
        (20 + i * 5.6, 110 - 55 * math.sin(i / 7.0) * math.exp(-i / 140) + (i % 23) * 0.6)
        for i in range(100)
    ]
    draw.line(points, fill=(20, 40, 120, 255), width=7, joint="curve")
    draw.line([(60, 165), (540, 150)], fill=(20, 40, 120, 255), width=5)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --------------------------------------------------------------------------- readers


@contextmanager
def pdfium_page(data: bytes, index: int) -> Iterator[Any]:
    with PDFIUM_LOCK:
        pdf = pypdfium2.PdfDocument(data)
        try:
            page = pdf[index]
            try:
                yield page
            finally:
                page.close()
        finally:
            pdf.close()


@dataclass(frozen=True)
class Char:
    text: str
    box: Box  # tight box, PDF user space
    angle: float  # degrees, as PDFium reports it


def page_chars(data: bytes, index: int) -> list[Char]:
    """Every visible character PDFium finds on a page (no generated spaces or line breaks)."""
    with pdfium_page(data, index) as page:
        textpage = page.get_textpage()
        try:
            chars = []
            for i in range(textpage.count_chars()):
                if pdfium_c.FPDFText_IsGenerated(textpage, i):
                    continue
                text = chr(pdfium_c.FPDFText_GetUnicode(textpage, i))
                if text.isspace():
                    continue
                angle = math.degrees(pdfium_c.FPDFText_GetCharAngle(textpage, i))
                chars.append(Char(text, textpage.get_charbox(i), angle))
            return chars
        finally:
            textpage.close()


def text_in(data: bytes, index: int, rect: Rect | None = None) -> str:
    """The text PDFium extracts from a PDF rect of a page (the whole page without one)."""
    with pdfium_page(data, index) as page:
        textpage = page.get_textpage()
        try:
            if rect is None:
                return str(textpage.get_text_range())
            return str(textpage.get_text_bounded(rect.x, rect.y, rect.x + rect.w, rect.y + rect.h))
        finally:
            textpage.close()


def render(data: bytes, index: int, scale: float = 1) -> Image.Image:
    with pdfium_page(data, index) as page:
        bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255))
        try:
            return bitmap.to_pil()
        finally:
            bitmap.close()


def level(image: Image.Image, x: int, y: int) -> int:
    """The grey level (0 black, 255 white) of one pixel."""
    value = image.convert("L").getpixel((x, y))
    assert isinstance(value, int)
    return value


def dark_mask(image: Image.Image, level: int = 110) -> Image.Image:
    return image.convert("L").point(lambda v: 255 if v < level else 0)


def resources_in(owner: Any, kind: str) -> list[Any]:
    """References to the ``kind`` ("/Font", "/XObject") resources a page or form uses,
    its own and those of the forms it draws, however deeply nested."""
    found: list[Any] = []
    resources = owner.get("/Resources")
    if resources is None:
        return found
    found.extend(resources.get_object().get(kind, {}).values())
    for ref in resources.get_object().get("/XObject", {}).values():
        if ref.get_object()["/Subtype"] == "/Form":
            found.extend(resources_in(ref.get_object(), kind))
    return found


def inside(box: Box, rect: Rect, tolerance: float = 0.5) -> bool:
    left, bottom, right, top = box
    return (
        left >= rect.x - tolerance
        and bottom >= rect.y - tolerance
        and right <= rect.x + rect.w + tolerance
        and top <= rect.y + rect.h + tolerance
    )


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def contains_point(rect: Rect, point: tuple[float, float]) -> bool:
    x, y = point
    return rect.x <= x <= rect.x + rect.w and rect.y <= y <= rect.y + rect.h


# --------------------------------------------------------------------------- text placement

PLACEMENT = {
    "rot0": PageSpec(),
    "rot90": PageSpec(rotation=90),
    "rot180": PageSpec(rotation=180),
    "rot270": PageSpec(rotation=270),
    "mediabox-at-50-50": PageSpec(media=(50, 50, 662, 842)),
    "mediabox-at-50-50-rot90": PageSpec(media=(50, 50, 662, 842), rotation=90),
    "cropped-rot270": PageSpec(crop=(36, 72, 576, 720), rotation=270),
    "negative-origin-rot180": PageSpec(media=(-300, -400, 312, 392), rotation=180),
}
NAMES = ("Muñoz García", "Łukasiewicz Żółć", "Παπαδοπούλου")
# Display rects (top-left origin, y down), as the editor stores them before conversion.
NAME_FIELDS = (Rect(72, 90, 240, 24), Rect(72, 150, 200, 20), Rect(300, 200, 180, 30))


@functools.cache
def placement_pdf() -> bytes:
    return build_pdf(list(PLACEMENT.values()))


@functools.cache
def placement_boxes() -> tuple[PageBox, ...]:
    return inspect_pdf(placement_pdf()).pages


def placement_stamps() -> list[Stamp]:
    return [
        Stamp(box.number, display_to_pdf(box, field), "text", text=name)
        for box in placement_boxes()
        for field, name in zip(NAME_FIELDS, NAMES, strict=True)
    ]


@functools.cache
def placement_result() -> bytes:
    return stamp_pdf(placement_pdf(), placement_boxes(), placement_stamps())


PLACEMENT_PARAMS = [pytest.param(i, id=label) for i, label in enumerate(PLACEMENT)]


@pytest.mark.parametrize("index", PLACEMENT_PARAMS)
def test_each_value_lands_inside_its_field_and_nowhere_else(index: int) -> None:
    box = placement_boxes()[index]
    spec = list(PLACEMENT.values())[index]
    assert (box.x0, box.y0, box.rotation) == (*(spec.crop or spec.media)[:2], spec.rotation)
    stamps = [s for s in placement_stamps() if s.page == box.number]
    result = placement_result()

    for stamp in stamps:
        assert text_in(result, index, stamp.rect).strip() == stamp.text

    # Each visible character is either in exactly one field (that field's value, in
    # order, wholly inside the rect) or part of the original page's own text.
    outside: list[str] = []
    found: dict[str, list[Char]] = {s.text: [] for s in stamps}
    for char in page_chars(result, index):
        owners = [s for s in stamps if contains_point(s.rect, centre(char.box))]
        assert len(owners) <= 1
        if owners:
            assert inside(char.box, owners[0].rect), (char, owners[0].rect)
            found[owners[0].text].append(char)
        else:
            outside.append(char.text)
    for text, chars in found.items():
        assert "".join(c.text for c in chars) == text.replace(" ", "")
    assert "".join(outside) == f"Originalpage{box.number}"


@pytest.mark.parametrize("index", PLACEMENT_PARAMS)
def test_text_reads_upright_on_rotated_pages(index: int) -> None:
    box = placement_boxes()[index]
    stamps = [s for s in placement_stamps() if s.page == box.number]
    chars = page_chars(placement_result(), index)
    for stamp in stamps:
        mine = [c for c in chars if contains_point(stamp.rect, centre(c.box))]
        assert len(mine) == len(stamp.text.replace(" ", ""))
        # In display space (what the viewer sees) the characters run left to right...
        seen = [pdf_to_display(box, Rect(*centre(c.box), 0, 0)) for c in mine]
        assert all(b.x > a.x for a, b in itertools.pairwise(seen)), seen
        # ...on one horizontal line (a character's centre moves with its shape, a little)...
        assert max(p.y for p in seen) - min(p.y for p in seen) < 4
        # ...and PDFium's (clockwise) glyph angle undoes the page's /Rotate.
        assert all(round(c.angle + box.rotation) % 360 == 0 for c in mine), mine


def test_rotated_text_renders_as_a_horizontal_line() -> None:
    index = list(PLACEMENT).index("rot90")
    box = placement_boxes()[index]
    field = NAME_FIELDS[0]
    image = render(placement_result(), index)
    assert image.size == (math.ceil(box.display_width), math.ceil(box.display_height))
    region = (int(field.x), int(field.y), int(field.x + field.w), int(field.y + field.h))
    ink = dark_mask(image.crop(region)).getbbox()
    assert ink is not None
    left, top, right, bottom = ink
    assert right - left > 3 * (bottom - top), ink  # a line of text, not a column


def test_unicode_names_come_back_exactly() -> None:
    result = placement_result()
    stamps = [s for s in placement_stamps() if s.page == 1]
    assert [text_in(result, 0, s.rect).strip() for s in stamps] == list(NAMES)
    assert {"Łukasiewicz", "Παπαδοπούλου", "Muñoz"} <= set(text_in(result, 0).split())


def test_original_content_is_kept_and_unstamped_pages_untouched() -> None:
    specs = [PageSpec(), PageSpec(rotation=90), PageSpec()]
    original = build_pdf(specs)
    boxes = inspect_pdf(original).pages
    stamp = Stamp(2, display_to_pdf(boxes[1], Rect(72, 90, 200, 20)), "text", text="Muñoz")
    result = stamp_pdf(original, boxes, [stamp])

    before, after = PdfReader(io.BytesIO(original)), PdfReader(io.BytesIO(result))
    assert len(after.pages) == 3
    for index in (0, 2):
        old, new = before.pages[index].get_contents(), after.pages[index].get_contents()
        assert old is not None and new is not None
        assert new.get_data() == old.get_data()
    assert "Original page 2" in text_in(result, 1)
    assert text_in(result, 1, stamp.rect).strip() == "Muñoz"
    assert after.pages[1].rotation == 90
    assert [float(v) for v in after.pages[1].mediabox] == [float(v) for v in LETTER]


# --------------------------------------------------------------------------- long text


def test_long_text_shrinks_to_fit_the_width() -> None:
    original = build_pdf([PageSpec(label=False)])
    box = inspect_pdf(original).pages[0]
    short = Stamp(1, display_to_pdf(box, Rect(72, 90, 130, 20)), "text", text="Ana Muñoz")
    longer = Stamp(
        1, display_to_pdf(box, Rect(72, 150, 130, 20)), "text", text="Maximiliano Łukasiewicz"
    )
    result = stamp_pdf(original, [box], [short, longer])
    assert text_in(result, 0, longer.rect).strip() == "Maximiliano Łukasiewicz"
    chars = page_chars(result, 0)

    def a_height(stamp: Stamp) -> float:
        mine = [c for c in chars if contains_point(stamp.rect, centre(c.box))]
        assert all(inside(c.box, stamp.rect) for c in mine)
        a = next(c for c in mine if c.text == "a")
        return a.box[3] - a.box[1]

    assert a_height(longer) < 0.85 * a_height(short)


def test_text_too_long_even_at_the_smallest_size_is_cut_with_an_ellipsis() -> None:
    original = build_pdf([PageSpec(label=False)])
    box = inspect_pdf(original).pages[0]
    name = "Maximiliano Alejandro de la Santísima Trinidad Muñoz-Łukasiewicz Παπαδοπούλου"
    stamp = Stamp(1, display_to_pdf(box, Rect(72, 90, 120, 14)), "text", text=name)
    result = stamp_pdf(original, [box], [stamp])

    shown = text_in(result, 0, stamp.rect).strip()
    assert shown.endswith(ELLIPSIS) and len(shown) > 10
    assert name.startswith(shown[:-1])
    chars = page_chars(result, 0)
    assert chars and all(inside(c.box, stamp.rect) for c in chars)
    assert "".join(c.text for c in chars) == shown.replace(" ", "")


def test_fit_text_rules() -> None:
    font = _fonts().regular
    assert _fit_text("Ana", font, 100, 12, TEXT_MIN_SIZE) == ("Ana", 12)
    text, size = _fit_text("Ana María Muñoz", font, 70, 12, TEXT_MIN_SIZE)
    assert text == "Ana María Muñoz" and TEXT_MIN_SIZE <= size < 12
    text, size = _fit_text("Ana María Muñoz " * 5, font, 50, 12, TEXT_MIN_SIZE)
    assert size == TEXT_MIN_SIZE and text.endswith(ELLIPSIS) and not text[:-1].endswith(" ")
    assert text[:-1] and ("Ana María Muñoz " * 5).startswith(text[:-1])


def test_typed_signature_is_larger_and_oblique() -> None:
    original = build_pdf([PageSpec(label=False)])
    box = inspect_pdf(original).pages[0]
    typed = Stamp(1, display_to_pdf(box, Rect(72, 90, 300, 40)), "signature_text", text="Ana")
    plain = Stamp(1, display_to_pdf(box, Rect(72, 190, 300, 40)), "text", text="Ana")
    result = stamp_pdf(original, [box], [typed, plain])
    assert text_in(result, 0, typed.rect).strip() == "Ana"
    assert text_in(result, 0, plain.rect).strip() == "Ana"
    chars = page_chars(result, 0)
    a_typed, a_plain = (
        next(c for c in chars if contains_point(s.rect, centre(c.box))) for s in (typed, plain)
    )
    assert inside(a_typed.box, typed.rect)
    assert a_typed.box[3] - a_typed.box[1] > 1.5 * (a_plain.box[3] - a_plain.box[1])
    fonts = resources_in(PdfReader(io.BytesIO(result)).pages[0], "/Font")
    names = {str(f.get_object()["/BaseFont"]) for f in fonts}
    assert any("Oblique" in n for n in names), names


# --------------------------------------------------------------------------- images and checks

IMAGE_FIELD = Rect(100, 150, 200, 100)  # display space; the 3:1 image fits as 200 x 66.7
GREY = Rect(80, 130, 240, 140)


@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_image_is_fitted_centred_upright_and_transparent(rotation: int) -> None:
    spec = PageSpec(media=(50, 50, 662, 842), rotation=rotation, label=False, grey=GREY)
    original = build_pdf([spec])
    box = inspect_pdf(original).pages[0]
    stamp = Stamp(1, display_to_pdf(box, IMAGE_FIELD), "image", image=signature_png())
    image = render(stamp_pdf(original, [box], [stamp]), 0)

    ink = dark_mask(image).getbbox()
    assert ink is not None, "the image was not drawn"
    left, top, right, bottom = ink
    drawn_h = 200 / 3
    expected = (100, 150 + (100 - drawn_h) / 2, 300, 150 + (100 + drawn_h) / 2)
    assert all(abs(a - b) <= 1.5 for a, b in zip(ink, expected, strict=True)), (ink, expected)

    # Transparent pixels show the page under them (the grey block), not white or black.
    assert 130 < level(image, 200, 200) < 180
    # The marker square is at the top-left as the viewer sees it: the image is upright.
    assert level(image, left + 12, top + 12) < 60
    assert 130 < level(image, right - 15, bottom - 15) < 180
    assert 130 < level(image, left + 12, bottom - 15) < 180


def test_same_image_on_several_pages_is_embedded_once() -> None:
    specs = [PageSpec(label=False), PageSpec(label=False, rotation=90)]
    original = build_pdf(specs)
    boxes = inspect_pdf(original).pages
    png = signature_png()
    stamps = [
        Stamp(b.number, display_to_pdf(b, Rect(72, y, 150, 50)), "image", image=png)
        for b in boxes
        for y in (90, 200)
    ]
    result = stamp_pdf(original, boxes, stamps)
    pages: list[Any] = list(PdfReader(io.BytesIO(result)).pages)
    # Each page draws the image through a form; every form points at the same image.
    drawn = [ref for page in pages for ref in resources_in(page, "/XObject")]
    images = {
        (ref.idnum, ref.generation) for ref in drawn if ref.get_object()["/Subtype"] == "/Image"
    }
    assert len(images) == 1
    for index in range(2):
        ink = dark_mask(render(result, index)).getbbox()
        assert ink is not None


@pytest.mark.parametrize("rotation", [0, 270])
def test_check_mark_is_drawn_inside_its_field(rotation: int) -> None:
    original = build_pdf([PageSpec(rotation=rotation, label=False)])
    box = inspect_pdf(original).pages[0]
    field = Rect(100, 150, 20, 20)
    stamp = Stamp(1, display_to_pdf(box, field), "check")
    image = render(stamp_pdf(original, [box], [stamp]), 0)
    mask = dark_mask(image)
    ink = mask.getbbox()
    assert ink is not None, "no check mark"
    left, top, right, bottom = ink
    assert left >= field.x - 1 and top >= field.y - 1
    assert right <= field.x + field.w + 1 and bottom <= field.y + field.h + 1
    assert right - left >= 0.6 * field.w and bottom - top >= 0.5 * field.h
    assert mask.histogram()[255] > 40


# --------------------------------------------------------------------------- appendix, metadata


def test_appendix_pages_are_appended_and_metadata_is_set() -> None:
    original = build_pdf([PageSpec(), PageSpec()])
    boxes = inspect_pdf(original).pages
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(595, 842))
    for title in ("Certificate of completion", "Signing history"):
        c.drawString(72, 770, title)
        c.showPage()
    c.save()
    stamp = Stamp(1, display_to_pdf(boxes[0], Rect(72, 90, 200, 20)), "text", text="Muñoz")
    metadata = {
        "/Title": "Rental agreement \u2013 Łukasiewicz",
        "/Subject": "Signed and sealed",
        "/Producer": "Signing Portal",
        "/PortalEnvelope": "env-123",
    }
    result = stamp_pdf(original, boxes, [stamp], appendix=out.getvalue(), metadata=metadata)

    reader = PdfReader(io.BytesIO(result))
    assert len(reader.pages) == 4
    assert "Certificate of completion" in text_in(result, 2)
    assert "Signing history" in text_in(result, 3)
    assert [float(v) for v in reader.pages[3].mediabox] == [0, 0, 595, 842]
    assert reader.metadata is not None
    for key, value in metadata.items():
        assert reader.metadata[key] == value


def test_no_stamps_still_gives_a_valid_copy() -> None:
    original = build_pdf([PageSpec()])
    result = stamp_pdf(original, inspect_pdf(original).pages, [], metadata={"Title": "Copy"})
    reader = PdfReader(io.BytesIO(result))
    assert len(reader.pages) == 1 and reader.metadata is not None
    assert reader.metadata["/Title"] == "Copy"
    assert "Original page 1" in text_in(result, 0)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("page", [0, 3, -1])
def test_stamp_on_a_missing_page_is_refused(page: int) -> None:
    original = build_pdf([PageSpec(), PageSpec()])
    boxes = inspect_pdf(original).pages
    stamp = Stamp(page, Rect(72, 72, 100, 20), "text", text="x")
    with pytest.raises(ValueError, match=f"page {page}, but the document has pages 1 to 2"):
        stamp_pdf(original, boxes, [stamp])


def test_bad_stamps_are_refused_with_a_message() -> None:
    original = build_pdf([PageSpec(), PageSpec()])
    boxes = inspect_pdf(original).pages
    rect = Rect(72, 72, 100, 20)
    with pytest.raises(ValueError, match="no page box"):
        stamp_pdf(original, boxes[:1], [Stamp(2, rect, "text", text="x")])
    with pytest.raises(ValueError, match="has no image"):
        stamp_pdf(original, boxes, [Stamp(1, rect, "image")])
    with pytest.raises(ValueError, match="could not be read as a PNG or JPEG"):
        stamp_pdf(original, boxes, [Stamp(1, rect, "image", image=b"not an image")])
    with pytest.raises(ValueError, match="empty rectangle"):
        stamp_pdf(original, boxes, [Stamp(1, Rect(72, 72, 0, 20), "check")])
    with pytest.raises(ValueError, match="finite"):
        stamp_pdf(original, boxes, [Stamp(1, Rect(math.nan, 72, 10, 20), "check")])


# --------------------------------------------------------------------------- a sample to look at


def test_sample_page_for_people_to_look_at() -> None:
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(612, 792))
    c.setFont("Helvetica-Bold", 18)
    c.drawString(72, 720, "Service agreement")
    c.setFont("Helvetica", 10)
    c.drawString(72, 700, "Please fill in the fields below and sign.")
    rows = [("Full name", 640), ("Date", 590), ("Company", 540)]
    for label, y in rows:
        c.drawString(72, y + 6, label)
        c.line(170, y, 470, y)
    c.rect(72, 480, 14, 14)
    c.drawString(94, 484, "I have read and accept the terms.")
    c.drawString(72, 406, "Signature")
    c.line(170, 400, 470, 400)
    c.drawString(72, 336, "Typed signature")
    c.line(170, 330, 470, 330)
    c.showPage()
    c.save()
    original = out.getvalue()
    box = inspect_pdf(original).pages[0]
    stamps = [
        Stamp(1, Rect(172, 640, 296, 22), "text", text="Łukasiewicz Żółć Παπαδοπούλου"),
        Stamp(1, Rect(172, 590, 296, 22), "text", text="26 November 2026"),
        Stamp(1, Rect(172, 540, 296, 22), "text", text="Muñoz & Hijos S.L. " * 4),
        Stamp(1, Rect(72, 480, 14, 14), "check"),
        Stamp(1, Rect(172, 400, 296, 60), "image", image=scribble_png()),
        Stamp(1, Rect(172, 330, 296, 40), "signature_text", text="Ana Muñoz"),
    ]
    result = stamp_pdf(original, [box], stamps)
    ARTIFACTS.mkdir(exist_ok=True)
    render(result, 0, scale=1.5).save(ARTIFACTS / "stamp-sample.png")
    assert text_in(result, 0, stamps[1].rect).strip() == "26 November 2026"
