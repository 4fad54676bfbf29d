"""The console's list of envelopes: filters, sort orders, keyset pages and capped counts.

Everything the list shows comes from the query string (``ListQuery.parse``), so a page is
bookmarkable and works without JavaScript. Pages are keyset pages: the next one starts after
the last row's sort key and id (``after``), the previous one before the first row's
(``before``), so page 2,000 costs what page 1 costs and rows never repeat or go missing
while envelopes are added. Counts stop at ``COUNT_CAP`` ("more than 10,000"). Each sort
order has an index that serves it within a team and across teams (see ``Envelope``); a
search is one ``LIKE`` on ``Envelope.search_text`` (``portal.envelopes.search``).

A page costs the same few statements whatever it shows: the rows, their recipients (and
teams), the latest email of the rows' recipients (bounces), and the count (left out when a
first page has room to spare: it holds every match; and for the search box, asked for by a
request of its own once the rows show).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from portal import clock
from portal.accounts.access import S, sees_all_teams, team_scope
from portal.accounts.models import Team, User
from portal.envelopes import attention, search
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library.models import Template, TemplateVersion
from portal.library.queries import FIXED

PAGE_SIZE = 50
COUNT_CAP = 10_000
CURSOR_MAX = 1000  # characters: a title of 200 and a time and an id take far fewer

STATUS_LABELS = {
    "sent": "Waiting for signatures",
    "completed": "Completed",
    "declined": "Declined",
    "voided": "Voided",
    "expired": "Expired",
}

# Sort key -> the columns of its keyset (all in one direction) and whether it starts newest
# or last first. "status" groups by status, oldest first within one (the longest waiting).
SORTS: dict[str, tuple[tuple[InstrumentedAttribute[Any], ...], bool]] = {
    "sent": ((Envelope.created_at, Envelope.id), True),
    "document": ((Envelope.title, Envelope.id), False),
    "status": ((Envelope.status, Envelope.created_at, Envelope.id), False),
}
DEFAULT_SORT = "-sent"


def _sort_value(key: str, descending: bool) -> str:
    return f"-{key}" if descending else key


@dataclass(frozen=True)
class ListQuery:
    """What the list shows: the filters, the search and the sort order."""

    q: str = ""
    status: str = ""
    template: int | None = None
    team: int | None = None
    mine: bool = False
    sent_from: date | None = None
    sent_to: date | None = None
    attention: bool = False
    sort: str = DEFAULT_SORT
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, args: Mapping[str, str], *, all_teams: bool) -> ListQuery:
        """The query string's filters; values that make no sense are left out and named."""
        problems: list[str] = []
        status = args.get("status", "")
        sort = args.get("sort", DEFAULT_SORT)
        return cls(
            q=" ".join(args.get("q", "").split())[:200],
            status=status if status in STATUS_LABELS else "",
            template=_number(args.get("template", "")),
            team=_number(args.get("team", "")) if all_teams else None,
            mine=args.get("mine") == "1",
            sent_from=_day(args.get("sent_from", ""), "Sent from", problems),
            sent_to=_day(args.get("sent_to", ""), "Sent to", problems),
            attention=args.get("attention") == "1",
            sort=sort if sort.lstrip("-") in SORTS else DEFAULT_SORT,
            problems=tuple(problems),
        )

    @property
    def sort_key(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def filtered(self) -> bool:
        """Whether anything narrows the list (the sort order does not)."""
        return self.params(sort=False) != {}

    def params(self, *, sort: bool = True) -> dict[str, str]:
        """The query-string values that differ from the defaults (links, the audit event)."""
        values = {
            "q": self.q,
            "status": self.status,
            "template": "" if self.template is None else str(self.template),
            "team": "" if self.team is None else str(self.team),
            "mine": "1" if self.mine else "",
            "sent_from": self.sent_from.isoformat() if self.sent_from else "",
            "sent_to": self.sent_to.isoformat() if self.sent_to else "",
            "attention": "1" if self.attention else "",
            "sort": self.sort if sort and self.sort != DEFAULT_SORT else "",
        }
        return {name: value for name, value in values.items() if value}

    def sorted_by(self, key: str) -> ListQuery:
        """The same list sorted by ``key``: the other way round when it already is."""
        if key == self.sort_key:
            return replace(self, sort=_sort_value(key, not self.descending))
        return replace(self, sort=_sort_value(key, SORTS[key][1]))


def _number(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else None


def _day(value: str, label: str, problems: list[str]) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problems.append(f"{label} must be a date such as 2026-12-31; it was left out.")
        return None


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# ---------------------------------------------------------------- what matches


def _finds(needle: search.Needle) -> ColumnElement[bool]:
    """Envelopes whose search text holds the needle; on PostgreSQL the trigram index looks
    for its narrower part and ``strpos`` checks the whole (see ``portal.envelopes.search``)."""
    postgresql = db.session.get_bind().dialect.name == "postgresql"
    if not postgresql or needle.narrower is None:
        return Envelope.search_text.like(needle.like, escape=search.ESCAPE)
    return and_(
        Envelope.search_text.like(needle.narrower, escape=search.ESCAPE),
        func.strpos(Envelope.search_text, needle.text) > 0,
    )


def matching(stmt: S, query: ListQuery, user: User) -> S:
    """``stmt`` (over envelopes) narrowed to what ``query`` asks for, within the user's scope."""
    stmt = team_scope(stmt, Envelope.team_id, user)
    found = search.needles(query.q)
    if found:
        stmt = stmt.where(or_(*(_finds(needle) for needle in found)))
    if query.status:
        stmt = stmt.where(Envelope.status == query.status)
    if query.template is not None:
        versions = select(TemplateVersion.id).where(TemplateVersion.template_id == query.template)
        stmt = stmt.where(Envelope.template_version_id.in_(versions))
    if query.team is not None and sees_all_teams(user):
        stmt = stmt.where(Envelope.team_id == query.team)
    if query.mine:
        stmt = stmt.where(Envelope.created_by_id == user.id)
    if query.sent_from is not None:
        stmt = stmt.where(Envelope.created_at >= _start_of(query.sent_from))
    if query.sent_to is not None:
        stmt = stmt.where(Envelope.created_at < _start_of(query.sent_to + timedelta(days=1)))
    if query.attention:
        stmt = stmt.where(attention.needs_attention(clock.utcnow()))
    return stmt


def count(query: ListQuery, user: User) -> int:
    """How many envelopes match, counting no further than ``COUNT_CAP`` + 1."""
    ids = matching(select(Envelope.id), query, user).limit(COUNT_CAP + 1).subquery()
    return int(db.session.execute(select(func.count()).select_from(ids)).scalar_one())


# ---------------------------------------------------------------- keyset pages


def _columns(query: ListQuery) -> tuple[InstrumentedAttribute[Any], ...]:
    return SORTS[query.sort_key][0]


def cursor_of(values: Sequence[Any]) -> str:
    """A row's sort key and id as an opaque, URL-safe cursor."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode(cursor: str, columns: Sequence[InstrumentedAttribute[Any]]) -> list[Any] | None:
    """The values a cursor carries, typed like ``columns``; None when it is not one of ours."""
    if len(cursor) > CURSOR_MAX:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(raw, list) or len(raw) != len(columns):
        return None
    values: list[Any] = []
    for column, value in zip(columns, raw, strict=True):
        if column.key == "id" and isinstance(value, int) and not isinstance(value, bool):
            values.append(value)
        elif column.key == "created_at" and isinstance(value, str):
            try:
                values.append(clock.as_utc(datetime.fromisoformat(value)))
            except ValueError:
                return None
        elif column.key in ("title", "status") and isinstance(value, str):
            values.append(value)
        else:
            return None
    return values


def _row_key(envelope: Envelope, columns: Sequence[InstrumentedAttribute[Any]]) -> list[Any]:
    values = [getattr(envelope, column.key) for column in columns]
    return [clock.as_utc(v) if isinstance(v, datetime) else v for v in values]


def keyset(stmt: S, query: ListQuery, cursor: list[Any] | None, backwards: bool) -> S:
    """``stmt`` ordered by the sort's columns, past ``cursor`` in the direction of travel."""
    columns = _columns(query)
    descending = query.descending != backwards
    if cursor is not None:
        bound = tuple_(*columns)
        stmt = stmt.where(bound < tuple_(*cursor) if descending else bound > tuple_(*cursor))
    return stmt.order_by(*(c.desc() if descending else c.asc() for c in columns))


@dataclass
class Page:
    """One page of the list."""

    envelopes: list[Envelope]
    total: int | None  # up to COUNT_CAP + 1; None: counted by a request of its own
    next_cursor: str | None
    previous_cursor: str | None
    attention: dict[int, list[str]]
    cap: int  # what the count stops at


def page(
    query: ListQuery, user: User, after: str = "", before: str = "", count_later: bool = False
) -> Page:
    """The page after the cursor ``after`` (or before ``before``; the first page without).

    ``count_later``: leave the count to a request of its own (``count``) when it has to be
    counted, so the rows show at once: the search box asks so, because counting a common
    word's matches visits each of them (up to COUNT_CAP), where the page needs only 51.
    """
    columns = _columns(query)
    backwards = bool(before)
    cursor = _decode(before or after, columns) if (before or after) else None
    if cursor is None:
        backwards = False
    stmt = matching(select(Envelope), query, user).options(selectinload(Envelope.recipients))
    if sees_all_teams(user):
        stmt = stmt.options(selectinload(Envelope.team))
    stmt = keyset(stmt, query, cursor, backwards).limit(PAGE_SIZE + 1)
    rows = list(db.session.execute(stmt).scalars())
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if backwards:
        rows.reverse()
        has_next, has_previous = True, more
    else:
        has_next, has_previous = more, cursor is not None
    total: int | None = len(rows)  # a first page with room to spare holds every match
    if cursor is not None or more:
        total = None if count_later else count(query, user)
    return Page(
        envelopes=rows,
        total=total,
        next_cursor=cursor_of(_row_key(rows[-1], columns)) if has_next and rows else None,
        previous_cursor=cursor_of(_row_key(rows[0], columns)) if has_previous and rows else None,
        attention=attention.reasons(rows, clock.utcnow()),
        cap=COUNT_CAP,
    )


# ---------------------------------------------------------------- the filters' choices


def template_choices(user: User) -> list[tuple[int, str]]:
    """The templates the user's envelopes can come from: those of their team (or all) that
    were ever approved (drafts were never sent, and agents do not see them)."""
    sendable = exists().where(
        TemplateVersion.template_id == Template.id, TemplateVersion.status.in_(FIXED)
    )
    stmt = team_scope(
        select(Template.id, Template.name).where(sendable).order_by(Template.name, Template.id),
        Template.team_id,
        user,
    )
    return [(int(i), str(name)) for i, name in db.session.execute(stmt)]


def team_choices(user: User) -> list[tuple[int, str]]:
    """Every team, for those who see all teams (nobody else gets a team filter)."""
    if not sees_all_teams(user):
        return []
    rows = db.session.execute(select(Team.id, Team.name).order_by(Team.name))
    return [(int(i), str(name)) for i, name in rows]


def pages_of(stmt: S, query: ListQuery, size: int) -> Iterator[Sequence[Any]]:
    """Every row of ``stmt`` in keyset batches of ``size``, each its own short read (``stmt``
    selects the sort's columns under their own names: created_at, title, status, id)."""
    key = [column.key for column in _columns(query)]
    cursor: list[Any] | None = None
    while True:
        rows = db.session.execute(keyset(stmt, query, cursor, False).limit(size)).all()
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        last = rows[-1]._mapping
        cursor = [last[name] for name in key]
        db.session.rollback()  # end the read; the next batch reads what is committed then
