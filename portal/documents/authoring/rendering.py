"""Rendering: merged Markdown laid out as an A4 PDF, with page numbers and an optional watermark."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Spacer

from .flowables import _FlowableBuilder
from .fonts import _Fonts, _fonts
from .merging import merge
from .model import MergeKey
from .sandbox import _CONTROL_RE
from .styles import _MUTED, _RULE, _Styles

PAGE_MARGIN = 2 * cm
SIGNATURE_ROOM = 6 * cm
_NOT_A_BLOCK = -1  # the signature room: space, not text


# The footer's page number in each document language (``lang`` of ``render_pdf``).
PAGE_LABEL = {"en": "Page {page} of {total}", "es": "Página {page} de {total}"}


def _numbered_canvas(title: str, fonts: _Fonts, lang: str = "en") -> Callable[..., Canvas]:
    """A canvas class that draws "Page N of M" once the page count is known."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # reportlab API name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._footer(total)
                super().showPage()
            super().save()

        def _footer(self, total: int) -> None:
            width, _ = self._pagesize
            y = PAGE_MARGIN - 0.95 * cm
            self.saveState()
            self.setStrokeColor(_RULE)
            self.setLineWidth(0.5)
            self.line(PAGE_MARGIN, y + 11, width - PAGE_MARGIN, y + 11)
            self.setFillColor(_MUTED)
            self.setFont(fonts.regular, 8)
            label = PAGE_LABEL.get(lang, PAGE_LABEL["en"]).format(
                page=self._pageNumber, total=total
            )
            self.drawRightString(width - PAGE_MARGIN, y, label)
            room = width - 2 * PAGE_MARGIN - pdfmetrics.stringWidth(label, fonts.regular, 8) - 24
            shown = title
            if pdfmetrics.stringWidth(shown, fonts.regular, 8) > room:
                while shown and pdfmetrics.stringWidth(shown + "…", fonts.regular, 8) > room:
                    shown = shown[:-1]
                shown = shown.rstrip() + "…"
            self.drawString(PAGE_MARGIN, y, shown)
            self.restoreState()

    return NumberedCanvas


def _watermark(fonts: _Fonts) -> Callable[[Canvas, BaseDocTemplate], None]:
    def draw(canvas: Canvas, doc: BaseDocTemplate) -> None:
        width, height = doc.pagesize
        canvas.saveState()
        canvas.setFillColor(colors.HexColor("#d9dde3"))
        canvas.setFillAlpha(0.55)
        canvas.translate(width / 2, height / 2)
        canvas.rotate(45)
        canvas.setFont(fonts.bold, 110)
        canvas.drawCentredString(0, -38, "SAMPLE")
        canvas.restoreState()

    return draw


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


@dataclass(frozen=True)
class Placed:
    """Where a block of the document (named by its first token) landed in the PDF: the page
    of its first part and the top of that part, and the page and bottom of its last part, in
    PDF points from the bottom of the page."""

    page: int
    top: float
    last_page: int
    bottom: float


class _Measured(BaseDocTemplate):
    """A doc template that notes where each tagged block is drawn (``reading_block``, set by
    the flowable builder); it draws exactly what the plain one draws."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.placed: dict[int, Placed] = {}
        self._block: int | None = None
        self._top: tuple[int, float] | None = None

    def handle_flowable(self, flowables: list[Any]) -> None:
        # A block split over two pages goes on as new, untagged parts: they are its own.
        block = getattr(flowables[0], "reading_block", None) if flowables else None
        if block is not None:
            self._block = block
        frame = getattr(self, "frame", None)
        self._top = (self.page, float(frame._y)) if frame is not None else None
        super().handle_flowable(flowables)

    def afterFlowable(self, flowable: Any) -> None:  # reportlab API name
        block = getattr(flowable, "reading_block", None)
        block = self._block if block is None else block
        frame = getattr(self, "frame", None)
        if block is None or block == _NOT_A_BLOCK or self._top is None or frame is None:
            return
        bottom = float(frame._y)
        seen = self.placed.get(block)
        page, top = (seen.page, seen.top) if seen else self._top
        self.placed[block] = Placed(page, top, self.page, bottom)


def render_pdf(
    body: str,
    values: Mapping[str, str],
    merge_keys: Sequence[MergeKey],
    *,
    title: str,
    sample: bool = False,
    lang: str = "en",
) -> bytes:
    """Merge ``values`` into ``body`` and lay it out as an A4 PDF.

    Raises :class:`AuthoringError` when the body has problems. ``sample=True`` adds a
    diagonal "SAMPLE" watermark (previews with sample data). About 6 cm is left free after
    the last paragraph for signature fields placed later in the template editor.
    """
    return laid_out(body, values, merge_keys, title=title, sample=sample, lang=lang)[0]


def laid_out(
    body: str,
    values: Mapping[str, str],
    merge_keys: Sequence[MergeKey],
    *,
    title: str,
    sample: bool = False,
    lang: str = "en",
) -> tuple[bytes, dict[int, Placed]]:
    """``render_pdf``'s bytes, and where each block of the merged text landed (keyed by the
    index of its first token in ``parse(merge(...))``): the reading view places the fields
    between the blocks with it."""
    text = merge(body, values, merge_keys)
    fonts = _fonts()
    styles = _Styles(fonts)
    title = " ".join(_CONTROL_RE.sub("", title or "").split()) or "Document"

    buffer = io.BytesIO()
    doc = _Measured(
        buffer,
        pagesize=A4,
        leftMargin=PAGE_MARGIN,
        rightMargin=PAGE_MARGIN,
        topMargin=PAGE_MARGIN,
        bottomMargin=PAGE_MARGIN,
        title=title,
        subject=title,
        author="",
        creator="Signing portal",
        displayDocTitle=True,
        lang=lang,
        invariant=True,  # same input, same bytes: callers compare hashes to skip re-saves
    )
    frame = Frame(
        doc.leftMargin,
        doc.bottomMargin,
        doc.width,
        doc.height,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
        id="body",
    )
    on_page = _watermark(fonts) if sample else _no_op
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=on_page)])

    flowables = _FlowableBuilder(styles, doc.width).build(parse(text))
    room = Spacer(1, SIGNATURE_ROOM)
    room.reading_block = _NOT_A_BLOCK
    flowables.append(room)
    doc.build(flowables, canvasmaker=_numbered_canvas(title, fonts, lang))
    return buffer.getvalue(), doc.placed


def parse(text: str) -> list[Token]:
    """The merged Markdown's tokens, as both the PDF and the reading view read them."""
    return _markdown().parse(text)


def _no_op(canvas: Canvas, doc: BaseDocTemplate) -> None:
    return None
