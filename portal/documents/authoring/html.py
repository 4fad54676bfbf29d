"""The reading view: an authored document as HTML that reflows on a phone, made from the same
merged text as its PDF (``rendering.parse(merge(...))``), block by block.

Every piece of text is escaped here (merge values are customer-supplied, and ``merge`` has
already made them literal Markdown); the only markup is what this module writes. Links keep
only ``http(s):`` and ``mailto:`` targets, as in the PDF; images show their alt text only. The
document's own headings sit one level under the page's title (``# Title`` is an ``h2``).

``place_fields`` puts each field after the block it sits beside or below in the PDF (see
``rendering.laid_out``), so the reading view shows it where the signer meets it on paper.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from markdown_it.token import Token
from markupsafe import Markup, escape

from .flowables import InlineMarkup, _plain_text, inline_markup, table_rows
from .rendering import Placed
from .sandbox import _CONTROL_RE

# A reading view longer than this (in characters of HTML) stops there and says so: the PDF
# has the rest. An ordinary document is 5-20 KB.
MAX_HTML = 400_000


@dataclass(frozen=True)
class Block:
    """One block of the document (heading, paragraph, list, table...) as HTML, named by the
    index of its first token (the key of ``rendering.laid_out``'s placements)."""

    start: int
    html: Markup


@dataclass(frozen=True)
class Reading:
    """The document's blocks; ``truncated`` when it was longer than ``MAX_HTML``."""

    blocks: tuple[Block, ...]
    truncated: bool


def _text(text: str) -> str:
    return str(escape(_CONTROL_RE.sub("", text)))


_HTML = InlineMarkup(
    text=_text,
    strong=("<strong>", "</strong>"),
    em=("<em>", "</em>"),
    softbreak="\n",
    hardbreak="<br>",
    code=lambda text: f"<code>{_text(text)}</code>",
    link=lambda href: f'<a href="{_text(href)}" rel="noopener noreferrer nofollow">',
)


def _inline(token: Token) -> str:
    return inline_markup(token, _HTML)


def _plain(token: Token) -> str:
    return _plain_text(token).strip()


class _Writer:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens

    def blocks(self, i: int, close: str | None, tight: bool = False) -> tuple[list[str], int]:
        """HTML of the blocks from ``i`` up to the token ``close``, and the index after it."""
        tokens, out = self.tokens, list[str]()
        while i < len(tokens):
            tok = tokens[i]
            if close is not None and tok.type == close:
                return out, i + 1
            html, i = self.block(i, tight)
            if html:
                out.append(html)
        return out, i

    def block(self, i: int, tight: bool = False) -> tuple[str, int]:
        tokens = self.tokens
        tok = tokens[i]
        kind = tok.type
        if kind == "heading_open":
            level = min(int(tok.tag[1:]) + 1, 6)
            return f"<h{level}>{_inline(tokens[i + 1])}</h{level}>", i + 3
        if kind == "paragraph_open":
            inline = _inline(tokens[i + 1])
            return (inline if tight or tok.hidden else f"<p>{inline}</p>"), i + 3
        if kind in ("bullet_list_open", "ordered_list_open"):
            return self.list_block(i)
        if kind == "blockquote_open":
            inner, i = self.blocks(i + 1, "blockquote_close")
            return f"<blockquote>{''.join(inner)}</blockquote>", i
        if kind in ("code_block", "fence"):
            return f"<pre><code>{_text(tok.content.rstrip())}</code></pre>", i + 1
        if kind == "hr":
            return "<hr>", i + 1
        if kind == "table_open":
            return self.table(i)
        if kind == "inline":
            return f"<p>{_inline(tok)}</p>", i + 1
        if kind == "html_block" and tok.content.strip():
            return f"<p>{_text(tok.content)}</p>", i + 1
        return "", i + 1

    def list_block(self, i: int) -> tuple[str, int]:
        tokens = self.tokens
        ordered = tokens[i].type == "ordered_list_open"
        close = "ordered_list_close" if ordered else "bullet_list_close"
        start = ""
        if ordered:
            number = int(str(tokens[i].attrGet("start") or 1))
            start = f' start="{number}"' if number != 1 else ""
        items: list[str] = []
        i += 1
        while i < len(tokens) and tokens[i].type != close:
            if tokens[i].type == "list_item_open":
                inner, i = self.blocks(i + 1, "list_item_close")
                items.append(f"<li>{''.join(inner)}</li>")
            else:
                i += 1
        tag = "ol" if ordered else "ul"
        return f"<{tag}{start}>{''.join(items)}</{tag}>", i + 1

    def table(self, i: int) -> tuple[str, int]:
        """A table whose cells carry their column's heading (``data-label``): on a phone the
        rows stack as cards, each value under its heading, so the table never runs wider
        than the screen."""
        rows, i = table_rows(self.tokens, i)
        head = [_plain(inline) for r in rows for inline, _align, in_head in r if in_head]
        body = [
            [(_inline(inline), align or "") for inline, align, _head in r]
            for r in rows
            if not (r and r[0][2])
        ]
        return self._table_html(head, body), i

    def _table_html(self, head: list[str], rows: list[list[tuple[str, str]]]) -> str:
        parts = ['<div class="reading-table"><table>']
        if head:
            headings = "".join(f'<th scope="col">{_text(h)}</th>' for h in head)
            parts.append(f"<thead><tr>{headings}</tr></thead>")
        parts.append("<tbody>")
        for r in rows:
            cells: list[str] = []
            for n, (html, align) in enumerate(r):
                label = f' data-label="{_text(head[n])}"' if n < len(head) and head[n] else ""
                css = f' class="align-{align}"' if align else ""
                cells.append(f"<td{label}{css}>{html}</td>")
            parts.append(f"<tr>{''.join(cells)}</tr>")
        parts.append("</tbody></table></div>")
        return "".join(parts)


def reading(tokens: list[Token]) -> Reading:
    """The document's blocks as HTML (``tokens``: ``rendering.parse`` of the merged text)."""
    writer = _Writer(tokens)
    out: list[Block] = []
    size = 0
    i = 0
    while i < len(tokens):
        start = i
        html, i = writer.block(i)
        if not html:
            continue
        size += len(html)
        if size > MAX_HTML:
            return Reading(tuple(out), truncated=True)
        out.append(Block(start, Markup(html)))  # noqa: S704 -- every text escaped above
    return Reading(tuple(out), truncated=False)


class PlacedField(Protocol):
    """What ``place_fields`` reads of a field: its page and box in PDF points."""

    page: int
    x: float
    y: float
    w: float
    h: float


F = TypeVar("F", bound=PlacedField)


def place_fields(
    blocks: Sequence[Block], placed: dict[int, Placed], fields: Iterable[F]
) -> dict[int | None, list[F]]:
    """Which block each field comes after: the last block that starts above the middle of
    the field (on its page or an earlier one); ``None`` for a field above the first block.
    Fields after the same block are in reading order (top to bottom, then left to right)."""
    starts = [
        (placed[b.start].page, -placed[b.start].top, b.start) for b in blocks if b.start in placed
    ]
    out: dict[int | None, list[F]] = {}
    for field in sorted(fields, key=lambda f: (f.page, -(f.y + f.h / 2), f.x)):
        where = (field.page, -(field.y + field.h / 2))
        anchor: int | None = None
        for page, top, start in starts:
            if (page, top) <= where:
                anchor = start
            else:
                break
        out.setdefault(anchor, []).append(field)
    return out
