"""Page images: each page rendered by PDFium as a viewer shows it, in the sandbox.

PDFium is not thread-safe, not even across different documents, so every call into it
in this package holds ``PDFIUM_LOCK``. Rendering runs in the sandbox (``render_pages``):
a page that never finishes drawing, or a document whose images would fill the disk, is
stopped and refused there with a message that says why.

Limits: each bitmap is at most ``MAX_SIDE_PX`` wide and high and ``MAX_PIXELS`` in all (a
poster-size or very thin page is drawn at a smaller scale); photographic pages (many colours,
which JPEG shrinks) are stored as JPEG, the rest as PNG; a document's images together may not
exceed ``MAX_DOCUMENT_IMAGE_BYTES``.

Besides that image (the template editor's), each page gets *reading renditions* for the
signer's phone: ``READING_WIDTHS`` pixels wide (the signing page's column at 1x and 2x), drawn
by PDFium at that size, as WebP: lossless for text and line art (a third of an 8-bit PNG's
size at 800 px), lossy for photographic pages (see ``_encode_reading``). They are made while
the document's rendering has used less than ``READING_CPU_SHARE`` of the sandbox's CPU time;
pages past that (a very long document) keep only the editor's image, which the page serves
instead.
"""

from __future__ import annotations

import io
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import pypdfium2
from PIL import Image

PDFIUM_LOCK = threading.RLock()

MAX_SIDE_PX = 2400
MAX_PIXELS = MAX_SIDE_PX * MAX_SIDE_PX
MAX_DOCUMENT_IMAGE_BYTES = 40 * 1024 * 1024
# A page whose sample (every fourth pixel each way) has more colours than this may be a
# photograph; JPEG at no more than this many bytes a pixel means it is one.
PHOTO_COLOURS = 4096
PHOTO_BYTES_PER_PIXEL = 0.3
JPEG_QUALITY = 82
PNG = "image/png"
JPEG = "image/jpeg"
WEBP = "image/webp"
# The signing page's document column is at most 760 CSS pixels wide (a phone's is about 360):
# 800 px serves a desktop at 1x and a phone at 2x, 1,600 px a desktop at 2x and a phone at 3x.
READING_WIDTHS = (800, 1600)
READING_PHOTO_QUALITY = 75
READING_CPU_SHARE = 0.4


class PageImageProblem(ValueError):
    """The pages cannot be turned into images within the limits; the message says why."""


@dataclass(frozen=True)
class Rendition:
    """A page drawn for reading at one of the ``READING_WIDTHS`` (``nominal``; the bitmap may
    be a pixel more or, for a page past the caps, less)."""

    nominal: int
    image: bytes
    mimetype: str
    width_px: int
    height_px: int


@dataclass(frozen=True)
class RenderedPage:
    """One page as an image. ``scale`` is pixels per PDF point actually used for this page."""

    number: int
    image: bytes
    mimetype: str
    width_px: int
    height_px: int
    scale: float
    renditions: tuple[Rendition, ...] = ()


def page_scale(width_pt: float, height_pt: float, scale: float) -> float:
    """``scale``, reduced if needed so that the bitmap stays within the side and pixel caps."""
    longest = max(width_pt, height_pt)
    if math.ceil(longest * scale) > MAX_SIDE_PX:
        scale = MAX_SIDE_PX / longest * 0.999
    if math.ceil(width_pt * scale) * math.ceil(height_pt * scale) > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / (width_pt * height_pt)) * 0.999
    return scale


def _save(image: Image.Image, kind: str) -> bytes:
    out = io.BytesIO()
    if kind == JPEG:
        image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def _encode(image: Image.Image) -> tuple[bytes, str]:
    """PNG for text and line art; JPEG for photographic pages, where it is a fraction of the
    size (a page of many colours that JPEG does not shrink, such as flat blocks of noise,
    stays PNG when that is smaller)."""
    width, height = image.size
    sample = image.resize((max(1, width // 4), max(1, height // 4)), Image.Resampling.NEAREST)
    if sample.getcolors(maxcolors=PHOTO_COLOURS) is not None:
        return _save(image, PNG), PNG
    jpeg = _save(image, JPEG)
    if len(jpeg) <= width * height * PHOTO_BYTES_PER_PIXEL:
        return jpeg, JPEG
    png = _save(image, PNG)
    return (jpeg, JPEG) if len(jpeg) < len(png) else (png, PNG)


def _encode_reading(image: Image.Image) -> tuple[bytes, str]:
    """WebP: lossless for text pages (exact, and smaller than PNG or JPEG: measured on the
    refund form, 39 KB against 165 KB PNG, 47 KB 64-colour PNG and 116 KB JPEG at 800 px);
    lossy for photographic ones, unless lossless happens to be smaller."""
    width, height = image.size
    sample = image.resize((max(1, width // 4), max(1, height // 4)), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="WEBP", lossless=True, quality=80, method=1)
    lossless = out.getvalue()
    if sample.getcolors(maxcolors=PHOTO_COLOURS) is not None:
        return lossless, WEBP
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=READING_PHOTO_QUALITY, method=4)
    lossy = out.getvalue()
    return (lossy if len(lossy) < len(lossless) else lossless), WEBP


def _renditions(page: Any, width_pt: float, height_pt: float) -> tuple[Rendition, ...]:
    """The page drawn at each reading width (within the side and pixel caps)."""
    out = []
    for width in READING_WIDTHS:
        used = page_scale(width_pt, height_pt, width / width_pt)
        with PDFIUM_LOCK:
            bitmap = page.render(
                scale=used, fill_color=(255, 255, 255, 255), may_draw_forms=True, draw_annots=True
            )
            try:
                image = bitmap.to_pil()
            finally:
                bitmap.close()
        encoded, mimetype = _encode_reading(image)
        out.append(Rendition(width, encoded, mimetype, *image.size))
        image.close()
    return tuple(out)


def render_document(
    data: bytes, scale: float, max_bytes: int, reading_cpu_seconds: float = 0.0
) -> list[RenderedPage]:
    """Render every page (run this in the sandbox; ``render_pages`` does).

    Each page has its /Rotate applied, annotations and form fields drawn, on white. The
    bitmap is ``ceil(display_width * scale)`` by ``ceil(display_height * scale)`` pixels
    (scale lowered for very large pages), where the display size is the page's crop box after
    rotation: the same box ``inspect_pdf`` reports. Only one page bitmap is alive at a time.
    Reading renditions are made while this call has used less than ``reading_cpu_seconds``.
    """
    started = time.process_time()
    with PDFIUM_LOCK:
        pdf = pypdfium2.PdfDocument(data)
        pdf.init_forms()
        count = len(pdf)
    pages: list[RenderedPage] = []
    total = 0
    try:
        for index in range(count):
            with PDFIUM_LOCK:
                page = pdf[index]
                try:
                    width_pt, height_pt = page.get_size()
                    used = page_scale(width_pt, height_pt, scale)
                    bitmap = page.render(
                        scale=used,
                        fill_color=(255, 255, 255, 255),
                        may_draw_forms=True,
                        draw_annots=True,
                    )
                    try:
                        image = bitmap.to_pil()  # BGR -> RGB: Pillow copies the pixels
                    finally:
                        bitmap.close()
                    renditions: tuple[Rendition, ...] = ()
                    if time.process_time() - started < reading_cpu_seconds:
                        renditions = _renditions(page, width_pt, height_pt)
                finally:
                    page.close()
            encoded, mimetype = _encode(image)
            width_px, height_px = image.size
            image.close()
            total += len(encoded) + sum(len(r.image) for r in renditions)
            if total > max_bytes:
                raise PageImageProblem(
                    f"The page images of this PDF would take more than "
                    f"{max_bytes / (1024 * 1024):.0f} MB (page {index + 1} of "
                    f"{count} reached it), far more than an ordinary document needs. Save it "
                    "with smaller or fewer pictures, or print it to a new PDF, and upload that."
                )
            pages.append(
                RenderedPage(index + 1, encoded, mimetype, width_px, height_px, used, renditions)
            )
    finally:
        with PDFIUM_LOCK:
            pdf.close()
    return pages


def render_pages(
    data: bytes, scale: float = 1.5, max_bytes: int = MAX_DOCUMENT_IMAGE_BYTES
) -> list[RenderedPage]:
    """Every page as an image, rendered in the sandbox; raises ``PageImageProblem``.

    Call this only on bytes that ``inspect_pdf`` accepted.
    """
    from portal.documents import sandbox

    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, not {scale!r}")
    limits = sandbox.configured()
    try:
        return sandbox.run(
            render_document, data, scale, max_bytes, limits.cpu_seconds * READING_CPU_SHARE
        )
    except sandbox.Overrun as exc:
        raise PageImageProblem(
            f"Drawing the pages {exc.cost(limits)}, so they cannot be shown: the "
            "PDF is damaged or built to overload PDF readers. Print it to a new PDF and upload "
            "that."
        ) from exc


def store_page_images(
    pages: list[dict[str, Any]], rendered: list[RenderedPage]
) -> list[dict[str, Any]]:
    """Keep rendered pages as encrypted blobs (in the caller's transaction).

    ``pages`` are page dicts with a ``number``; returns copies with ``image_blob_id``,
    ``image_type``, ``width_px`` and ``height_px`` filled in, and ``renditions`` (a list of
    ``{"for": nominal width, "blob", "type", "width_px", "height_px"}``, narrowest first;
    empty when none were made).
    """
    from portal import storage  # documents may use storage; imported here to keep PDF code light

    out = [dict(page) for page in pages]
    for page_image in rendered:
        page = out[page_image.number - 1]
        page["image_blob_id"] = storage.put(page_image.image, kind="page_image")
        page["image_type"] = page_image.mimetype
        page["width_px"], page["height_px"] = page_image.width_px, page_image.height_px
        page["renditions"] = [
            {
                "for": r.nominal,
                "blob": storage.put(r.image, kind="page_image"),
                "type": r.mimetype,
                "width_px": r.width_px,
                "height_px": r.height_px,
            }
            for r in page_image.renditions
        ]
    return out


def image_type(page: dict[str, Any]) -> str:
    """The media type of a stored page image (pages rendered before JPEG existed are PNG)."""
    return str(page.get("image_type") or PNG)


def reading_rendition(page: dict[str, Any], width: int) -> dict[str, Any] | None:
    """The page's reading rendition for ``width`` (one of ``READING_WIDTHS``), if it has one."""
    for rendition in page.get("renditions") or []:
        if rendition.get("for") == width:
            return dict(rendition)
    return None
