"""PDF building blocks: upload checks, page geometry, page images.

Every bad upload is built here from reportlab, pypdf and Pillow; no binary fixtures.
The most important test renders filled squares on rotated and offset pages and checks
that ``pdf_to_display`` predicts where they appear in the page image.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
from collections.abc import Callable

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.actions import JavaScript
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    NumberObject,
    RectangleObject,
    TextStringObject,
)
from reportlab.lib.pagesizes import A4, letter
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from portal.documents.geometry import Rect, clamp_display, display_to_pdf, pdf_to_display
from portal.documents.inspect import (
    MAX_BYTES,
    MAX_PAGES,
    PageBox,
    PdfProblem,
    inspect_pdf,
    normalise_rotation,
)
from portal.documents.pages import MAX_PIXELS, MAX_SIDE_PX, RenderedPage, render_pages

A4_W, A4_H = A4  # 595.2755..., 841.8897...
LANDSCAPE = (700.0, 500.0)


# --------------------------------------------------------------------------- builders


def _reportlab(sizes: list[tuple[float, float]], text: bool = True) -> bytes:
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=sizes[0])
    for number, size in enumerate(sizes, start=1):
        c.setPageSize(size)
        if text:
            c.drawString(72, 72, f"Page {number}")
        c.showPage()
    c.save()
    return out.getvalue()


@functools.cache
def good_pdf() -> bytes:
    """Two pages: A4 portrait, US Letter."""
    return _reportlab([A4, letter])


def _edit(data: bytes, change: Callable[[PdfWriter], None]) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    change(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _js_action(script: str = "app.alert('hi');") -> DictionaryObject:
    return DictionaryObject(
        {
            NameObject("/S"): NameObject("/JavaScript"),
            NameObject("/JS"): TextStringObject(script),
        }
    )


def _link(action: DictionaryObject) -> DictionaryObject:
    return DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Link"),
            NameObject("/Rect"): RectangleObject([72, 72, 200, 100]),
            NameObject("/Border"): ArrayObject([NumberObject(0)] * 3),
            NameObject("/A"): action,
        }
    )


def _text_field(actions: DictionaryObject | None = None) -> Callable[[PdfWriter], None]:
    def change(writer: PdfWriter) -> None:
        field = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Annot"),
                NameObject("/Subtype"): NameObject("/Widget"),
                NameObject("/FT"): NameObject("/Tx"),
                NameObject("/T"): TextStringObject("amount"),
                NameObject("/Rect"): RectangleObject([72, 600, 272, 624]),
            }
        )
        if actions is not None:
            field[NameObject("/AA")] = actions
        ref = writer.add_annotation(0, field)
        writer.root_object[NameObject("/AcroForm")] = DictionaryObject(
            {NameObject("/Fields"): ArrayObject([ref.indirect_reference])}
        )

    return change


def truncated() -> bytes:
    data = good_pdf()
    return data[: len(data) // 2]


def truncated_with_end_marker() -> bytes:
    data = good_pdf()
    return data[: len(data) // 2] + b"\n%%EOF\n"


def crop_box_off_the_page() -> bytes:
    # pypdf falls back to the media box; PDFium sees a 0 x 0 page: the parsers disagree.
    def change(writer: PdfWriter) -> None:
        writer.pages[0].cropbox = RectangleObject([1000, 1000, 1200, 1200])

    return _edit(good_pdf(), change)


def encrypted_with_password() -> bytes:
    return _edit(good_pdf(), lambda w: w.encrypt("secret"))


def encrypted_empty_user_password() -> bytes:
    return _edit(good_pdf(), lambda w: w.encrypt("", "owner-only"))


def zero_pages() -> bytes:
    out = io.BytesIO()
    PdfWriter().write(out)
    return out.getvalue()


def png_named_pdf() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(out, format="PNG")
    return out.getvalue()


def text_named_pdf() -> bytes:
    return b"Dear customer,\nplease sign the attached refund form.\n" * 20


def too_many_pages() -> bytes:
    return _reportlab([(200, 200)] * (MAX_PAGES + 1), text=False)


def too_big() -> bytes:
    # A header and 26 MB of padding: the size check must refuse it before any parsing.
    head, tail = b"%PDF-1.7\n%", b"\n%%EOF\n"
    return head + b"x" * (26 * 1024 * 1024 - len(head) - len(tail)) + tail


def damaged_body() -> bytes:
    return b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\ntrailer\n<< /Root 99 0 R >>\n%%EOF\n"


def javascript_name_tree() -> bytes:
    return _edit(good_pdf(), lambda w: w.add_open_action(JavaScript("app.alert('hi');")))


def javascript_open_action() -> bytes:
    def change(writer: PdfWriter) -> None:
        writer.root_object[NameObject("/OpenAction")] = _js_action()

    return _edit(good_pdf(), change)


def javascript_page_aa() -> bytes:
    def change(writer: PdfWriter) -> None:
        writer.pages[1][NameObject("/AA")] = DictionaryObject({NameObject("/O"): _js_action()})

    return _edit(good_pdf(), change)


def javascript_link() -> bytes:
    return _edit(good_pdf(), lambda w: w.add_annotation(0, _link(_js_action())))


def javascript_field_action() -> bytes:
    keystroke = DictionaryObject({NameObject("/K"): _js_action("AFNumber_Keystroke(2);")})
    return _edit(good_pdf(), _text_field(keystroke))


def launch_link() -> bytes:
    launch = DictionaryObject(
        {
            NameObject("/S"): NameObject("/Launch"),
            NameObject("/F"): TextStringObject("calc.exe"),
        }
    )
    return _edit(good_pdf(), lambda w: w.add_annotation(0, _link(launch)))


def embedded_file() -> bytes:
    return _edit(good_pdf(), lambda w: w.add_attachment("invoice.xml", b"<invoice/>"))


BAD_UPLOADS = [
    pytest.param(lambda: b"", "This file is empty (0 bytes)", id="empty"),
    pytest.param(too_big, "This file is 26.0 MB; the limit is 25 MB", id="26MB"),
    pytest.param(
        png_named_pdf,
        "This file is not a PDF (it looks like a PNG image), even if its name ends in .pdf. "
        "Open it in the program that made it, export or save it as PDF and upload again.",
        id="png-named-pdf",
    ),
    pytest.param(
        text_named_pdf,
        "This file is not a PDF, even if its name ends in .pdf",
        id="text-named-pdf",
    ),
    pytest.param(truncated, "This PDF is incomplete: its end is missing", id="truncated"),
    pytest.param(damaged_body, "This PDF is damaged and cannot be read", id="damaged"),
    pytest.param(
        truncated_with_end_marker,
        "This PDF is damaged and cannot be read. Open it in a PDF viewer, save or print it as a "
        "new PDF and upload that.",
        id="truncated-with-eof",
    ),
    pytest.param(
        crop_box_off_the_page, "This PDF is damaged and cannot be read", id="parsers-disagree"
    ),
    pytest.param(
        encrypted_with_password,
        "This PDF is password-protected. Open it, remove the password and upload it again.",
        id="encrypted",
    ),
    pytest.param(
        encrypted_empty_user_password,
        "remove the password and upload it again",
        id="encrypted-empty-user-password",
    ),
    pytest.param(zero_pages, "This PDF has no pages", id="zero-pages"),
    pytest.param(
        too_many_pages, "This PDF has 201 pages; the limit is 200 \u2014 split it", id="201-pages"
    ),
    pytest.param(javascript_name_tree, "This PDF contains JavaScript", id="js-name-tree"),
    pytest.param(javascript_open_action, "This PDF contains JavaScript", id="js-open-action"),
    pytest.param(javascript_page_aa, "This PDF contains JavaScript", id="js-page-aa"),
    pytest.param(javascript_link, "This PDF contains JavaScript", id="js-link"),
    pytest.param(javascript_field_action, "This PDF contains JavaScript", id="js-field-aa"),
    pytest.param(
        launch_link,
        "This PDF contains an action that starts another program",
        id="launch",
    ),
    pytest.param(
        embedded_file,
        "This PDF contains embedded files (attachments), which we do not accept. Remove the "
        "attachments",
        id="embedded-file",
    ),
]


# --------------------------------------------------------------------------- inspect_pdf


@pytest.mark.parametrize(("build", "message"), BAD_UPLOADS)
def test_bad_uploads_are_refused_with_a_human_message(
    build: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(PdfProblem) as caught:
        inspect_pdf(build())
    assert message in str(caught.value)


def test_the_file_name_names_the_file_in_messages() -> None:
    with pytest.raises(PdfProblem) as caught:
        inspect_pdf(text_named_pdf(), filename="C:\\Users\\ana\\refund.pdf")
    assert str(caught.value).startswith("\u201crefund.pdf\u201d is not a PDF, even if its name")
    with pytest.raises(PdfProblem) as caught:
        inspect_pdf(png_named_pdf(), filename="scan.png")
    assert str(caught.value).startswith(
        "\u201cscan.png\u201d is not a PDF (it looks like a PNG image). Open it in"
    )


def test_oversized_upload_is_refused_before_parsing() -> None:
    # Not even a PDF header: only the size check can have produced this message.
    with pytest.raises(PdfProblem) as caught:
        inspect_pdf(b"\0" * (MAX_BYTES + 1))
    assert "This file is 25.1 MB; the limit is 25 MB" in str(caught.value)


def test_good_pdf_reports_pages_sizes_and_hash() -> None:
    data = good_pdf()
    info = inspect_pdf(data, filename="contract.pdf")
    assert info.page_count == 2 and len(info.pages) == 2
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    a4, us = info.pages
    assert (a4.number, us.number) == (1, 2)
    assert (a4.x0, a4.y0, a4.rotation) == (0, 0, 0)
    assert a4.width == pytest.approx(595.28, abs=0.01)
    assert a4.height == pytest.approx(841.89, abs=0.01)
    assert (us.width, us.height) == (612, 792)
    assert (us.display_width, us.display_height) == (612, 792)


def test_rotation_and_landscape_pages() -> None:
    def rotate(writer: PdfWriter) -> None:
        writer.pages[0].rotate(90)
        writer.pages[1].rotate(180)
        writer.pages[2].rotate(270)
        writer.pages[3][NameObject("/Rotate")] = NumberObject(-90)
        writer.pages[4][NameObject("/Rotate")] = NumberObject(450)

    data = _edit(_reportlab([A4, letter, LANDSCAPE, A4, letter, LANDSCAPE]), rotate)
    pages = inspect_pdf(data).pages
    assert [p.rotation for p in pages] == [90, 180, 270, 270, 90, 0]
    a4_90, letter_180, landscape_270, _, letter_450, landscape = pages
    assert (a4_90.display_width, a4_90.display_height) == (a4_90.height, a4_90.width)
    assert a4_90.display_width == pytest.approx(841.89, abs=0.01)
    assert (letter_180.display_width, letter_180.display_height) == (612, 792)
    assert (landscape_270.display_width, landscape_270.display_height) == (500, 700)
    assert (letter_450.display_width, letter_450.display_height) == (792, 612)
    assert (landscape.width, landscape.height) == LANDSCAPE


def test_rotation_inherited_from_the_page_tree() -> None:
    def rotate_tree(writer: PdfWriter) -> None:
        pages = writer.root_object["/Pages"]
        pages[NameObject("/Rotate")] = NumberObject(90)
        for page in writer.pages:
            if "/Rotate" in page:
                del page[NameObject("/Rotate")]

    data = _edit(good_pdf(), rotate_tree)
    assert [p.rotation for p in inspect_pdf(data).pages] == [90, 90]


def test_visible_box_is_the_crop_box_within_the_media_box() -> None:
    def boxes(writer: PdfWriter) -> None:
        writer.pages[0].mediabox = RectangleObject([50, 100, 662, 892])
        writer.pages[1].cropbox = RectangleObject([36, 72, 576, 720])
        writer.pages[1].rotate(90)

    offset, cropped = inspect_pdf(_edit(good_pdf(), boxes)).pages
    assert (offset.x0, offset.y0, offset.x1, offset.y1) == (50, 100, 662, 892)
    assert (cropped.x0, cropped.y0, cropped.x1, cropped.y1) == (36, 72, 576, 720)
    assert (cropped.display_width, cropped.display_height) == (648, 540)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (90, 90),
        (180, 180),
        (270, 270),
        (360, 0),
        (450, 90),
        (-90, 270),
        (-180, 180),
        (-270, 90),
        (-450, 270),
        (45, 0),
        (135, 90),
        (-45, 0),
        (90.0, 90),
        ("/90", 0),
        (None, 0),
        (float("nan"), 0),
    ],
)
def test_normalise_rotation_folds_like_pdfium(value: object, expected: int) -> None:
    assert normalise_rotation(value) == expected


def test_odd_rotation_values_agree_with_pdfium() -> None:
    # inspect_pdf refuses files whose page sizes PDFium sees differently, so accepting
    # these proves the folding matches PDFium's on non-square pages.
    def rotate(writer: PdfWriter) -> None:
        writer.pages[0][NameObject("/Rotate")] = NumberObject(135)
        writer.pages[1][NameObject("/Rotate")] = FloatObject(-90.0)

    pages = inspect_pdf(_edit(good_pdf(), rotate)).pages
    assert [p.rotation for p in pages] == [90, 270]


def test_links_and_plain_form_fields_are_accepted() -> None:
    uri = DictionaryObject(
        {
            NameObject("/S"): NameObject("/URI"),
            NameObject("/URI"): TextStringObject("https://example.com/help"),
        }
    )
    data = _edit(good_pdf(), lambda w: w.add_annotation(0, _link(uri)))
    data = _edit(data, _text_field())
    assert inspect_pdf(data).page_count == 2


def test_several_kinds_of_active_content_are_all_named() -> None:
    data = _edit(javascript_open_action(), lambda w: w.add_attachment("x.txt", b"x"))
    with pytest.raises(PdfProblem, match="contains JavaScript and embedded files"):
        inspect_pdf(data)


def test_parser_failure_is_logged_not_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    # The parsing runs in the sandbox; its warnings (with the parser's error) reach this log.
    with pytest.raises(PdfProblem, match="damaged"):
        inspect_pdf(damaged_body())
    assert "PDF refused as damaged" in caplog.text
    assert "Traceback" in caplog.text


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_only_this_reading_of_the_file_can_make_it_damaged(monkeypatch) -> None:
    # Seen in CI: a database connection collected during the reading raised a ResourceWarning
    # and a good PDF was refused as damaged. Neither a Python warning of another object nor a
    # pypdf warning logged by another thread (another upload) is a fault of this file.
    import logging
    import threading
    import warnings

    from portal.documents import inspect as inspect_module

    class Disturbed(PdfReader):
        def __init__(self, *args, **kwargs) -> None:
            warnings.warn("a connection was deleted while open", ResourceWarning, stacklevel=1)
            other = threading.Thread(
                target=logging.getLogger("pypdf").warning, args=("another upload is damaged",)
            )
            other.start()
            other.join()
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(inspect_module, "PdfReader", Disturbed)
    assert inspect_module.parse_pdf(good_pdf()).page_count == 2

    class Repaired(PdfReader):
        def __init__(self, *args, **kwargs) -> None:
            logging.getLogger("pypdf").warning("incorrect startxref pointer(1)")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(inspect_module, "PdfReader", Repaired)
    with pytest.raises(PdfProblem, match="damaged"):
        inspect_module.parse_pdf(good_pdf())


# --------------------------------------------------------------------------- geometry

A4_PAGE = PageBox(1, 0, 0, 595.28, 841.89, 0)
PAGE_SHAPES = {
    "a4": (0.0, 0.0, 595.28, 841.89),
    "letter": (0.0, 0.0, 612.0, 792.0),
    "landscape": (0.0, 0.0, 700.0, 500.0),
    "offset": (50.0, 100.0, 662.0, 892.0),
}
ROTATIONS = (0, 90, 180, 270)


def _page(shape: str, rotation: int) -> PageBox:
    return PageBox(1, *PAGE_SHAPES[shape], rotation)


def _close(a: Rect, b: Rect, tolerance: float = 1e-6) -> bool:
    pairs = ((a.x, b.x), (a.y, b.y), (a.w, b.w), (a.h, b.h))
    return all(abs(p - q) <= tolerance for p, q in pairs)


@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("shape", PAGE_SHAPES)
def test_display_pdf_round_trip_is_identity(shape: str, rotation: int) -> None:
    page = _page(shape, rotation)
    for rect in (
        Rect(0, 0, 100, 50),
        Rect(12.5, 300.25, 180, 36),
        Rect(page.display_width - 40, page.display_height - 20, 40, 20),
    ):
        pdf = display_to_pdf(page, rect)
        assert _close(pdf_to_display(page, pdf), rect), (rect, pdf)
        assert _close(display_to_pdf(page, pdf_to_display(page, pdf)), pdf)
        # The display page maps onto exactly the visible box.
        assert page.x0 - 1e-9 <= pdf.x and pdf.x + pdf.w <= page.x1 + 1e-9
        assert page.y0 - 1e-9 <= pdf.y and pdf.y + pdf.h <= page.y1 + 1e-9


@pytest.mark.parametrize(
    ("shape", "rotation", "expected"),
    [
        # Unrotated: display top-left is the PDF top-left; y flips.
        ("a4", 0, Rect(0, 841.89 - 50, 100, 50)),
        # 90 clockwise: the PDF left edge is shown along the top, so the display top-left
        # is the PDF lower-left, and display width runs up the PDF y axis.
        ("a4", 90, Rect(0, 0, 50, 100)),
        # 180: display top-left is the PDF lower-right.
        ("a4", 180, Rect(595.28 - 100, 0, 100, 50)),
        # 270 clockwise: the PDF right edge is shown along the top; display top-left is
        # the PDF top-right.
        ("a4", 270, Rect(595.28 - 50, 841.89 - 100, 50, 100)),
        ("offset", 0, Rect(50, 892 - 50, 100, 50)),
        ("offset", 90, Rect(50, 100, 50, 100)),
        ("offset", 180, Rect(662 - 100, 100, 100, 50)),
        ("offset", 270, Rect(662 - 50, 892 - 100, 50, 100)),
    ],
)
def test_display_top_left_corner_in_pdf_space(shape: str, rotation: int, expected: Rect) -> None:
    assert _close(display_to_pdf(_page(shape, rotation), Rect(0, 0, 100, 50)), expected)


def test_whole_display_page_is_the_whole_visible_box() -> None:
    for rotation in ROTATIONS:
        page = _page("offset", rotation)
        whole = Rect(0, 0, page.display_width, page.display_height)
        assert _close(display_to_pdf(page, whole), Rect(50, 100, 612, 792))


def test_clamp_display_keeps_fields_on_the_page() -> None:
    page = PageBox(1, 0, 0, 612, 792, 90)  # shown 792 wide, 612 high
    assert clamp_display(page, Rect(10, 10, 100, 20)) == Rect(10, 10, 100, 20)
    assert clamp_display(page, Rect(-5, -7, 100, 20)) == Rect(0, 0, 100, 20)
    assert clamp_display(page, Rect(750, 600, 100, 20)) == Rect(692, 592, 100, 20)
    assert clamp_display(page, Rect(5, 5, 2, 1)) == Rect(5, 5, 8, 8)
    assert clamp_display(page, Rect(5, 5, 2, 1), min_size=12) == Rect(5, 5, 12, 12)
    assert clamp_display(page, Rect(-50, -50, 5000, 5000)) == Rect(0, 0, 792, 612)
    assert clamp_display(page, Rect(110, 30, -100, -20)) == Rect(10, 10, 100, 20)
    with pytest.raises(ValueError, match="finite"):
        clamp_display(page, Rect(float("nan"), 0, 10, 10))


# --------------------------------------------------------------------------- rendering

SCALE = 1.5
# (label, mediabox, cropbox or None). Each page gets one black bar near the unrotated top-left,
# wide and short so that a wrong rotation or mirror shows, and the cropped page also gets a
# bar outside its crop box that must not appear.
BOXES = [
    ("a4", (0, 0, A4_W, A4_H), None),
    ("offset-mediabox", (50, 100, 662, 892), None),
    ("cropped-letter", (0, 0, 612, 792), (36, 72, 576, 720)),
]
CASES = [(label, rotation) for label, _, _ in BOXES for rotation in ROTATIONS]
CASE_PARAMS = [
    pytest.param(index, case, id=f"{case[0]}-rot{case[1]}") for index, case in enumerate(CASES)
]


def _bar(visible: tuple[float, float, float, float]) -> Rect:
    x0, _, _, y1 = visible
    return Rect(x0 + 40, y1 - 130, 90, 30)


@functools.cache
def marked_pdf() -> bytes:
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(700, 900))
    for _, media, crop in BOXES:
        for _ in ROTATIONS:
            bar = _bar(crop or media)
            c.setFillColorRGB(0, 0, 0)
            c.rect(bar.x, bar.y, bar.w, bar.h, stroke=0, fill=1)
            if crop:
                c.rect(media[0] + 2, media[1] + 2, 20, 20, stroke=0, fill=1)  # cropped away
            c.showPage()
    c.save()

    def boxes(writer: PdfWriter) -> None:
        for index, (label, rotation) in enumerate(CASES):
            _, media, crop = next(b for b in BOXES if b[0] == label)
            page = writer.pages[index]
            page.mediabox = RectangleObject(media)
            if crop:
                page.cropbox = RectangleObject(crop)
            page.rotate(rotation)

    return _edit(out.getvalue(), boxes)


@functools.cache
def marked_renders() -> tuple[RenderedPage, ...]:
    return tuple(render_pages(marked_pdf(), scale=SCALE))


@pytest.mark.parametrize(("index", "case"), CASE_PARAMS)
def test_pdf_to_display_predicts_where_the_renderer_draws(
    index: int, case: tuple[str, int]
) -> None:
    label, rotation = case
    _, media, crop = next(b for b in BOXES if b[0] == label)
    page = inspect_pdf(marked_pdf()).pages[index]
    assert page.rotation == rotation
    rendered = marked_renders()[index]
    assert rendered.number == index + 1 and rendered.scale == SCALE

    image = Image.open(io.BytesIO(rendered.image)).convert("L")
    assert image.size == (rendered.width_px, rendered.height_px)
    assert image.getpixel((image.width - 1, image.height - 1)) == 255  # white background
    dark = image.point(lambda level: 255 if level < 128 else 0).getbbox()
    assert dark is not None, "the bar was not drawn"
    left, top, right, bottom = (edge / SCALE for edge in dark)
    seen = Rect(left, top, right - left, bottom - top)

    predicted = pdf_to_display(page, _bar(crop or media))
    assert _close(seen, predicted, tolerance=2), (seen, predicted)


@pytest.mark.parametrize(("index", "case"), CASE_PARAMS)
def test_page_images_are_display_size_times_scale(index: int, case: tuple[str, int]) -> None:
    page = inspect_pdf(marked_pdf()).pages[index]
    rendered = marked_renders()[index]
    # pypdfium2 sizes the bitmap with ceil(), not round().
    assert rendered.width_px == math.ceil(page.display_width * SCALE)
    assert rendered.height_px == math.ceil(page.display_height * SCALE)


def test_two_page_pdf_renders_two_pngs() -> None:
    rendered = list(render_pages(good_pdf(), scale=SCALE))
    assert [r.number for r in rendered] == [1, 2]
    assert all(r.image.startswith(b"\x89PNG\r\n\x1a\n") for r in rendered)
    assert all(r.mimetype == "image/png" for r in rendered)
    assert [(r.width_px, r.height_px) for r in rendered] == [
        (math.ceil(A4_W * SCALE), math.ceil(A4_H * SCALE)),  # 893 x 1263
        (918, 1188),
    ]
    with Image.open(io.BytesIO(rendered[1].image)) as image:
        assert image.size == (918, 1188) and image.mode == "RGB"


@pytest.mark.parametrize(
    "size", [(14400, 14400), (14400, 200), (3, 14400)], ids=["poster", "banner", "ribbon"]
)
def test_large_and_thin_pages_are_rendered_within_the_side_caps(size: tuple[int, int]) -> None:
    (rendered,) = render_pages(_reportlab([size], text=False), scale=SCALE)
    assert rendered.width_px <= MAX_SIDE_PX and rendered.height_px <= MAX_SIDE_PX
    assert rendered.width_px * rendered.height_px <= MAX_PIXELS
    assert rendered.scale < SCALE
    assert rendered.width_px == math.ceil(size[0] * rendered.scale)


def _photo_page() -> bytes:
    """A page covered by a photograph-like picture: smooth shading with grain."""
    size = (600, 800)
    shade = Image.effect_mandelbrot(size, (-2.0, -1.2, 0.8, 1.2), 60)
    grain = Image.effect_noise(size, 24)
    picture = Image.merge("RGB", (shade, Image.linear_gradient("L").resize(size), grain))
    encoded = io.BytesIO()
    picture.save(encoded, format="PNG")
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4)
    c.drawImage(ImageReader(io.BytesIO(encoded.getvalue())), 0, 0, A4_W, A4_H)
    c.showPage()
    c.save()
    return out.getvalue()


def test_photographic_pages_are_stored_as_jpeg_and_text_pages_as_png() -> None:
    (photo,) = render_pages(_photo_page(), scale=SCALE)
    assert photo.mimetype == "image/jpeg" and photo.image.startswith(b"\xff\xd8\xff")
    with Image.open(io.BytesIO(photo.image)) as image:
        assert image.size == (photo.width_px, photo.height_px)
    (text, _) = render_pages(good_pdf(), scale=SCALE)
    assert text.mimetype == "image/png"


def test_render_rejects_a_nonsense_scale() -> None:
    with pytest.raises(ValueError, match="positive"):
        next(render_pages(good_pdf(), scale=0))
