"""What people may type into the portal, and how their text is printed and searched.

* ``first_refused`` finds characters no request may carry: C0 control characters and DEL
  (tab, line feed and carriage return excepted) and lone surrogates. PostgreSQL cannot store
  a NUL byte in text at all, and none of them belongs in a name, an email or a reason;
  ``portal.web`` refuses every request that carries one, before any view runs.
* ``without_controls`` drops them from values we store without asking anyone (request
  headers such as User-Agent).
* ``printable`` removes the invisible characters that reorder or hide text (bidirectional
  embeddings, overrides and isolates, direction marks, zero-width characters), so that a file
  called ``invoice<U+202E>fdp.exe`` is printed as ``invoicefdp.exe``, not as ``invoiceexe.pdf``.
* ``contains`` matches a search box's text literally: ``%`` and ``_`` are not wildcards.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement

_REFUSED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

# Unicode format characters that change the order or visibility of the text around them:
# Arabic letter mark, zero-width space, left-to-right and right-to-left marks, the
# embeddings, overrides and isolates (and their pop), word joiner and invisible operators,
# the deprecated shaping and swapping controls, the byte-order mark used as a zero-width
# no-break space, and the interlinear annotation controls. Zero-width (non-)joiners stay:
# several scripts and emoji need them.
_REORDERING = re.compile(
    "[\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]"
)


def first_refused(value: str) -> str | None:
    """The first character of ``value`` that no request may carry, or None."""
    match = _REFUSED.search(value)
    return match.group(0) if match else None


def without_controls(value: str) -> str:
    """``value`` without the characters ``first_refused`` finds."""
    return _REFUSED.sub("", value)


def printable(value: str) -> str:
    """``value`` without control characters nor the invisible ones that reorder text."""
    return _REORDERING.sub("", without_controls(value))


def contains(column: Any, query: str) -> ColumnElement[bool]:
    """``column`` contains ``query`` (case-insensitive), with ``%`` and ``_`` taken literally."""
    return column.icontains(query.strip(), autoescape=True)
