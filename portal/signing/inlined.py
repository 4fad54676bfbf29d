"""A page that extends a layout, compiled as one template: the layout's tokens with the page's
blocks in their places.

Jinja's inheritance costs every render a second template lookup, a table of blocks, a function
per block and one more generator for each piece of output a block makes: about a tenth of
rendering the signer's document page. Where a page only extends a layout and fills its blocks,
the two compile to the same output as one template. Anything else keeps Jinja's inheritance:
``super()`` or ``self``, blocks with modifiers, inside other blocks, loops or macros, a block
of the page the layout does not have, a name a block sets or defines that appears anywhere
else, any tag but macros and sets outside the page's blocks, a macro or set of the page's
that the layout defines too. Not while templates reload on change either: an edit to the
layout would not reach the pages compiled with it. (An error in the layout's part of a merged
page is reported with the layout's line number under the page's name.)
"""

from __future__ import annotations

from collections.abc import Callable

from jinja2.lexer import Token

Tokens = list[Token]

# Tags whose body is a scope of its own: a block inside one is left to Jinja.
_SCOPES = {"for": "endfor", "macro": "endmacro", "call": "endcall", "filter": "endfilter",
           "with": "endwith"}  # fmt: skip
# (An ``{% include %}`` is fine: the included template gets the context and the variables
# around it as Jinja's include gives them, merged or not, and keeps its own names.)
_REFUSED = frozenset({"super", "self", "extends", "import", "from"})


def inlined(page: Tokens, layout: Callable[[str], Tokens]) -> Tokens | None:
    """The page's tokens merged into its layout's (``layout(name)`` gives them), or None."""
    parts = _page_parts(page)
    if parts is None:
        return None
    name, preamble, blocks = parts
    layout_tokens = layout(name)
    if (
        _refused(layout_tokens)
        or _defined(preamble) & _defined(layout_tokens)
        or not _separate(preamble, blocks, layout_tokens)
    ):
        return None
    return _merged(layout_tokens, preamble, blocks)


def layout_name(page: Tokens) -> str | None:
    """The name in the page's opening ``{% extends "name" %}``, if it opens with one."""
    kinds = [t.type for t in page[:4]]
    if kinds == ["block_begin", "name", "string", "block_end"] and page[1].value == "extends":
        return str(page[2].value)
    return None


def _page_parts(page: Tokens) -> tuple[str, Tokens, dict[str, Tokens]] | None:
    """The layout's name, the page's macros and sets, and its blocks' bodies."""
    name = layout_name(page)
    if name is None or _refused(page[4:]):
        return None
    preamble: Tokens = []
    blocks: dict[str, Tokens] = {}
    i = 4
    while i < len(page):
        token = page[i]
        if token.type == "data":  # outside the blocks: never output
            i += 1
            continue
        if token.type != "block_begin":
            return None  # an expression outside the blocks
        end = _tag_end(page, i)
        tag = _tag(page, i)
        if tag == "block":
            block = _block(page, i, end)
            if block is None or block[0] in blocks:
                return None
            blocks[block[0]] = block[1]
            i = block[2]
        elif tag in ("macro", "set"):
            close = end if tag == "set" and _assigns(page, i, end) else _closing(page, end, tag)
            if close is None:
                return None
            preamble += page[i : close + 1]
            i = close + 1
        else:
            return None
    return name, preamble, blocks


def _merged(layout: Tokens, preamble: Tokens, blocks: dict[str, Tokens]) -> Tokens | None:
    out = list(preamble)
    scopes: list[str] = []
    used: set[str] = set()
    i = 0
    while i < len(layout):
        if layout[i].type != "block_begin":
            out.append(layout[i])
            i += 1
            continue
        end = _tag_end(layout, i)
        tag = _tag(layout, i)
        if tag == "block":
            block = _block(layout, i, end)
            if block is None or scopes:
                return None
            used.add(block[0])
            out += blocks.get(block[0], block[1])
            i = block[2]
            continue
        if tag in _SCOPES:
            scopes.append(_SCOPES[tag])
        elif scopes and tag == scopes[-1]:
            scopes.pop()
        out += layout[i : end + 1]
        i = end + 1
    return out if used >= set(blocks) else None


def _block(tokens: Tokens, start: int, end: int) -> tuple[str, Tokens, int] | None:
    """``{% block name %}body{% endblock %}`` at ``start``: name, body, index after it."""
    if end - start != 3 or tokens[start + 2].type != "name":
        return None  # a modifier (scoped, required) or something else
    close = _closing(tokens, end, "block")
    if close is None:
        return None
    body = tokens[end + 1 : _tag_start(tokens, close)]
    if any(t.type == "name" and t.value == "block" for t in body):
        return None  # a block inside the block
    return str(tokens[start + 2].value), body, close + 1


def _closing(tokens: Tokens, after: int, tag: str) -> int | None:
    """The index of the ``block_end`` of the ``end<tag>`` that closes the tag ending at
    ``after`` (nested ones of the same tag counted)."""
    depth = 1
    i = after + 1
    while i < len(tokens):
        if tokens[i].type == "block_begin":
            end = _tag_end(tokens, i)
            name = _tag(tokens, i)
            if name == tag and not (tag == "set" and _assigns(tokens, i, end)):
                depth += 1
            elif name == f"end{tag}":
                depth -= 1
                if depth == 0:
                    return end
            i = end + 1
        else:
            i += 1
    return None


def _separate(preamble: Tokens, blocks: dict[str, Tokens], layout: Tokens) -> bool:
    """Whether every name a block sets or defines appears nowhere outside that block (in
    its own function there, it would be shared with the rest of the page once merged)."""
    for name, body in blocks.items():
        mine = _defined(body)
        if not mine:
            continue
        elsewhere = [preamble, layout, *(b for n, b in blocks.items() if n != name)]
        if any(t.type == "name" and t.value in mine for part in elsewhere for t in part):
            return False
    return True


def _defined(tokens: Tokens) -> set[str]:
    """The names ``{% set %}`` and ``{% macro %}`` tags define in ``tokens`` outside any
    scope of their own (a loop's sets stay in the loop, merged or not)."""
    names = set()
    scopes: list[str] = []
    for i, token in enumerate(tokens):
        if token.type != "block_begin":
            continue
        tag = _tag(tokens, i)
        if not scopes and tag in ("set", "macro"):
            for t in tokens[i + 2 : _tag_end(tokens, i)]:
                if t.type in ("assign", "lparen"):
                    break
                if t.type == "name":
                    names.add(str(t.value))
        if tag in _SCOPES:
            scopes.append(_SCOPES[tag])
        elif scopes and tag == scopes[-1]:
            scopes.pop()
    return names


def _refused(tokens: Tokens) -> bool:
    return any(t.type == "name" and t.value in _REFUSED for t in tokens)


def _assigns(tokens: Tokens, start: int, end: int) -> bool:
    return any(t.type == "assign" for t in tokens[start:end])


def _tag(tokens: Tokens, start: int) -> str | None:
    following = tokens[start + 1] if start + 1 < len(tokens) else None
    return str(following.value) if following is not None and following.type == "name" else None


def _tag_end(tokens: Tokens, start: int) -> int:
    i = start
    while i < len(tokens) and tokens[i].type != "block_end":
        i += 1
    return i


def _tag_start(tokens: Tokens, end: int) -> int:
    i = end
    while i > 0 and tokens[i].type != "block_begin":
        i -= 1
    return i
