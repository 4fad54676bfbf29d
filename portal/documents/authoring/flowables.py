"""Markdown tokens to reportlab Platypus flowables.

Every piece of text is XML-escaped for reportlab's Paragraph mini-markup; the only markup
emitted is what this module writes itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markdown_it.token import Token
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.platypus import (
    Flowable,
    HRFlowable,
    Indenter,
    ListFlowable,
    ListItem,
    Paragraph,
    Preformatted,
    Spacer,
    Table,
    TableStyle,
)

from .fonts import _Fonts
from .sandbox import _CONTROL_RE
from .styles import _BULLETS, _HEADER_FILL, _INK, _LINK, _MUTED, _RULE, _Styles, _title_rule


def _xml(text: str) -> str:
    """Text for reportlab's Paragraph markup: nothing in it is ever markup."""
    text = _CONTROL_RE.sub("", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    return _xml(text).replace('"', "&quot;")


SAFE_LINK = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)  # the only links kept


@dataclass(frozen=True)
class InlineMarkup:
    """How one output (the PDF's Paragraph markup, the reading view's HTML) writes Markdown's
    inline pieces; every piece of text goes through ``text``, which escapes it."""

    text: Callable[[str], str]
    strong: tuple[str, str]
    em: tuple[str, str]
    softbreak: str
    hardbreak: str
    code: Callable[[str], str]  # an inline code span's text
    link: Callable[[str], str]  # the opening tag of a link to a safe target


def inline_markup(token: Token, markup: InlineMarkup) -> str:
    """The markup for an ``inline`` token: emphasis, code, breaks and links to ``http(s):``
    and ``mailto:`` targets; images as their alt text; anything else as text."""
    out: list[str] = []
    link_open: list[bool] = []
    for child in token.children or []:
        t = child.type
        if t == "text":
            out.append(markup.text(child.content))
        elif t == "softbreak":
            out.append(markup.softbreak)
        elif t == "hardbreak":
            out.append(markup.hardbreak)
        elif t in ("strong_open", "strong_close"):
            out.append(markup.strong[t == "strong_close"])
        elif t in ("em_open", "em_close"):
            out.append(markup.em[t == "em_close"])
        elif t == "code_inline":
            out.append(markup.code(child.content))
        elif t == "link_open":
            href = str(child.attrGet("href") or "")
            ok = SAFE_LINK.match(href) is not None
            link_open.append(ok)
            if ok:
                out.append(markup.link(href))
        elif t == "link_close":
            if link_open and link_open.pop():
                out.append("</a>")
        elif child.content:
            out.append(markup.text(child.content))  # images (alt text only), html_inline...
    return "".join(out)


# A table cell: its inline token, its alignment (left, center, right or None) and whether it is
# in the table's head.
TableCell = tuple[Token, str | None, bool]
_ALIGN = re.compile(r"text-align:(left|center|right)")


def table_rows(tokens: list[Token], i: int) -> tuple[list[list[TableCell]], int]:
    """The rows of the table opening at ``tokens[i]``, and the index after its close (the PDF
    and the reading view walk a table alike)."""
    rows: list[list[TableCell]] = []
    row: list[TableCell] = []
    in_head = False
    i += 1
    while i < len(tokens) and tokens[i].type != "table_close":
        tok = tokens[i]
        if tok.type == "thead_open":
            in_head = True
        elif tok.type == "thead_close":
            in_head = False
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type in ("th_open", "td_open"):
            match = _ALIGN.search(str(tok.attrGet("style") or ""))
            row.append((tokens[i + 1], match.group(1) if match else None, in_head))
            i += 2
        i += 1
    return rows, i + 1


def _pdf_markup(fonts: _Fonts) -> InlineMarkup:
    return InlineMarkup(
        text=_xml,
        strong=("<b>", "</b>"),
        em=("<i>", "</i>"),
        softbreak=" ",
        hardbreak="<br/>",
        code=lambda text: f'<font face="{fonts.mono}" size="9">{_xml(text)}</font>',
        link=lambda href: f'<a href="{_attr(href)}" color="#{_LINK.hexval()[2:]}">',
    )


def _inline_markup(token: Token, fonts: _Fonts) -> str:
    """Paragraph markup for an ``inline`` token; all text is escaped."""
    return inline_markup(token, _pdf_markup(fonts))


def _plain_text(token: Token) -> str:
    return "".join(
        c.content if c.type in ("text", "code_inline", "image") else " "
        for c in token.children or []
    )


class _FlowableBuilder:
    def __init__(self, styles: _Styles, width: float) -> None:
        self.styles = styles
        self.fonts = styles.fonts
        self.width = width

    def build(self, tokens: list[Token]) -> list[Flowable]:
        flowables, _ = self.blocks(tokens, 0, None, self.styles.body, 0)
        return flowables

    def blocks(
        self,
        tokens: list[Token],
        i: int,
        close: str | None,
        para_style: ParagraphStyle,
        depth: int,
    ) -> tuple[list[Flowable], int]:
        out: list[Flowable] = []
        while i < len(tokens):
            tok = tokens[i]
            if close is not None and tok.type == close:
                return out, i + 1
            first, start = len(out), i
            if tok.type == "heading_open":
                level = min(int(tok.tag[1:]), 3)
                markup = _inline_markup(tokens[i + 1], self.fonts)
                out.append(Paragraph(markup, self.styles.headings[level]))
                if level == 1:
                    out.append(_title_rule())
                i += 3
            elif tok.type == "paragraph_open":
                out.append(Paragraph(_inline_markup(tokens[i + 1], self.fonts), para_style))
                i += 3
            elif tok.type in ("bullet_list_open", "ordered_list_open"):
                flowable, i = self.list_block(tokens, i, depth)
                out.append(flowable)
            elif tok.type == "blockquote_open":
                inner, i = self.blocks(tokens, i + 1, "blockquote_close", self.styles.quote, depth)
                out += [Indenter(left=14), *inner, Indenter(left=-14)]
            elif tok.type in ("code_block", "fence"):
                text = _CONTROL_RE.sub("", tok.content.rstrip("\n"))
                out.append(Preformatted(text, self.styles.code, maxLineLength=92))
                i += 1
            elif tok.type == "hr":
                out.append(
                    HRFlowable(
                        width="100%", thickness=0.6, color=_RULE, spaceBefore=6, spaceAfter=12
                    )
                )
                i += 1
            elif tok.type == "table_open":
                flowable, i = self.table(tokens, i)
                out.append(flowable)
            elif tok.type == "inline":
                out.append(Paragraph(_inline_markup(tok, self.fonts), para_style))
                i += 1
            elif tok.type == "html_block" and tok.content.strip():
                out.append(Paragraph(_xml(tok.content), para_style))
                i += 1
            else:
                i += 1
            if close is None:  # a block of the document itself: named by its first token
                for flowable in out[first:]:
                    flowable.reading_block = start
        return out, i

    def list_block(self, tokens: list[Token], i: int, depth: int) -> tuple[Flowable, int]:
        open_tok = tokens[i]
        ordered = open_tok.type == "ordered_list_open"
        close = "ordered_list_close" if ordered else "bullet_list_close"
        items: list[ListItem] = []
        i += 1
        while i < len(tokens) and tokens[i].type != close:
            if tokens[i].type == "list_item_open":
                inner, i = self.blocks(
                    tokens, i + 1, "list_item_close", self.styles.list_body, depth + 1
                )
                items.append(ListItem(inner or [Spacer(1, 1)]))
            else:
                i += 1
        common: dict[str, Any] = {
            "bulletFontName": self.fonts.regular,
            "bulletFontSize": 10,
            "bulletColor": _INK,
            "leftIndent": 18,
            "spaceAfter": 9 if depth == 0 else 0,
        }
        if ordered:
            start = int(str(open_tok.attrGet("start") or 1))
            delim = (open_tok.markup or ".")[-1:]
            flowable = ListFlowable(
                items, bulletType="1", start=start, bulletFormat=f"%s{delim}", **common
            )
        else:
            flowable = ListFlowable(
                items, bulletType="bullet", start=_BULLETS[depth % len(_BULLETS)], **common
            )
        return flowable, i + 1

    def table(self, tokens: list[Token], i: int) -> tuple[Flowable, int]:
        rows, i = table_rows(tokens, i)
        header_rows = sum(1 for r in rows if r and r[0][2])
        ncols = max((len(r) for r in rows), default=1)
        data: list[list[Paragraph | str]] = []
        for r in rows:
            cells: list[Paragraph | str] = []
            for inline, align, head in r:
                base = self.styles.header_cell if head else self.styles.cell
                cells.append(
                    Paragraph(_inline_markup(inline, self.fonts), self.styles.align(base, align))
                )
            cells += [""] * (ncols - len(cells))
            data.append(cells)
        widths = self.column_widths(rows, ncols)
        table = Table(data, colWidths=widths, repeatRows=header_rows, hAlign="LEFT")
        commands: list[tuple[Any, ...]] = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 7),
            ("RIGHTPADDING", (0, 0), (-1, -1), 7),
            ("TOPPADDING", (0, 0), (-1, -1), 5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ("GRID", (0, 0), (-1, -1), 0.5, _RULE),
        ]
        if header_rows:
            commands += [
                ("BACKGROUND", (0, 0), (-1, header_rows - 1), _HEADER_FILL),
                ("LINEBELOW", (0, header_rows - 1), (-1, header_rows - 1), 0.9, _MUTED),
            ]
        table.setStyle(TableStyle(commands))
        table.spaceBefore = 2
        table.spaceAfter = 12
        return table, i

    def column_widths(self, rows: list[list[TableCell]], ncols: int) -> list[float]:
        pad = 24.0
        natural = [pad + 20] * ncols
        minimum = [pad + 20] * ncols
        for r in rows:
            for col, (inline, _, head) in enumerate(r):
                font = self.fonts.bold if head else self.fonts.regular
                text = _plain_text(inline)
                width = pdfmetrics.stringWidth(text, font, 10) + pad
                longest = max(
                    (pdfmetrics.stringWidth(w, font, 10) for w in text.split()), default=0
                )
                natural[col] = max(natural[col], width)
                minimum[col] = max(minimum[col], min(longest + pad, self.width / ncols))
        total = sum(natural)
        if total <= self.width:
            extra = self.width - total
            if ncols == 2:  # a "label | value" table: labels stay compact
                return [natural[0], natural[1] + extra]
            return [n + extra * n / total for n in natural]
        spare = self.width - sum(minimum)
        if spare <= 0:
            return [self.width / ncols] * ncols
        flexible = [n - m for n, m in zip(natural, minimum, strict=True)]
        flex_total = sum(flexible) or 1.0
        return [m + spare * f / flex_total for m, f in zip(minimum, flexible, strict=True)]
