"""Stamping: the values a signer filled in, drawn onto the original PDF where each field is.

Every stamp is drawn on ONE reportlab overlay: one overlay page per stamped page, in the
same absolute user space as the page it covers (its box origin need not be 0, 0). Each
overlay page becomes a form XObject (its content stream as reportlab compressed it, its
resources, the target's media box as /BBox) that the stamped page draws last: the page's
own content streams are kept byte for byte, wrapped in ``q`` ... ``Q`` by two small added
streams, so nothing is decoded, parsed or re-encoded. Pages without stamps are not touched.
Optional appendix pages (the certificate of completion) go at the end, document info
metadata is merged in, and the result is written once.

A stamp's rect is in the user space of the unrotated page (see
``portal.documents.geometry``). On a page with /Rotate, the drawing inside the rect is
turned by the same angle the other way, so text and signatures read upright to the viewer.
Text is one line in DejaVu (so Łukasiewicz, Παπαδοπούλου and Muñoz render), sized from the
rect height, shrunk to fit its width and, at the smallest size, cut short with an ellipsis.
Images keep their aspect ratio and transparency; each distinct image is decoded and
embedded once per call (a form XObject that every stamp of it reuses).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NullObject,
    NumberObject,
    PdfObject,
    RectangleObject,
    StreamObject,
)
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from portal.documents import pdfmeta
from portal.documents.authoring.fonts import _fonts
from portal.documents.geometry import Rect
from portal.documents.inspect import PageBox
from portal.text import printable

StampKind = Literal["text", "check", "image", "signature_text"]
KINDS: tuple[StampKind, ...] = ("text", "check", "image", "signature_text")

INK = (0.0, 0.0, 0.0)
SIGNATURE_INK = (0.05, 0.15, 0.45)  # a pen-like dark blue for typed signatures
ELLIPSIS = "\u2026"

# Font size as a share of the (upright) rect height, clamped; shrunk further to fit the width.
TEXT_SIZE_RATIO = 0.62
TEXT_MIN_SIZE = 6.0
TEXT_MAX_SIZE = 14.0
SIGNATURE_SIZE_RATIO = 0.75
SIGNATURE_MAX_SIZE = 28.0
# Space kept free between text and the left and right edges of its rect, in points.
TEXT_PADDING = 2.0


@dataclass(frozen=True)
class Stamp:
    """One filled-in value: what to draw, on which page (1-based) and in which PDF rect."""

    page: int
    rect: Rect
    kind: StampKind
    text: str = ""
    image: bytes | None = None


@dataclass(frozen=True)
class _Frame:
    """A rect as the viewer sees it: drawing origin, turn (degrees), upright width and height.

    Drawing at (0, 0)-(width, height) after ``translate(x, y)`` and ``rotate(angle)`` fills
    the rect, with local x running left to right and local y upward on the viewer's screen.
    """

    x: float
    y: float
    angle: int
    width: float
    height: float


def _frame(rect: Rect, rotation: int) -> _Frame:
    """The upright frame of ``rect`` on a page shown turned ``rotation`` degrees clockwise."""
    if rotation == 0:
        return _Frame(rect.x, rect.y, 0, rect.w, rect.h)
    if rotation == 90:
        return _Frame(rect.x + rect.w, rect.y, 90, rect.h, rect.w)
    if rotation == 180:
        return _Frame(rect.x + rect.w, rect.y + rect.h, 180, rect.w, rect.h)
    if rotation == 270:
        return _Frame(rect.x, rect.y + rect.h, 270, rect.h, rect.w)
    raise ValueError(f"Page rotation must be 0, 90, 180 or 270, not {rotation}.")


def _fit_text(
    text: str, font: str, width: float, preferred: float, minimum: float
) -> tuple[str, float]:
    """The text and font size that fit on one line ``width`` wide.

    ``preferred`` is used when the text fits; otherwise the size shrinks, down to
    ``minimum``, where the text is cut short and ends with an ellipsis.
    """
    natural = pdfmetrics.stringWidth(text, font, preferred)
    if natural <= width:
        return text, preferred
    shrunk = preferred * width / natural
    if shrunk >= minimum:
        return text, shrunk
    # Longest prefix that fits with the ellipsis (prefix widths only grow with length).
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        candidate = text[:middle].rstrip() + ELLIPSIS
        if pdfmetrics.stringWidth(candidate, font, minimum) <= width:
            low = middle
        else:
            high = middle - 1
    return (text[:low].rstrip() + ELLIPSIS if low else ELLIPSIS), minimum


def _draw_text(canvas: Canvas, frame: _Frame, text: str, *, signature: bool) -> None:
    """One line of text, left-aligned and vertically centred in the frame."""
    fonts = _fonts()
    # One line (newlines, tabs and runs of spaces become one space), nothing that reorders it.
    line = " ".join(printable(text).split())
    if not line:
        return
    if signature:
        font, colour = fonts.italic, SIGNATURE_INK
        preferred = min(max(frame.height * SIGNATURE_SIZE_RATIO, TEXT_MIN_SIZE), SIGNATURE_MAX_SIZE)
    else:
        font, colour = fonts.regular, INK
        preferred = min(max(frame.height * TEXT_SIZE_RATIO, TEXT_MIN_SIZE), TEXT_MAX_SIZE)
    padding = min(TEXT_PADDING, frame.width * 0.1)
    line, size = _fit_text(line, font, frame.width - 2 * padding, preferred, TEXT_MIN_SIZE)
    ascent, descent = pdfmetrics.getAscentDescent(font, size)  # descent is negative
    baseline = (frame.height - (ascent - descent)) / 2 - descent
    canvas.setFillColorRGB(*colour)
    canvas.setFont(font, size)
    canvas.drawString(padding, baseline, line)


def _draw_check(canvas: Canvas, frame: _Frame) -> None:
    """A check mark drawn as two strokes, centred in the frame."""
    side = min(frame.width, frame.height) * 0.8
    left = (frame.width - side) / 2
    bottom = (frame.height - side) / 2
    path = canvas.beginPath()
    path.moveTo(left + 0.12 * side, bottom + 0.52 * side)
    path.lineTo(left + 0.4 * side, bottom + 0.2 * side)
    path.lineTo(left + 0.88 * side, bottom + 0.84 * side)
    canvas.setStrokeColorRGB(*INK)
    canvas.setLineWidth(max(side * 0.13, 0.8))
    canvas.setLineCap(1)  # round
    canvas.setLineJoin(1)  # round
    canvas.drawPath(path, stroke=1, fill=0)


@dataclass(frozen=True)
class _Picture:
    """A decoded image, drawn once into the overlay as a 1 x 1 form named ``form``."""

    form: str
    width_px: int
    height_px: int


def _picture(data: bytes, page: int, form: str) -> tuple[_Picture, ImageReader]:
    """A PNG or JPEG decoded for reportlab; ValueError if it is not a usable image."""
    try:
        reader = ImageReader(io.BytesIO(data))
        width_px, height_px = reader.getSize()
    except Exception as exc:
        raise ValueError(
            f"The image stamped on page {page} could not be read as a PNG or JPEG image."
        ) from exc
    if width_px <= 0 or height_px <= 0:
        raise ValueError(f"The image stamped on page {page} is empty (0 pixels).")
    return _Picture(form, int(width_px), int(height_px)), reader


def _define_picture(canvas: Canvas, picture: _Picture, reader: ImageReader) -> None:
    """Embed the image once, alpha kept, as a unit-square form every stamp of it reuses.

    reportlab hashes an image's pixels on every ``drawImage``; a form is drawn by name.
    """
    canvas.beginForm(picture.form, 0, 0, 1, 1)
    canvas.drawImage(reader, 0, 0, 1, 1, mask="auto")
    canvas.endForm()


def _draw_picture(canvas: Canvas, frame: _Frame, picture: _Picture) -> None:
    """The image as large as fits in the frame, aspect ratio kept, centred."""
    scale = min(frame.width / picture.width_px, frame.height / picture.height_px)
    width, height = picture.width_px * scale, picture.height_px * scale
    canvas.translate((frame.width - width) / 2, (frame.height - height) / 2)
    canvas.scale(width, height)
    canvas.doForm(picture.form)


def _check_stamp(stamp: Stamp, page_count: int, boxes: Mapping[int, PageBox]) -> None:
    """Refuse, with a clear message, a stamp that cannot be drawn."""
    if not 1 <= stamp.page <= page_count:
        raise ValueError(
            f"A stamp is on page {stamp.page}, but the document has pages 1 to {page_count}."
        )
    if stamp.page not in boxes:
        raise ValueError(f"A stamp is on page {stamp.page}, but no page box was given for it.")
    if stamp.kind not in KINDS:
        raise ValueError(f"Unknown stamp kind {stamp.kind!r}; expected one of {KINDS}.")
    rect = stamp.rect
    if not all(math.isfinite(v) for v in (rect.x, rect.y, rect.w, rect.h)):
        raise ValueError(f"The stamp on page {stamp.page} needs finite numbers, not {rect!r}.")
    if rect.w <= 0 or rect.h <= 0:
        raise ValueError(f"The stamp on page {stamp.page} has an empty rectangle {rect!r}.")
    if stamp.kind == "image" and not stamp.image:
        raise ValueError(f"The image stamp on page {stamp.page} has no image.")


@dataclass(frozen=True)
class _StampedPage:
    """A page that gets an overlay: its number, box, stamps and media box upper-right."""

    number: int
    box: PageBox
    stamps: list[Stamp]
    size: tuple[float, float]


def _overlay(
    stamped: Sequence[_StampedPage], images: Mapping[bytes, tuple[_Picture, ImageReader]]
) -> bytes:
    """One PDF page per stamped page (in order), each in its page's absolute user space."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=stamped[0].size, pageCompression=1)
    for picture, reader in images.values():
        _define_picture(canvas, picture, reader)
    for page in stamped:
        canvas.setPageSize(page.size)
        for stamp in page.stamps:
            frame = _frame(stamp.rect, page.box.rotation)
            canvas.saveState()
            canvas.translate(frame.x, frame.y)
            if frame.angle:
                canvas.rotate(frame.angle)
            if stamp.kind == "text":
                _draw_text(canvas, frame, stamp.text, signature=False)
            elif stamp.kind == "signature_text":
                _draw_text(canvas, frame, stamp.text, signature=True)
            elif stamp.kind == "check":
                _draw_check(canvas, frame)
            else:
                _draw_picture(canvas, frame, images[stamp.image or b""][0])
            canvas.restoreState()
        canvas.showPage()
    canvas.save()
    return out.getvalue()


# The stamps' form is drawn by this resource name plus a number free on the page.
_FORM_PREFIX = "/PortalStamp"


def _inherited(page: DictionaryObject, key: str) -> PdfObject | None:
    """``key`` of the page, or of the nearest /Pages ancestor that has it (resolved)."""
    node: DictionaryObject | None = page
    seen: set[int] = set()
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if key in node:
            value = node[key]
            return None if isinstance(value, NullObject) else value
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
        if not isinstance(node, DictionaryObject):
            return None
    return None


def _copied(value: PdfObject | None) -> DictionaryObject:
    """A shallow copy of a (resolved) dictionary, empty for anything else."""
    resolved = value.get_object() if value is not None else None
    if isinstance(resolved, DictionaryObject):
        return DictionaryObject(resolved)
    return DictionaryObject()


def _stream(writer: PdfWriter, data: bytes) -> IndirectObject:
    """A small uncompressed content stream, added to ``writer``."""
    stream = DecodedStreamObject()
    stream.set_data(data)
    return writer._add_object(stream)


def _layer_form(writer: PdfWriter, layer: PageObject, bbox: RectangleObject) -> IndirectObject:
    """The overlay page as a form XObject in ``writer``: same content, same resources.

    reportlab writes one compressed content stream per page; it is copied as it is (still
    compressed). The form's space is the page's user space (identity /Matrix), clipped
    to ``bbox`` as the page itself is clipped to its media box.
    """
    contents = layer.raw_get("/Contents")
    if isinstance(contents, IndirectObject) and isinstance(contents.get_object(), StreamObject):
        form_ref = contents.clone(writer)
        assert isinstance(form_ref, IndirectObject)
    else:  # not how reportlab writes a page, but a content array is valid PDF too
        parts = contents.get_object() if contents is not None else ArrayObject()
        if isinstance(parts, StreamObject):
            parts = ArrayObject([parts])
        joined = DecodedStreamObject()
        joined.set_data(b"\n".join(part.get_object().get_data() for part in parts))
        form_ref = writer._add_object(joined.flate_encode())
    form = form_ref.get_object()
    assert isinstance(form, StreamObject)
    resources = layer.get("/Resources")
    form.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Form"),
            NameObject("/FormType"): NumberObject(1),
            NameObject("/BBox"): bbox,
            NameObject("/Matrix"): ArrayObject([NumberObject(v) for v in (1, 0, 0, 1, 0, 0)]),
            NameObject("/Resources"): (
                resources.clone(writer) if resources is not None else DictionaryObject()
            ),
        }
    )
    return form_ref


def _draw_last(
    writer: PdfWriter,
    target: PageObject,
    form: IndirectObject,
    opening: IndirectObject,
    closings: dict[str, IndirectObject],
) -> None:
    """Make ``target`` draw ``form`` after its own content, in the default graphics state.

    The page gets its own copy of its resources (they may be inherited or shared with
    other pages) with the form under a name it does not use yet. Its content streams are
    kept as they are, between ``opening`` (q) and a closing stream (Q, then the form).
    """
    own = _copied(_inherited(target, "/Resources"))
    names = _copied(own.get("/XObject"))
    number = 0
    while f"{_FORM_PREFIX}{number}" in names:
        number += 1
    name = f"{_FORM_PREFIX}{number}"
    names[NameObject(name)] = form
    own[NameObject("/XObject")] = names
    target[NameObject("/Resources")] = own

    if name not in closings:
        closings[name] = _stream(writer, f"\nQ\nq {name} Do Q\n".encode("ascii"))
    contents = target.raw_get("/Contents") if "/Contents" in target else None
    resolved = contents.get_object() if contents is not None else None
    if isinstance(resolved, ArrayObject):
        streams = list(resolved)
    elif isinstance(resolved, StreamObject):
        streams = [contents]
    else:  # no content of its own
        streams = []
    target[NameObject("/Contents")] = ArrayObject([opening, *streams, closings[name]])


def stamp_pdf(
    original: bytes,
    pages: Sequence[PageBox],
    stamps: Sequence[Stamp],
    *,
    appendix: bytes | Callable[[], bytes] | None = None,
    metadata: Mapping[str, str] | None = None,
    created: datetime | None = None,
) -> bytes:
    """The original PDF with every stamp drawn in place, the appendix pages added at the end
    and ``metadata`` (keys such as "/Title" or "/PortalEnvelope") merged into the document
    info (with ``created``: dated then, and described in XMP too). ``appendix`` may be a
    function that returns it, called only when it is needed (in the sandbox: the caller
    renders it while the pages are stamped). ``pages`` are the original's page boxes (their
    rotation turns the stamps upright).
    Raises ValueError for a stamp on a page that does not exist or that cannot be drawn.
    """
    reader = PdfReader(io.BytesIO(original))
    if reader.is_encrypted:
        raise ValueError("An encrypted PDF cannot be stamped.")
    page_count = len(reader.pages)
    boxes = {box.number: box for box in pages}
    by_page: dict[int, list[Stamp]] = {}
    for stamp in stamps:
        _check_stamp(stamp, page_count, boxes)
        by_page.setdefault(stamp.page, []).append(stamp)

    images: dict[bytes, tuple[_Picture, ImageReader]] = {}  # decoded once per call
    for stamp in stamps:
        if stamp.kind == "image" and stamp.image and stamp.image not in images:
            form = f"PortalStampImage{len(images)}"
            images[stamp.image] = _picture(stamp.image, stamp.page, form)

    writer = PdfWriter(clone_from=reader)
    if by_page:
        stamped = []
        for number in sorted(by_page):
            media = [float(v) for v in writer.pages[number - 1].mediabox]
            size = (max(media[0], media[2], 1.0), max(media[1], media[3], 1.0))
            stamped.append(_StampedPage(number, boxes[number], by_page[number], size))
        overlay = PdfReader(io.BytesIO(_overlay(stamped, images)))
        opening = _stream(writer, b"q\n")
        closings: dict[str, IndirectObject] = {}
        for page, layer in zip(stamped, overlay.pages, strict=True):
            target = writer.pages[page.number - 1]
            # Clipped to the target's media box (which may have a negative origin), not to
            # the overlay page's own box.
            layer_form = _layer_form(writer, layer, RectangleObject(list(target.mediabox)))
            _draw_last(writer, target, layer_form, opening, closings)

    if appendix is not None:
        appended = appendix() if callable(appendix) else appendix
        for extra in PdfReader(io.BytesIO(appended)).pages:
            writer.add_page(extra)
    if created is not None:  # dated, with XMP (``pdfmeta``)
        pdfmeta.apply(writer, metadata or {}, created=created)
    elif metadata:
        info: dict[str, Any] = {
            (key if key.startswith("/") else f"/{key}"): value for key, value in metadata.items()
        }
        writer.add_metadata(info)

    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
