"""Page images: each page rendered by PDFium as a viewer shows it, one page at a time.

PDFium is not thread-safe, not even across different documents, so every call into it
in this package holds ``PDFIUM_LOCK``. The lock is held for one page at a time, never
while a caller consumes a yielded page.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pypdfium2

PDFIUM_LOCK = threading.RLock()

# A page image is never larger than this many pixels (about 75 MB as a BGR bitmap): a
# poster-sized page is rendered at a smaller scale instead of exhausting memory.
MAX_PIXELS = 25_000_000


@dataclass(frozen=True)
class RenderedPage:
    """One page as a PNG. ``scale`` is pixels per PDF point actually used for this page."""

    number: int
    png: bytes
    width_px: int
    height_px: int
    scale: float


def _page_scale(width_pt: float, height_pt: float, scale: float) -> float:
    """``scale``, reduced if needed so the bitmap stays within ``MAX_PIXELS``."""
    if math.ceil(width_pt * scale) * math.ceil(height_pt * scale) <= MAX_PIXELS:
        return scale
    return math.sqrt(MAX_PIXELS / (width_pt * height_pt)) * 0.999


def render_pages(data: bytes, scale: float = 1.5) -> Iterator[RenderedPage]:
    """Render every page (its /Rotate applied, annotations and form fields drawn, on white).

    The bitmap is ``ceil(display_width * scale)`` by ``ceil(display_height * scale)``
    pixels, where the display size is the page's crop box (falling back to its media box)
    after rotation: the same box ``inspect_pdf`` reports. Only one page bitmap is alive
    at a time. Call this only on bytes that ``inspect_pdf`` accepted.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, not {scale!r}")
    with PDFIUM_LOCK:
        pdf = pypdfium2.PdfDocument(data)
        pdf.init_forms()
        count = len(pdf)
    try:
        for index in range(count):
            with PDFIUM_LOCK:
                page = pdf[index]
                try:
                    width_pt, height_pt = page.get_size()
                    page_scale = _page_scale(width_pt, height_pt, scale)
                    bitmap = page.render(
                        scale=page_scale,
                        fill_color=(255, 255, 255, 255),
                        may_draw_forms=True,
                        draw_annots=True,
                    )
                    try:
                        # BGR -> RGB: Pillow copies the pixels, so the bitmap can go now.
                        image = bitmap.to_pil()
                    finally:
                        bitmap.close()
                finally:
                    page.close()
            out = io.BytesIO()
            image.save(out, format="PNG", compress_level=6)
            width_px, height_px = image.size
            image.close()
            del image
            yield RenderedPage(index + 1, out.getvalue(), width_px, height_px, page_scale)
    finally:
        with PDFIUM_LOCK:
            pdf.close()


def store_page_images(data: bytes, pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Render every page and keep it as an encrypted PNG blob (in the caller's transaction).

    ``pages`` are page dicts with a ``number``; returns copies with ``image_blob_id``,
    ``width_px`` and ``height_px`` filled in.
    """
    from portal import storage  # documents may use storage; imported here to keep PDF code light

    out = [dict(page) for page in pages]
    for rendered in render_pages(data):
        page = out[rendered.number - 1]
        page["image_blob_id"] = storage.put(rendered.png, kind="page_image")
        page["width_px"], page["height_px"] = rendered.width_px, rendered.height_px
    return out
