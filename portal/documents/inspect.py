"""Check an uploaded PDF before anyone builds a template on it, and read its page geometry.

``inspect_pdf`` refuses, with a sentence a person can act on, anything the portal should
not accept: files that are empty, too large, not PDFs, cut off, damaged, encrypted,
without pages, too long, or carrying JavaScript, other active content or embedded files.
A file is parsed by two independent parsers (pypdf and PDFium); both must accept it and
agree on its pages.

Page geometry: the visible box of a page is its CropBox intersected with its MediaBox
(falling back to the MediaBox when there is no CropBox), as PDF viewers and PDFium do.
Rotation is /Rotate (inherited through the page tree) folded into 0, 90, 180 or 270
degrees clockwise exactly the way PDFium folds it, so that the geometry here matches the
page images from ``portal.documents.pages``. /UserUnit is ignored (PDFium ignores it too).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pypdfium2
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

from portal.documents.pages import PDFIUM_LOCK

log = logging.getLogger(__name__)

MAX_BYTES = 25 * 1024 * 1024
MAX_PAGES = 200

_MB = 1024 * 1024
_HEADER_WINDOW = 1024
_EOF_WINDOW = 2048
# Two parsers may round a box differently (pypdf keeps decimals, PDFium uses floats).
_SIZE_TOLERANCE = 0.01

# Action types (/S) that run code, start programs, or send or fetch data.
_ACTIVE_ACTIONS = {
    "/JavaScript": "JavaScript",
    "/Launch": "an action that starts another program",
    "/SubmitForm": "a form action that sends data over the internet",
    "/ImportData": "an action that imports data from another file",
    "/Rendition": "a multimedia action",
    "/RichMediaExecute": "a multimedia action",
}
# Annotation types that carry players or scripts of their own.
_ACTIVE_ANNOTATIONS = {
    "/RichMedia": "embedded multimedia",
    "/Screen": "embedded multimedia",
    "/Movie": "embedded multimedia",
    "/Sound": "embedded multimedia",
    "/3D": "3D content, which can carry scripts",
}
_EMBEDDED = "embedded files (attachments)"

# Recognisable non-PDF files, to tell people what they actually uploaded.
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a Word, Excel or other Office document, or a ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an older Word or Excel document"),
    (b"{\\rtf", "an RTF document"),
)


class PdfProblem(ValueError):
    """An upload the portal refuses; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class PageBox:
    """A page's visible box in PDF user space (points), and its clockwise display rotation.

    ``x0, y0, x1, y1`` are absolute PDF coordinates (the box origin need not be 0, 0),
    with ``x0 < x1`` and ``y0 < y1``. ``number`` is 1-based.
    """

    number: int
    x0: float
    y0: float
    x1: float
    y1: float
    rotation: int

    @classmethod
    def from_record(cls, page: Mapping[str, Any]) -> PageBox:
        """A page box from the dict a version or envelope keeps for each page."""
        return cls(
            number=int(page["number"]),
            x0=float(page["x0"]),
            y0=float(page["y0"]),
            x1=float(page["x1"]),
            y1=float(page["y1"]),
            rotation=int(page["rotation"]),
        )

    @property
    def width(self) -> float:
        """Width of the unrotated page, in points."""
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        """Height of the unrotated page, in points."""
        return self.y1 - self.y0

    @property
    def display_width(self) -> float:
        """Width as a viewer shows the page (after rotation), in points."""
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> float:
        """Height as a viewer shows the page (after rotation), in points."""
        return self.width if self.rotation in (90, 270) else self.height


@dataclass(frozen=True)
class PdfInfo:
    """What ``inspect_pdf`` learned about an accepted PDF."""

    page_count: int
    pages: tuple[PageBox, ...]
    sha256: str
    size: int


def normalise_rotation(value: object) -> int:
    """Fold a /Rotate value into 0, 90, 180 or 270, the way PDFium does.

    PDFium keeps whole quarter turns, truncating toward zero (45 -> 0, 135 -> 90,
    -90 -> 270, 450 -> 90); a value that is not a number counts as 0.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if not math.isfinite(value):
        return 0
    quarters = int(value) // 90 if value >= 0 else -(int(-value) // 90)
    return (quarters % 4) * 90


def _subject(filename: str, fallback: str) -> str:
    """How a message names the file: its (cleaned) name, or "This file" / "This PDF"."""
    name = re.split(r"[\\/]", filename)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if not name:
        return fallback
    if len(name) > 80:
        name = name[:77] + "..."
    return f"\u201c{name}\u201d"


def _size_mb(size: int) -> str:
    """A size in MB rounded up to one decimal, so 25 MB + 1 byte never reads as "25.0"."""
    return f"{math.ceil(size * 10 / _MB) / 10:.1f}"


def _resolve(value: Any) -> Any:
    return value.get_object() if isinstance(value, IndirectObject) else value


def _find_active_content(root: Any) -> list[str]:
    """Walk every object reachable from the catalog; describe active content and attachments.

    Covers the catalog's /OpenAction and /AA, the /Names /JavaScript and /EmbeddedFiles
    trees, page and annotation /A and /AA (widgets, links, file attachments), AcroForm
    field actions, outline actions and /Next action chains, wherever they are nested.
    Stream data is not decoded; only dictionaries are examined.
    """
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, IndirectObject):
            key = (item.idnum, item.generation)
            if key in seen:
                continue
            seen.add(key)
            stack.append(item.get_object())
        elif isinstance(item, DictionaryObject):
            _check_dictionary(item, found)
            stack.extend(value for name, value in item.items() if name != "/Parent")
        elif isinstance(item, ArrayObject):
            stack.extend(item)
    return list(dict.fromkeys(found))


def _check_dictionary(item: DictionaryObject, found: list[str]) -> None:
    action = _resolve(item.get("/S"))
    subtype = _resolve(item.get("/Subtype"))
    kind = _resolve(item.get("/Type"))
    if "/JS" in item or action == "/JavaScript":
        found.append(_ACTIVE_ACTIONS["/JavaScript"])
    elif isinstance(action, str) and action in _ACTIVE_ACTIONS:
        found.append(_ACTIVE_ACTIONS[action])
    if isinstance(subtype, str) and subtype in _ACTIVE_ANNOTATIONS and kind != "/XObject":
        found.append(_ACTIVE_ANNOTATIONS[subtype])
    names = _resolve(item.get("/Names"))
    if isinstance(names, DictionaryObject) and "/JavaScript" in names:
        found.append(_ACTIVE_ACTIONS["/JavaScript"])
    if "/XFA" in item:
        found.append("a dynamic (XFA) form, which can carry scripts")
    if (
        "/EmbeddedFiles" in item
        or "/EF" in item
        or subtype == "/FileAttachment"
        or kind == "/EmbeddedFile"
        or action == "/GoToE"
    ):
        found.append(_EMBEDDED)


def _page_box(number: int, page: Any) -> PageBox:
    media = [float(v) for v in page.mediabox]
    x0, x1 = sorted((media[0], media[2]))
    y0, y1 = sorted((media[1], media[3]))
    if "/CropBox" in page:
        crop = [float(v) for v in page.cropbox]
        cx0, cx1 = sorted((crop[0], crop[2]))
        cy0, cy1 = sorted((crop[1], crop[3]))
        ix0, iy0, ix1, iy1 = max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)
        if ix0 < ix1 and iy0 < iy1:
            x0, y0, x1, y1 = ix0, iy0, ix1, iy1
    return PageBox(number, x0, y0, x1, y1, normalise_rotation(_resolve(page.get("/Rotate"))))


def inspect_pdf(data: bytes, filename: str = "") -> PdfInfo:
    """Return page count, page boxes, SHA-256 and size, or raise ``PdfProblem``.

    Cheap checks come first (size, header, end marker), so an oversized or non-PDF upload
    is refused without being parsed. ``filename``, when given, names the file in messages.
    """
    this_file = _subject(filename, "This file")
    this_pdf = _subject(filename, "This PDF")
    damaged = PdfProblem(
        f"{this_pdf} is damaged and cannot be read. Open it in a PDF viewer, save or print "
        "it as a new PDF and upload that."
    )

    size = len(data)
    if size == 0:
        raise PdfProblem(
            f"{this_file} is empty (0 bytes). Check that you chose the right file and upload "
            "it again."
        )
    if size > MAX_BYTES:
        raise PdfProblem(
            f"{this_file} is {_size_mb(size)} MB; the limit is {MAX_BYTES // _MB} MB. Make it "
            "smaller (for example, save it with smaller images) or split it, and upload it "
            "again."
        )
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        looks_like = next(
            (f" (it looks like {what})" for magic, what in _MAGIC if data.startswith(magic)), ""
        )
        named_pdf = not filename or filename.lower().endswith(".pdf")
        even_if = ", even if its name ends in .pdf" if named_pdf else ""
        raise PdfProblem(
            f"{this_file} is not a PDF{looks_like}{even_if}. Open it in the program that made "
            "it, export or save it as PDF and upload again."
        )
    if b"%%EOF" not in data[-_EOF_WINDOW:]:
        raise PdfProblem(
            f"{this_pdf} is incomplete: its end is missing, so it was probably cut off while "
            "being downloaded or copied. Get a complete copy and upload it again."
        )

    pages = _read_with_pypdf(data, this_pdf, damaged)
    _check_with_pdfium(data, pages, damaged)
    return PdfInfo(
        page_count=len(pages),
        pages=pages,
        sha256=hashlib.sha256(data).hexdigest(),
        size=size,
    )


def _guarded(step: str, damaged: PdfProblem, work: Callable[[], Any]) -> Any:
    """Run parser work; any library failure becomes the "damaged" problem (and a log line)."""
    try:
        return work()
    except (PdfProblem, MemoryError):
        raise
    except Exception as exc:
        log.warning("PDF refused as damaged: %s failed: %r", step, exc, exc_info=True)
        raise damaged from exc


def _read_with_pypdf(data: bytes, this_pdf: str, damaged: PdfProblem) -> tuple[PageBox, ...]:
    reader: PdfReader = _guarded(
        "pypdf open", damaged, lambda: PdfReader(io.BytesIO(data), strict=False)
    )
    if _guarded("pypdf encryption check", damaged, lambda: reader.is_encrypted):
        raise PdfProblem(
            f"{this_pdf} is password-protected. Open it, remove the password and upload it "
            "again. (If it opens without asking for a password it is still encrypted: save "
            "or print an unprotected copy.)"
        )
    count: int = _guarded("pypdf page count", damaged, lambda: len(reader.pages))
    if count == 0:
        raise PdfProblem(
            f"{this_pdf} has no pages. Check that you chose the right file and upload it again."
        )
    if count > MAX_PAGES:
        raise PdfProblem(
            f"{this_pdf} has {count} pages; the limit is {MAX_PAGES} \u2014 split it into "
            "smaller files and upload them one by one."
        )
    pages: tuple[PageBox, ...] = _guarded(
        "pypdf page boxes",
        damaged,
        lambda: tuple(_page_box(n, page) for n, page in enumerate(reader.pages, start=1)),
    )
    for box in pages:
        if box.width <= 0 or box.height <= 0:
            log.warning("PDF refused as damaged: page %d has an empty box %r", box.number, box)
            raise damaged
    found: list[str] = _guarded(
        "active content scan", damaged, lambda: _find_active_content(reader.trailer["/Root"])
    )
    active = [what for what in found if what != _EMBEDDED]
    if active:
        listed = " and ".join(active + [what for what in found if what == _EMBEDDED])
        raise PdfProblem(
            f"{this_pdf} contains {listed}, which we do not accept: active content could run "
            "on the signer's computer. Print it to a new PDF (or export it again without "
            "scripts) and upload that."
        )
    if found:
        raise PdfProblem(
            f"{this_pdf} contains {_EMBEDDED}, which we do not accept. Remove the attachments "
            "(or print it to a new PDF) and upload it again."
        )
    return pages


def _check_with_pdfium(data: bytes, pages: tuple[PageBox, ...], damaged: PdfProblem) -> None:
    """Open the file with PDFium too; it must see the same pages at the same sizes.

    PDFium draws the page images, so a disagreement would put fields in the wrong place.
    """

    def sizes() -> list[tuple[float, float]]:
        with PDFIUM_LOCK:
            pdf = pypdfium2.PdfDocument(data)
            try:
                return [pdf.get_page_size(i) for i in range(len(pdf))]
            finally:
                pdf.close()

    seen: list[tuple[float, float]] = _guarded("pdfium open", damaged, sizes)
    if len(seen) != len(pages):
        log.warning("PDF refused: pypdf sees %d pages, PDFium %d", len(pages), len(seen))
        raise damaged
    for box, (width, height) in zip(pages, seen, strict=True):
        if (
            abs(box.display_width - width) > _SIZE_TOLERANCE
            or abs(box.display_height - height) > _SIZE_TOLERANCE
        ):
            log.warning(
                "PDF refused: page %d is %.2f x %.2f for pypdf (%r) but %.2f x %.2f for PDFium",
                box.number,
                box.display_width,
                box.display_height,
                box,
                width,
                height,
            )
            raise damaged
