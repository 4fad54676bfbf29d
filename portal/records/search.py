"""The audit trail search: one page over the whole chain, for compliance officers and admins.

Filters (all optional, combined with AND): an envelope (its public id), a customer (an email,
matched whole, or part of a name: through the recipients of the envelopes the events are
about), a staff member (the events they did), an event type (one of ``audit.LABELS``), an IP
address (through the ``audit_ref`` side index: the chain itself keeps IPs encrypted), a ticket
reference and a date range in UTC (quick picks: today, the last 7 days, last month).

Everything comes from the query string (``AuditQuery.parse``): a search is bookmarkable and
works without JavaScript. Values that make no sense (dates that are not dates, a range the
wrong way round, an unknown event type, an IP that is not one, text longer than any real value)
are left out and named in ``problems``; they never raise.

Pages are keyset pages, newest first: the next page starts below the last row's sequence
number (``after``), so page 500 costs what page 1 costs. Counts stop at ``COUNT_CAP`` ("more
than 10,000"). Each filter has an index that serves it newest first (migration 0015, chosen from
EXPLAIN at five million events): the envelope's, customer's and ticket's events by
``ix_audit_event_subject`` (subject, seq), a staff member's by ``ix_audit_event_actor``, an
event type's by ``ix_audit_event_event_seq`` (event, seq), a date range by
``ix_audit_event_occurred_seq`` (occurred_at, seq) and an IP's by ``ix_audit_ref_ip_seq``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from typing import cast as typing_cast

from sqlalchemy import ColumnElement, Index, String, Table, cast, exists, func, or_, select

from portal import audit, clock
from portal.accounts.access import S, sees_all_teams, team_scope
from portal.accounts.models import User
from portal.audit import AuditEvent
from portal.envelopes import console, timeline
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.records import access
from portal.records.keys import AuditRef
from portal.records.periods import QUICK_PICKS, Period

PAGE_SIZE = 100
COUNT_CAP = 10_000
MAX_TEXT = 254  # longer than any email, name, ticket or IP we store: not a value to look for
MIN_CUSTOMER = 3  # fewer would pick most envelopes (and a trigram index needs three)
PUBLIC_ID = re.compile(r"^[0-9a-f]{32}$")

# The compliance report's quick picks (``periods``), so a pick has one URL value everywhere;
# plus "any time". The first names of two of them still work (bookmarks).
PERIODS = {"": "Any time", **QUICK_PICKS}
PERIOD_ALIASES = {"7d": "last_7_days", "month": "last_month"}

# The search's own indexes (migration 0015), declared here so that the chain's modules stay
# as they are: an event type's events newest first (a rare type is otherwise a walk back
# through every event), and the events of an IP address in the chain's side index.
Index("ix_audit_event_event_seq", AuditEvent.event, AuditEvent.seq)
Index("ix_audit_ref_ip", AuditRef.ip, AuditRef.seq)
audit_ref = typing_cast(Table, AuditRef.__table__)


def start_of(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def _text(args: Mapping[str, str], name: str, label: str, problems: list[str]) -> str:
    value = " ".join(str(args.get(name, "")).split())
    if len(value) > MAX_TEXT:
        problems.append(f"{label} is longer than any real one ({len(value):,} characters); "
                        "it was left out.")  # fmt: skip
        return ""
    return value


def _customer(args: Mapping[str, str], problems: list[str]) -> str:
    value = _text(args, "customer", "The customer", problems)
    if 0 < len(value) < MIN_CUSTOMER:
        problems.append(f"Type at least {MIN_CUSTOMER} characters of the customer's email or "
                        "name; it was left out.")  # fmt: skip
        return ""
    return value


def _day(value: str, label: str, problems: list[str]) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        if len(value) > 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "…"
        problems.append(f"{label} must be a date such as 2026-12-31 (it was “{shown}”); "
                        "it was left out.")  # fmt: skip
        return None


def period_range(period: str, today: date) -> tuple[date, date]:
    """The first and last day (inclusive) of a quick pick (``periods.Period.of``)."""
    chosen = Period.of(PERIOD_ALIASES.get(period, period), today)
    return chosen.first, chosen.last


@dataclass(frozen=True)
class AuditQuery:
    """What the search looks for (see the module's docstring)."""

    envelope: str = ""
    customer: str = ""
    staff: int | None = None
    event: str = ""
    ip: str = ""
    ticket: str = ""
    period: str = ""
    date_from: date | None = None
    date_to: date | None = None
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, args: Mapping[str, str], today: date | None = None) -> AuditQuery:
        """The query string's filters; values that make no sense are left out and named."""
        problems: list[str] = []
        today = today or clock.utcnow().date()
        envelope = _text(args, "envelope", "The envelope id", problems).lower()
        if envelope and not PUBLIC_ID.match(envelope):
            problems.append("The envelope id is the 32 letters and digits at the end of the "
                            "envelope's address; it was left out.")  # fmt: skip
            envelope = ""
        event = _text(args, "event", "The event type", problems)
        if event and event not in audit.LABELS:
            problems.append(f"There is no event type “{event}”; choose one from the list. "
                            "It was left out.")  # fmt: skip
            event = ""
        ip = _text(args, "ip", "The IP address", problems)
        if ip:
            try:
                ip = ipaddress.ip_address(ip).compressed
            except ValueError:
                problems.append(f"“{ip[:60]}” is not an IP address (such as 203.0.113.7 or "
                                "2001:db8::1); it was left out.")  # fmt: skip
                ip = ""
        staff_text = str(args.get("staff", "")).strip()
        staff = int(staff_text) if staff_text.isascii() and staff_text.isdigit() else None
        if staff_text and (staff is None or len(staff_text) > 9):
            problems.append("Choose the staff member from the list; the value given was "
                            "left out.")  # fmt: skip
            staff = None
        period = str(args.get("period", ""))
        period = PERIOD_ALIASES.get(period, period)
        if period not in PERIODS:
            problems.append("Choose the dates from the list of periods; the value given was "
                            "left out.")  # fmt: skip
            period = ""
        date_from = _day(str(args.get("from", "")), "From", problems)
        date_to = _day(str(args.get("to", "")), "To", problems)
        if period and period != "custom":
            date_from, date_to = period_range(period, today)
        elif date_from or date_to:
            period = "custom"
        if date_from and date_to and date_to < date_from:
            problems.append(f"The range ends ({date_to}) before it starts ({date_from}); "
                            "the dates were left out. Swap them to search that range.")  # fmt: skip
            date_from = date_to = None
            period = ""
        return cls(
            envelope=envelope,
            customer=_customer(args, problems),
            staff=staff,
            event=event,
            ip=ip,
            ticket=_text(args, "ticket", "The ticket reference", problems),
            period=period,
            date_from=date_from,
            date_to=date_to,
            problems=tuple(problems),
        )

    def params(self) -> dict[str, str]:
        """The query-string values of this search (links, exports, the audit event)."""
        custom = self.period == "custom"
        values = {
            "envelope": self.envelope,
            "customer": self.customer,
            "staff": "" if self.staff is None else str(self.staff),
            "event": self.event,
            "ip": self.ip,
            "ticket": self.ticket,
            "period": self.period,
            "from": self.date_from.isoformat() if custom and self.date_from else "",
            "to": self.date_to.isoformat() if custom and self.date_to else "",
        }
        return {name: value for name, value in values.items() if value}

    @property
    def filtered(self) -> bool:
        return bool(self.params())

    @property
    def about_envelopes(self) -> bool:
        """Whether a filter picks envelopes (the events about them are then searched)."""
        return bool(self.envelope or self.customer or self.ticket)


# ---------------------------------------------------------------- what matches


def envelope_ids(query: AuditQuery, user: User) -> Any:
    """A SELECT of the ids of the envelopes the query's envelope, customer and ticket pick,
    within the user's scope."""
    stmt = select(Envelope.id)
    if query.customer:
        # The console's search text finds the envelopes (a trigram index on PostgreSQL);
        # then a recipient's email (whole) or name (a part) must match.
        stmt = console.matching(stmt, console.ListQuery(q=query.customer), user)
        wanted = query.customer.casefold()
        person: ColumnElement[bool] = func.lower(Recipient.email) == wanted
        if "@" not in wanted:
            person = or_(person, func.lower(Recipient.name).contains(wanted, autoescape=True))
        stmt = stmt.where(
            exists().where(Recipient.envelope_id == Envelope.id, person).correlate(Envelope)
        )
    if query.envelope:
        stmt = stmt.where(Envelope.public_id == query.envelope)
    if query.ticket:
        stmt = stmt.where(Envelope.ticket_id == query.ticket)
    return team_scope(stmt, Envelope.team_id, user)


def matching(stmt: S, query: AuditQuery, user: User) -> S:
    """``stmt`` (over ``audit_event``) narrowed to what ``query`` asks for, in the user's scope."""
    conditions: list[ColumnElement[bool]] = []
    if query.about_envelopes:
        ids = envelope_ids(query, user).subquery()
        conditions.append(AuditEvent.subject_type == "envelope")
        conditions.append(AuditEvent.subject_id.in_(select(cast(ids.c.id, String))))
    if not sees_all_teams(user):  # (officers see every team; kept for any narrower role)
        team = select(audit_ref.c.seq).where(audit_ref.c.team_id == user.team_id)
        conditions.append(AuditEvent.seq.in_(team))
    if query.staff is not None:
        conditions.append(AuditEvent.actor_type == "user")
        conditions.append(AuditEvent.actor_id == str(query.staff))
    if query.event:
        conditions.append(AuditEvent.event == query.event)
    if query.ip:
        ips = select(audit_ref.c.seq).where(audit_ref.c.ip == query.ip)
        conditions.append(AuditEvent.seq.in_(ips))
    if query.date_from is not None:
        conditions.append(AuditEvent.occurred_at >= audit.iso_time(start_of(query.date_from)))
    if query.date_to is not None:
        end = start_of(query.date_to + timedelta(days=1))
        conditions.append(AuditEvent.occurred_at < audit.iso_time(end))
    return stmt.where(*conditions) if conditions else stmt


def count(query: AuditQuery, user: User) -> int:
    """How many events match, counting no further than ``COUNT_CAP`` + 1."""
    seqs = matching(select(AuditEvent.seq), query, user).limit(COUNT_CAP + 1).subquery()
    return int(db.session.execute(select(func.count()).select_from(seqs)).scalar_one())


def cursor_value(value: str) -> int | None:
    """The sequence number an ``after`` cursor carries (None: not one of ours)."""
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


# ---------------------------------------------------------------- a page


@dataclass(frozen=True)
class Row:
    """One event as the results list shows it."""

    event: audit.Revealed
    label: str
    envelope_public_id: str | None  # the envelope the event is about, for its link
    staff_id: int | None  # the staff member who did it, for their link
    summary: str = ""  # a line of the data's meaningful values (``summary``)
    data_json: str = ""  # the whole data, indented, for the row's "Data" disclosure


@dataclass
class Page:
    rows: list[Row]
    total: int | None  # up to COUNT_CAP + 1; None: counted by a request of its own
    next_cursor: int | None
    first: bool
    cap: int  # what the count stops at


def _public_ids(events: list[AuditEvent]) -> dict[str, str]:
    ids = {
        int(e.subject_id)
        for e in events
        if e.subject_type == "envelope" and e.subject_id and e.subject_id.isdigit()
    }
    if not ids:
        return {}
    rows = db.session.execute(select(Envelope.id, Envelope.public_id).where(Envelope.id.in_(ids)))
    return {str(i): str(public) for i, public in rows}


# Values of an event's data worth a glance, beyond what the envelope page's timeline names
# (``timeline._detail``: a reason, comment, field, "email to ...", "from → to"...) and what the
# staff access report names (``access._detail``: an export's kind, rows and SHA-256).
_GLANCE = (
    ("what", "what"),
    ("name", "name"),
    ("case_ref", "case"),
    ("envelopes", "envelopes"),
    ("purged", "purged"),
    ("count", "count"),
    ("file", "file"),
    ("source", "source"),
)
SUMMARY_MAX = 160


def summary(event: audit.Revealed) -> str:
    """One short line of an event's data for the results list (the full JSON is one tap away)."""
    data = event.data
    parts = [timeline._detail(event, {})]
    if not event.name.startswith("mail."):  # (the timeline names a mail's kind)
        parts.append(access._detail(event.name, data))
    for key, label in _GLANCE:
        value = data.get(key)
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list | dict):
            value = f"{len(value):,}"
        parts.append(f"{label}: {value}")
    line = " · ".join(p for p in parts if p)
    return line if len(line) <= SUMMARY_MAX else line[: SUMMARY_MAX - 1] + "…"


def _row(shown: audit.Revealed, envelopes: dict[str, str]) -> Row:
    e = shown.event
    actor = e.actor_id or ""
    return Row(
        event=shown,
        label=audit.label(e.event),
        envelope_public_id=envelopes.get(e.subject_id or "")
        if e.subject_type == "envelope"
        else None,
        staff_id=int(actor) if e.actor_type == "user" and actor.isdigit() else None,
        summary=summary(shown),
        data_json=json.dumps(shown.data, indent=2, ensure_ascii=False, default=str)
        if shown.data
        else "",
    )


def page(query: AuditQuery, user: User, after: str = "", count_later: bool = False) -> Page:
    """The page below the cursor ``after`` (the newest events without one)."""
    cursor = cursor_value(after) if after else None
    stmt = matching(select(AuditEvent), query, user)
    if cursor is not None:
        stmt = stmt.where(AuditEvent.seq < cursor)
    events = list(
        db.session.execute(stmt.order_by(AuditEvent.seq.desc()).limit(PAGE_SIZE + 1)).scalars()
    )
    more = len(events) > PAGE_SIZE
    events = events[:PAGE_SIZE]
    envelopes = _public_ids(events)
    rows = [_row(shown, envelopes) for shown in audit.reveal(events)]
    total: int | None = len(rows)  # a first page with room to spare holds every match
    if cursor is not None or more:
        total = None if count_later else count(query, user)
    return Page(
        rows=rows,
        total=total,
        next_cursor=events[-1].seq if more and events else None,
        first=cursor is None,
        cap=COUNT_CAP,
    )


# ---------------------------------------------------------------- the filters' choices


def event_choices() -> list[tuple[str, str]]:
    """Every known event type as (name, label), by label."""
    return sorted(audit.LABELS.items(), key=lambda item: (item[1].casefold(), item[0]))


def staff_choices() -> list[tuple[int, str]]:
    """Every staff member as (id, "Name <email>"), by name."""
    rows = db.session.execute(select(User.id, User.name, User.email).order_by(User.name, User.id))
    return [(int(i), f"{name} <{email}>") for i, name, email in rows]
