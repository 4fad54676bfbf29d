"""What the console's search box looks through: one lower-cased text per envelope.

``Envelope.search_text`` holds, case-folded and with runs of spaces collapsed, the envelope's
title and ticket reference, every merge value (order number, account number, the customer's
name...), and each recipient's name, email and phone (the phone also as its digits alone, so
``+44 20 7946-0000`` is found by ``79460000`` as well as by ``7946-0000``), one per line. A search
is then one ``LIKE '%term%'`` on one column, which PostgreSQL answers from a pg_trgm GIN index
(``ix_envelope_search_text``, migration 0010) and SQLite by a scan.

Keeping it right, in one place:

* ``search_text_for(...)`` computes the value from plain values. It is the only definition;
  whoever inserts envelopes with Core statements (bulk send's chunked inserts) calls it for
  each envelope row with the recipients it inserts for it.
* Everything that goes through the ORM is covered by a flush hook (``refresh_search_text`` in
  ``portal.envelopes.models``, listening to every session's ``before_flush``): a new envelope,
  a changed title, ticket or merge data, and a recipient added or whose name, email or phone
  changed (creation, *Correct the email*...) give the envelope its text again before the
  flush writes it. Nothing else needs to remember it.
* Migration 0010 filled it in for the envelopes that existed before, with this function.

``needles(term)`` turns what was typed into what to look for: the text itself (``%`` and
``_`` taken literally, as everywhere in the portal) and, when it helps, a narrower part for
the index. A trigram index reads the whole list of every trigram in the pattern, and the
parts every envelope shares are the longest lists: at a million envelopes ``ORD-0006008``
read 1,098 index pages (26 ms) because every order number starts ``ord-000``, while its
digits ``0006008`` read 508 pages less and took 2 ms. So PostgreSQL is asked to find the
longest run of letters and digits with the index and to check the whole text on the rows
it finds (``strpos``, which no index serves, so the planner keeps it a filter). The column
keeps 1,000 statistics samples (migration 0010) so that the planner knows a common word
(walk the team's newest envelopes) from a rare one (ask the index).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ESCAPE = "/"
_PHONE_LIKE = re.compile(r"^[\d\s+()./-]+$")
_MIN_PHONE_DIGITS = 4
_RUNS = re.compile(r"[^\W_]+")  # letters and digits
_MIN_RUN = 3  # a trigram index needs three characters


def normalise(value: str) -> str:
    """Case-folded, with every run of white space one space (what is stored and searched)."""
    return " ".join(value.split()).casefold()


def digits(value: str) -> str:
    """The digits of a phone number alone."""
    return "".join(ch for ch in value if ch.isdigit())


def search_text_for(
    title: str | None,
    ticket_id: str | None,
    merge_data: Mapping[str, Any] | None,
    recipients: Iterable[tuple[str | None, str | None, str | None]],
) -> str:
    """The search text of an envelope; ``recipients`` are (name, email, phone) triples."""
    parts: list[str] = [title or "", ticket_id or ""]
    parts.extend(str(value) for value in (merge_data or {}).values() if value is not None)
    for name, email, phone in recipients:
        parts.extend((name or "", email or "", phone or ""))
        if phone and digits(phone) != phone:
            parts.append(digits(phone))
    # (what ``normalise`` does to each part, with one casefold for all: bulk send calls this
    # for every row)
    return "\n".join(p for p in (" ".join(part.split()) for part in parts) if p).casefold()


def _like(value: str) -> str:
    escaped = (
        value.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    )
    return f"%{escaped}%"


@dataclass(frozen=True)
class Needle:
    """One text to find in the search text."""

    text: str  # normalised, found as it is
    like: str  # the LIKE pattern that finds it (escape character ESCAPE)
    narrower: str | None  # the LIKE pattern of its most selective part, when it has one


def _narrower(text: str) -> str | None:
    runs = [run for run in _RUNS.findall(text) if len(run) >= _MIN_RUN]
    if not runs:
        return None
    best = max(runs, key=lambda run: (len(run), any(ch.isdigit() for ch in run)))
    return _like(best) if best != text else None


def _needle(text: str) -> Needle:
    return Needle(text, _like(text), _narrower(text))


def needles(term: str) -> list[Needle]:
    """What to look for when ``term`` is typed into the search box (nothing: no search).

    A term that looks like a phone number is also looked for as its digits alone.
    """
    wanted = normalise(term)
    if not wanted:
        return []
    found = [_needle(wanted)]
    number = digits(wanted)
    if _PHONE_LIKE.match(wanted) and len(number) >= _MIN_PHONE_DIGITS and number != wanted:
        found.append(_needle(number))
    return found
