"""Field rectangles: PDF user space (stored) and display space (the editor), both ways.

PDF space: absolute user-space coordinates of the unrotated page, y upward, in points,
including any non-zero box origin; ``Rect(x, y, w, h)`` has (x, y) at the lower-left.
This is what the stamper draws in, whatever the page's /Rotate.

Display space: the page as a viewer shows it, /Rotate applied (clockwise), origin at
the top-left of the visible box, y downward, in points; (x, y) is the top-left corner.
One display point is ``scale`` pixels of a page image from ``render_pages``.

With ``(x0, y0, x1, y1)`` the visible box, a display point ``(u, v)`` is at PDF point:

====== =================== ====================================================
rotate PDF point           display top-left corner is the PDF box's...
====== =================== ====================================================
0      (x0 + u, y1 - v)    top-left
90     (x0 + v, y0 + u)    bottom-left (the left edge is shown along the top)
180    (x1 - u, y0 + v)    bottom-right
270    (x1 - v, y1 - u)    top-right (the right edge is shown along the top)
====== =================== ====================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from portal.documents.inspect import PageBox


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in points: (x, y) is its origin corner, w and h >= 0."""

    x: float
    y: float
    w: float
    h: float


def _display_point_to_pdf(page: PageBox, u: float, v: float) -> tuple[float, float]:
    if page.rotation == 0:
        return page.x0 + u, page.y1 - v
    if page.rotation == 90:
        return page.x0 + v, page.y0 + u
    if page.rotation == 180:
        return page.x1 - u, page.y0 + v
    if page.rotation == 270:
        return page.x1 - v, page.y1 - u
    raise ValueError(f"Page rotation must be 0, 90, 180 or 270, not {page.rotation}.")


def _pdf_point_to_display(page: PageBox, x: float, y: float) -> tuple[float, float]:
    if page.rotation == 0:
        return x - page.x0, page.y1 - y
    if page.rotation == 90:
        return y - page.y0, x - page.x0
    if page.rotation == 180:
        return page.x1 - x, y - page.y0
    if page.rotation == 270:
        return page.y1 - y, page.x1 - x
    raise ValueError(f"Page rotation must be 0, 90, 180 or 270, not {page.rotation}.")


def _span(a: float, b: float) -> tuple[float, float]:
    """The lower end and the length of the interval between a and b."""
    return (a, b - a) if a <= b else (b, a - b)


def display_to_pdf(page: PageBox, rect: Rect) -> Rect:
    """A display rect (top-left origin, y down) as a PDF rect (lower-left origin, y up)."""
    ax, ay = _display_point_to_pdf(page, rect.x, rect.y)
    bx, by = _display_point_to_pdf(page, rect.x + rect.w, rect.y + rect.h)
    x, w = _span(ax, bx)
    y, h = _span(ay, by)
    return Rect(x, y, w, h)


def pdf_to_display(page: PageBox, rect: Rect) -> Rect:
    """A PDF rect (lower-left origin, y up) as a display rect (top-left origin, y down)."""
    au, av = _pdf_point_to_display(page, rect.x, rect.y)
    bu, bv = _pdf_point_to_display(page, rect.x + rect.w, rect.y + rect.h)
    u, w = _span(au, bu)
    v, h = _span(av, bv)
    return Rect(u, v, w, h)


def clamp_display(page: PageBox, rect: Rect, min_size: float = 8) -> Rect:
    """Keep a display rect on the page, at least ``min_size`` wide and high.

    A rect larger than the page shrinks to the page; one hanging over an edge slides
    back inside, keeping its size. A negative width or height is read as the same
    rectangle drawn the other way. Non-finite numbers are refused with ValueError.
    """
    values = (rect.x, rect.y, rect.w, rect.h, min_size)
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"A field rectangle needs finite numbers, not {rect!r}.")
    x, w = _span(rect.x, rect.x + rect.w)
    y, h = _span(rect.y, rect.y + rect.h)
    page_w, page_h = page.display_width, page.display_height
    w = min(max(w, min_size), page_w)
    h = min(max(h, min_size), page_h)
    x = min(max(x, 0.0), page_w - w)
    y = min(max(y, 0.0), page_h - h)
    return Rect(x, y, w, h)
