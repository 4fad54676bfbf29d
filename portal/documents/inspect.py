"""Check an uploaded PDF before anyone builds a template on it, and read its page geometry.

``inspect_pdf`` refuses, with a sentence a person can act on, anything the portal should
not accept: files that are empty, too large, not PDFs, cut off, damaged, encrypted,
without pages, too long, with pages no screen can show, declaring absurd sizes, with
drawings that draw themselves, or carrying JavaScript, other active content (see
``portal.documents.active``) or embedded files. Cheap checks on the bytes come first, in the
calling process; the parsing runs in the sandbox (``portal.documents.sandbox``), where a file
built to make a parser loop or allocate without end is stopped and refused. A file is parsed
by two independent parsers (pypdf, strictly, and PDFium); both must accept it without a
warning and agree on its pages.

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
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pypdfium2
from pypdf import PdfReader
from pypdf.errors import LimitReachedError
from pypdf.generic import IndirectObject, StreamObject

from portal.documents import active, sandbox
from portal.documents.pages import PDFIUM_LOCK

log = logging.getLogger(__name__)

MAX_BYTES = 25 * 1024 * 1024
MAX_PAGES = 200

_MB = 1024 * 1024
_HEADER_WINDOW = 1024
_EOF_WINDOW = 2048
# Two parsers may round a box differently (pypdf keeps decimals, PDFium uses floats).
_SIZE_TOLERANCE = 0.01

# Page sides a reader can show: PDF's own limits (1/24 inch to 200 inches at one unit a point).
MIN_SIDE_PT = 3.0
MAX_SIDE_PT = 14_400.0
# Declared sizes no document needs (checked on the raw bytes before any parsing).
MAX_OBJECTS = 1_000_000
MAX_IMAGE_SIDE_PX = 30_000
MAX_HEX_STRING = 4 * _MB

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


class ActiveContent(PdfProblem):
    """The PDF carries scripts, other active content or attachments."""


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


def _damaged(this_pdf: str) -> PdfProblem:
    return PdfProblem(
        f"{this_pdf} is damaged and cannot be read. Open it in a PDF viewer, save or print "
        "it as a new PDF and upload that."
    )


def inspect_pdf(data: bytes, filename: str = "") -> PdfInfo:
    """Return page count, page boxes, SHA-256 and size, or raise ``PdfProblem``.

    Cheap checks come first (size, header, end marker, declared sizes), so an oversized,
    non-PDF or absurd upload is refused without being parsed; the parsing runs in the
    sandbox. ``filename``, when given, names the file in messages.
    """
    this_pdf = _subject(filename, "This PDF")
    check_bytes(data, filename)
    try:
        info: PdfInfo = sandbox.run(parse_pdf, data, filename)
    except sandbox.Overrun as exc:
        raise too_complex(this_pdf, exc) from exc
    except sandbox.Busy as exc:
        raise PdfProblem(
            "The portal is busy checking other files. Wait a minute and upload it again; "
            "nothing was stored."
        ) from exc
    return info


def inspect_generated_pdf(data: bytes) -> PdfInfo:
    """``inspect_pdf`` for a PDF the portal itself just made (an authored document), which
    needs no sandbox: it is checked in this process, inside the caller's transaction."""
    check_bytes(data)
    return parse_pdf(data)


def too_complex(this_pdf: str, overrun: sandbox.Overrun) -> PdfProblem:
    """The refusal for a file whose check went over the sandbox's limits."""
    return PdfProblem(
        f"Checking {this_pdf} {overrun.cost(sandbox.configured())}, so we did not accept it: "
        "it is damaged or built to overload PDF readers. Print it to a new PDF (or save it "
        "again from the program that made it) and upload that."
    )


def check_bytes(data: bytes, filename: str = "") -> None:
    """The checks that need no parser: size, header, end marker and declared sizes."""
    this_file = _subject(filename, "This file")
    this_pdf = _subject(filename, "This PDF")
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
    absurd = declared_size_problem(data)
    if absurd:
        log.warning("PDF refused before parsing: %s", absurd)
        raise PdfProblem(
            f"{this_pdf} declares {absurd}, more than any document needs, so we did not open "
            "it. Print it to a new PDF and upload that."
        )


_SIZE = re.compile(rb"/Size\s+(\d{1,20})")
_INDEX = re.compile(rb"/Index\s*\[([\d\s]{0,2000})\]")
_IMAGE_SIDE = re.compile(rb"/(?:Width|Height|W|H)\s+(\d{1,20})(?![\d.])")
_HEX_RUN = re.compile(rb"<[0-9A-Fa-f\s]{%d}" % MAX_HEX_STRING)


def declared_size_problem(data: bytes) -> str | None:
    """What the raw bytes declare that no real document does, or None.

    Object counts (``/Size``, cross-reference ``/Index`` sections) that would make a parser
    allocate or walk millions of entries, image sides that would make a renderer allocate
    gigabytes, and hex strings of megabytes (a fake signature that takes a minute to decode).
    """
    for match in _SIZE.finditer(data):
        if int(match.group(1)) > MAX_OBJECTS:
            return f"{int(match.group(1)):,} objects"
    for match in _INDEX.finditer(data):
        numbers = [int(n) for n in match.group(1).split()]
        if sum(numbers[1::2]) > MAX_OBJECTS or any(n > MAX_OBJECTS * 10 for n in numbers):
            return f"{sum(numbers[1::2]):,} cross-reference entries"
    for match in _IMAGE_SIDE.finditer(data):
        if int(match.group(1)) > MAX_IMAGE_SIDE_PX:
            return f"an image {int(match.group(1)):,} pixels wide or high"
    if _HEX_RUN.search(data):
        return f"a data string of more than {MAX_HEX_STRING // _MB} MB"
    return None


def parse_pdf(data: bytes, filename: str = "") -> PdfInfo:
    """Parse an upload that passed ``check_bytes`` (run this in the sandbox)."""
    this_pdf = _subject(filename, "This PDF")
    damaged = _damaged(this_pdf)
    written = active.find_in_bytes(data)
    try:
        pages, found = _read_with_pypdf(data, this_pdf, damaged)
    except PdfProblem:
        _refuse_active(written, this_pdf)  # what a parser that gave up may have missed
        raise
    _refuse_active(list(dict.fromkeys(found + written)), this_pdf)
    _check_with_pdfium(data, pages, damaged)
    return PdfInfo(
        page_count=len(pages),
        pages=pages,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
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


class _Warnings(logging.Handler):
    """Collects what pypdf logs as a warning while this thread reads a file.

    pypdf reports what it had to repair through its logger (its own rule: ``warnings.warn`` is
    kept for deprecations), so that is the only channel listened to. Python warnings are not
    collected: a ``ResourceWarning`` of some unrelated object collected meanwhile is no fault of
    the file. Records of other threads are ignored, so one damaged upload never refuses another
    read at the same moment in a threaded worker."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.seen.append(record.getMessage())


@contextmanager
def _strictly(damaged: PdfProblem) -> Iterator[None]:
    """Refuse the file if pypdf warns while reading it: a repaired reading is a guess, and a
    guess can miss what a viewer's own repair would find."""
    handler = _Warnings()
    logger = logging.getLogger("pypdf")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.seen:
        log.warning("PDF refused as damaged: the strict reading warned: %s", handler.seen[:5])
        raise damaged


def _read_with_pypdf(
    data: bytes, this_pdf: str, damaged: PdfProblem
) -> tuple[tuple[PageBox, ...], list[str]]:
    """The page boxes, and the active content found, from a strict reading."""
    with _strictly(damaged):
        reader: PdfReader = _guarded(
            "pypdf open", damaged, lambda: PdfReader(io.BytesIO(data), strict=True)
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
        _check_sides(pages, this_pdf, damaged)
        found = _scan(reader, this_pdf, damaged)
        _check_streams(reader, this_pdf, damaged)
    return pages, found


def _check_streams(reader: PdfReader, this_pdf: str, damaged: PdfProblem) -> None:
    """Decode what a reader decodes first (page contents, the catalog's metadata) within
    pypdf's output limits: a few kilobytes must not expand into gigabytes."""

    def decode() -> None:
        for page in reader.pages:
            contents = page.get_contents()
            if contents is not None:
                contents.get_data()
        metadata = _resolve(reader.root_object.get("/Metadata"))
        if isinstance(metadata, StreamObject):
            metadata.get_data()

    try:
        _guarded("stream decoding", damaged, decode)
    except PdfProblem as exc:
        if isinstance(exc.__cause__, LimitReachedError):
            raise PdfProblem(
                f"{this_pdf} contains compressed data that expands to more than any document "
                "needs (a decompression bomb), so we did not accept it. Print it to a new PDF "
                "and upload that."
            ) from exc
        raise


def _scan(reader: PdfReader, this_pdf: str, damaged: PdfProblem) -> list[str]:
    """Active content (objects and raw bytes) and drawings that draw themselves."""
    try:
        found: list[str] = _guarded(
            "active content scan", damaged, lambda: active.find_active_content(reader)
        )
        loops: bool = _guarded(
            "drawing cycle scan", damaged, lambda: active.find_self_drawing(reader)
        )
    except active.TooComplex as exc:
        raise PdfProblem(
            f"{this_pdf} is built in a way no ordinary document is ({exc}), so we did not "
            "accept it. Print it to a new PDF and upload that."
        ) from exc
    if loops:
        raise PdfProblem(
            f"{this_pdf} contains a drawing that draws itself, so its pages could never be "
            "shown. Print it to a new PDF and upload that."
        )
    return found


def _refuse_active(found: list[str], this_pdf: str) -> None:
    risky = [what for what in found if what != active.EMBEDDED]
    if risky:
        listed = " and ".join(risky + [what for what in found if what == active.EMBEDDED])
        raise ActiveContent(
            f"{this_pdf} contains {listed}, which we do not accept: active content could run "
            "on the signer's computer. Print it to a new PDF (or export it again without "
            "scripts) and upload that."
        )
    if found:
        raise ActiveContent(
            f"{this_pdf} contains {active.EMBEDDED}, which we do not accept. Remove the "
            "attachments (or print it to a new PDF) and upload it again."
        )


def _inches(points: float) -> str:
    return f"{points / 72:,.2f}".rstrip("0").rstrip(".")


def _check_sides(pages: tuple[PageBox, ...], this_pdf: str, damaged: PdfProblem) -> None:
    for box in pages:
        if not (math.isfinite(box.width) and math.isfinite(box.height)):
            raise damaged
        if box.width <= 0 or box.height <= 0:
            log.warning("PDF refused as damaged: page %d has an empty box %r", box.number, box)
            raise damaged
        sides = (box.width, box.height)
        if min(sides) < MIN_SIDE_PT or max(sides) > MAX_SIDE_PT:
            raise PdfProblem(
                f"Page {box.number} of {this_pdf} is {_inches(box.width)} by "
                f"{_inches(box.height)} inches; pages must be between 1/24 inch and 200 inches "
                "on each side to be shown and printed. Print it to a new PDF at a normal paper "
                "size and upload that."
            )


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
