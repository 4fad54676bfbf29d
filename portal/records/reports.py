"""The compliance report: a sealed PDF of what happened in a period, for all teams or one team
or template.

What it counts (``gather``):

* envelopes **created** in the period (UTC days), by status, by template and by team, and the
  median time to complete (sent, or created when never sent, to completed) of those completed;
* audit events that **occurred** in the period: declines (with their reasons), bounced
  emails, failed authentications and lockouts, sealing failures, purges, legal holds placed
  and released, exports and reports made (by kind). Holds and exports are not about one
  envelope: a report for one team or template counts them for the whole portal, and says so;
* then the envelopes themselves, the first ``REPORT_MAX_ENVELOPES`` (2,000 unless configured)
  in order of creation; the report says when it lists fewer than it counts (the envelopes CSV
  export has them all).

The work is bounded: totals are aggregate queries, the lists are capped, and the event data
read (decline reasons, export kinds) is capped too. Rendered with the certificate's look
(``portal.documents.certificate``: A4, "page N of M"), sealed with the portal's seal
(``sealing.seal_report``) so that the verify page and any PDF reader can check it, and
recorded as ``records.exported`` (kind ``compliance_report``: filters, rows, SHA-256).
"""

from __future__ import annotations

import functools
import hashlib
import io
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from reportlab.platypus import CondPageBreak, Flowable, Spacer
from sqlalchemy import String, case, cast, func, select

from portal import audit, clock
from portal.accounts.models import Team, User
from portal.documents.certificate import (
    _BoxedPairs,
    _clean,
    _heading,
    _lines,
    _listing,
    _look,
    _note,
    _NumberedCanvas,
    _split,
    a4_document,
    format_utc,
)
from portal.envelopes import sealing
from portal.envelopes.console import STATUS_LABELS
from portal.envelopes.models import Envelope
from portal.extensions import db, write_lock
from portal.library.models import Template, TemplateVersion
from portal.records.periods import Period

KIND = "compliance_report"
EXPORTED = "records.exported"
DEFAULT_MAX_ENVELOPES = 2000
MAX_DECLINES = 200  # decline reasons listed
MAX_EXPORTS_READ = 5000  # export events whose kind is read
_SCOPE_LENGTH = 40

# The audit events the report counts, in its order: (event, what it is called, portal-wide).
COUNTED = (
    ("recipient.declined", "Declines", False),
    ("mail.bounced", "Bounced emails", False),
    ("recipient.authentication_failed", "Failed authentications (wrong codes)", False),
    ("recipient.locked", "Recipients locked out", False),
    ("envelope.seal_failed", "Sealing failures", False),
    ("envelope.sealed", "Documents sealed", False),
    ("envelope.voided", "Envelopes voided", False),
    ("envelope.purged", "Envelopes purged", False),
    ("hold.placed", "Legal holds placed", True),
    ("hold.released", "Legal holds released", True),
    ("records.exported", "Records exports and reports made", True),
    ("envelope.list_exported", "Console envelope lists exported", True),
    ("subject.exported", "Data-subject exports", True),
    ("subject.erasure_requested", "Erasure requests", True),
)
_EXPORT_KINDS = {
    "compliance_report": "Compliance reports (PDF)",
    "access_report": "Staff access reports (CSV)",
    "audit": "Audit events (CSV)",
    "envelopes": "Envelopes (CSV)",
    "hold_zip": "Legal hold exports (ZIP)",
}

audit.add_labels({EXPORTED: "Records exported"})


class ReportError(ValueError):
    """The report cannot be made (the message says why, for the person who asked)."""


# ---------------------------------------------------------------- what was asked


@dataclass(frozen=True)
class ReportQuery:
    """A period and a scope: every team, or one team, or one template."""

    period: Period
    team_id: int | None = None
    template_id: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def scope(self) -> str:
        if self.team_id is not None:
            return f"team:{self.team_id}"
        if self.template_id is not None:
            return f"template:{self.template_id}"
        return "all"

    def params(self) -> dict[str, str]:
        return {**self.period.params(), "scope": self.scope}

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> ReportQuery:
        period = Period.parse(args)
        errors = list(period.errors)
        raw = str(args.get("scope") or "all")
        team_id = template_id = None
        kind, _, number = raw.partition(":")
        if raw != "all":
            known = (
                len(raw) <= _SCOPE_LENGTH
                and kind in ("team", "template")
                and number.isascii()
                and number.isdigit()
            )
            found = None
            if known:
                model = Team if kind == "team" else Template
                found = db.session.get(model, int(number))
            if found is None:
                errors.append("Choose the scope from the list: every team, a team or a template.")
            elif kind == "team":
                team_id = int(number)
            else:
                template_id = int(number)
        return cls(period, team_id, template_id, errors)


def scope_choices() -> list[tuple[str, str]]:
    """(value, label) of every scope an officer may choose (officers see every team)."""
    teams = db.session.execute(select(Team.id, Team.name).order_by(Team.name)).all()
    templates = db.session.execute(select(Template.id, Template.name).order_by(Template.name)).all()
    return [
        ("all", "Every team"),
        *((f"team:{t.id}", f"Team: {t.name}") for t in teams),
        *((f"template:{t.id}", f"Template: {t.name}") for t in templates),
    ]


# ---------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Decline:
    at: datetime
    envelope: str  # public id
    title: str
    reason: str


@dataclass(frozen=True)
class Listed:
    public_id: str
    title: str
    template: str
    team: str
    status: str
    seal: str
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class ReportData:
    """Everything the report states (no database access while rendering)."""

    organisation: str
    scope_label: str
    period: Period
    generated_at: datetime
    generated_by: str
    total: int
    by_status: list[tuple[str, int]]
    by_template: list[tuple[str, int, int]]  # name, envelopes, completed
    by_team: list[tuple[str, int, int]]
    completed: int
    median_seconds: float | None
    events: list[tuple[str, int, bool]]  # label, count, portal-wide
    exports: list[tuple[str, int]]
    declines: list[Decline]
    declines_total: int
    envelopes: list[Listed]
    cap: int

    @property
    def listed_all(self) -> bool:
        return len(self.envelopes) >= self.total


def _in_scope(stmt: Any, query: ReportQuery) -> Any:
    if query.team_id is not None:
        stmt = stmt.where(Envelope.team_id == query.team_id)
    if query.template_id is not None:
        versions = select(TemplateVersion.id).where(
            TemplateVersion.template_id == query.template_id
        )
        stmt = stmt.where(Envelope.template_version_id.in_(versions))
    return stmt


def _created_in(stmt: Any, query: ReportQuery) -> Any:
    stmt = stmt.where(
        Envelope.created_at >= query.period.start, Envelope.created_at < query.period.end
    )
    return _in_scope(stmt, query)


def _scope_label(query: ReportQuery) -> str:
    if query.team_id is not None:
        team = db.session.get(Team, query.team_id)
        return f"Team {team.name}" if team else "One team"
    if query.template_id is not None:
        template = db.session.get(Template, query.template_id)
        return f"Template {template.name}" if template else "One template"
    return "Every team"


def _median_seconds(query: ReportQuery, completed: int) -> float | None:
    if completed == 0:
        return None
    began = func.coalesce(Envelope.sent_at, Envelope.created_at)
    done = Envelope.status == "completed"
    if db.session.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", Envelope.finished_at - began)
        stmt = select(func.percentile_cont(0.5).within_group(seconds)).where(done)
        value = db.session.execute(_created_in(stmt, query)).scalar()
        return None if value is None else float(value)
    # SQLite: the middle one or two of the sorted durations (an index-free sort, bounded by
    # the envelopes of the period).
    took = (func.julianday(Envelope.finished_at) - func.julianday(began)) * 86400.0
    stmt = _created_in(select(took).where(done), query).order_by(took)
    middle = stmt.offset((completed - 1) // 2).limit(2 - completed % 2)
    values = [float(v) for v in db.session.execute(middle).scalars() if v is not None]
    return statistics.fmean(values) if values else None


def _event_counts(query: ReportQuery) -> list[tuple[str, int, bool]]:
    since, until = audit.iso_time(query.period.start), audit.iso_time(query.period.end)
    scoped = query.team_id is not None or query.template_id is not None
    ev = audit.AuditEvent

    def counts(names: Sequence[str], limit_to_scope: bool) -> dict[str, int]:
        if not names:
            return {}
        stmt = (
            select(ev.event, func.count())
            .where(ev.occurred_at >= since, ev.occurred_at < until, ev.event.in_(names))
            .group_by(ev.event)
        )
        if limit_to_scope:
            ids = _in_scope(select(cast(Envelope.id, String)), query)
            stmt = stmt.where(ev.subject_type == "envelope", ev.subject_id.in_(ids))
        return {str(name): int(n) for name, n in db.session.execute(stmt).all()}

    per_envelope = [name for name, _label, wide in COUNTED if not wide]
    wide = [name for name, _label, wide in COUNTED if wide]
    found = {**counts(per_envelope, scoped), **counts(wide, False)}
    return [(label, found.get(name, 0), scoped and is_wide) for name, label, is_wide in COUNTED]


def _events_in(query: ReportQuery, name: str, limit: int, *, scoped: bool) -> list[Any]:
    ev = audit.AuditEvent
    stmt = select(ev).where(
        ev.occurred_at >= audit.iso_time(query.period.start),
        ev.occurred_at < audit.iso_time(query.period.end),
        ev.event == name,
    )
    if scoped and (query.team_id is not None or query.template_id is not None):
        ids = _in_scope(select(cast(Envelope.id, String)), query)
        stmt = stmt.where(ev.subject_type == "envelope", ev.subject_id.in_(ids))
    return list(db.session.execute(stmt.order_by(ev.seq).limit(limit)).scalars())


def _declines(query: ReportQuery) -> list[Decline]:
    events = audit.reveal(_events_in(query, "recipient.declined", MAX_DECLINES, scoped=True))
    ids = {int(e.event.subject_id or 0) for e in events if (e.event.subject_id or "").isdigit()}
    envelopes = {
        str(row.id): row
        for row in db.session.execute(
            select(Envelope.id, Envelope.public_id, Envelope.title).where(Envelope.id.in_(ids))
        ).all()
    }
    out = []
    for seen in events:
        row = envelopes.get(seen.event.subject_id or "")
        reason = "(erased)" if seen.erased else str(seen.data.get("reason") or "—")
        out.append(
            Decline(
                at=seen.event.occurred,
                envelope=row.public_id if row else "—",
                title=row.title if row else "—",
                reason=reason,
            )
        )
    return out


def _exports(query: ReportQuery) -> list[tuple[str, int]]:
    events = audit.reveal(_events_in(query, EXPORTED, MAX_EXPORTS_READ, scoped=False))
    kinds = Counter(str(e.data.get("kind") or "other") for e in events)
    return [(_EXPORT_KINDS.get(kind, kind), n) for kind, n in sorted(kinds.items())]


def _grouped(query: ReportQuery, name_column: Any, join: Any) -> list[tuple[str, int, int]]:
    completed = func.sum(case((Envelope.status == "completed", 1), else_=0))
    stmt = join(select(name_column, func.count(Envelope.id), completed))
    stmt = _created_in(stmt, query).group_by(name_column).order_by(func.count(Envelope.id).desc())
    return [(str(n or "No team"), int(c), int(d or 0)) for n, c, d in db.session.execute(stmt)]


def max_envelopes() -> int:
    return int(current_app.config.get("REPORT_MAX_ENVELOPES", DEFAULT_MAX_ENVELOPES))


def gather(query: ReportQuery, user: User) -> ReportData:
    """The report's figures, read without locking (aggregates, capped lists)."""
    statuses = db.session.execute(
        _created_in(select(Envelope.status, func.count()), query).group_by(Envelope.status)
    ).all()
    by_status = {str(s): int(n) for s, n in statuses}
    total = sum(by_status.values())
    completed = by_status.get("completed", 0)
    by_template = _grouped(
        query,
        Template.name,
        lambda s: s.join(TemplateVersion, TemplateVersion.id == Envelope.template_version_id).join(
            Template, Template.id == TemplateVersion.template_id
        ),
    )
    by_team = _grouped(query, Team.name, lambda s: s.outerjoin(Team, Team.id == Envelope.team_id))
    cap = max_envelopes()
    listed = db.session.execute(
        _created_in(
            select(
                Envelope.public_id,
                Envelope.title,
                Template.name,
                Team.name,
                Envelope.status,
                Envelope.seal_status,
                Envelope.created_at,
                Envelope.finished_at,
            )
            .join(TemplateVersion, TemplateVersion.id == Envelope.template_version_id)
            .join(Template, Template.id == TemplateVersion.template_id)
            .outerjoin(Team, Team.id == Envelope.team_id),
            query,
        )
        .order_by(Envelope.created_at, Envelope.id)
        .limit(cap)
    ).all()
    declines = _declines(query)
    events = _event_counts(query)
    return ReportData(
        organisation=str(current_app.config.get("ORG_NAME") or ""),
        scope_label=_scope_label(query),
        period=query.period,
        generated_at=clock.utcnow(),
        generated_by=f"{user.name} <{user.email}>",
        total=total,
        by_status=[
            (STATUS_LABELS.get(s, s), by_status[s])
            for s in sorted(by_status, key=lambda s: -by_status[s])
        ],
        by_template=by_template,
        by_team=by_team,
        completed=completed,
        median_seconds=_median_seconds(query, completed),
        events=events,
        exports=_exports(query),
        declines=declines,
        declines_total=next(n for label, n, _ in events if label == "Declines"),
        envelopes=[
            Listed(
                public_id=r[0],
                title=r[1],
                template=r[2],
                team=r[3] or "No team",
                status=STATUS_LABELS.get(r[4], r[4]),
                seal=r[5] or "—",
                created_at=r[6],
                finished_at=r[7],
            )
            for r in listed
        ],
        cap=cap,
    )


# ---------------------------------------------------------------- the PDF

HEADING = "Compliance report"


def duration(seconds: float | None) -> str:
    """A time to complete in words: "3 h 12 min", "2 d 4 h", "45 s"."""
    if seconds is None:
        return "No envelope completed"
    span = timedelta(seconds=round(seconds))
    days, rest = span.days, span.seconds
    hours, minutes = rest // 3600, (rest % 3600) // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {rest % 60} s"
    return f"{rest} s"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], shares: Sequence[float], width: float
) -> Flowable:
    return _listing(header, [list(r) for r in rows], _split(width, shares))


def _summary(data: ReportData, width: float) -> list[Flowable]:
    look = _look()
    rows: list[tuple[str, Any]] = [
        ("Period", data.period.label),
        ("Scope", _clean(data.scope_label)),
        ("Envelopes created", f"{data.total:,}"),
        ("Completed", f"{data.completed:,}"),
        ("Median time to complete", duration(data.median_seconds)),
        ("Generated", format_utc(data.generated_at)),
        ("Generated by", _clean(data.generated_by)),
    ]
    return [
        _lines(HEADING, look.i_title, width, space_after=look.title.spaceAfter),
        _BoxedPairs(rows, width),
        Spacer(1, 4),
        _note(
            "Envelopes are counted by the day they were created; events by the day they "
            "occurred. All times are UTC. Median time to complete: from sending (or creation, "
            "for envelopes never sent) to completion, over the envelopes completed.",
            width,
        ),
    ]


def _totals(data: ReportData, width: float) -> list[Flowable]:
    out: list[Flowable] = [_heading("Envelopes by status", width)]
    if data.by_status:
        out.append(_table(["Status", "Envelopes"], [(s, f"{n:,}") for s, n in data.by_status],
                          (0.7, 0.3), width))  # fmt: skip
    else:
        out.append(_note("No envelope was created in this period.", width))
    for title, rows in (("By template", data.by_template), ("By team", data.by_team)):
        out.append(CondPageBreak(90))
        out.append(_heading(title, width))
        if rows:
            out.append(
                _table(
                    [title.removeprefix("By ").capitalize(), "Envelopes", "Completed"],
                    [(_clean(name), f"{n:,}", f"{done:,}") for name, n, done in rows],
                    (0.6, 0.2, 0.2),
                    width,
                )
            )
        else:
            out.append(_note("None.", width))
    return out


def _events(data: ReportData, width: float) -> list[Flowable]:
    rows = [(label + (" *" if wide else ""), f"{n:,}") for label, n, wide in data.events]
    out: list[Flowable] = [
        CondPageBreak(160),
        _heading("Events in the period", width),
        _table(["Event", "Count"], rows, (0.7, 0.3), width),
    ]
    if any(wide for _label, _n, wide in data.events):
        out.append(_note("* Counted for the whole portal: not about one envelope.", width))
    if data.exports:
        out += [
            _heading("Exports and reports made, by kind", width),
            _table(["Kind", "Count"], [(k, f"{n:,}") for k, n in data.exports], (0.7, 0.3), width),
        ]
    out += [CondPageBreak(90), _heading("Declines and their reasons", width)]
    if data.declines:
        rows2 = [
            (format_utc(d.at), f"{d.envelope[:12]} · {_clean(d.title)}", _clean(d.reason))
            for d in data.declines
        ]
        out.append(
            _table(["Declined (UTC)", "Envelope", "Reason"], rows2, (0.25, 0.35, 0.4), width)
        )
        if data.declines_total > len(data.declines):
            out.append(_note(f"The first {len(data.declines):,} of {data.declines_total:,} "
                             "declines are listed.", width))  # fmt: skip
    else:
        out.append(_note("No recipient declined in this period.", width))
    return out


def _short(moment: datetime | None) -> str:
    """A time in a narrow column: the day, then hours and minutes under it (UTC)."""
    return clock.as_utc(moment).strftime("%Y-%m-%d\n%H:%M") if moment else "—"


def _envelopes(data: ReportData, width: float) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(120), _heading("Envelopes", width)]
    if not data.listed_all:
        out.append(
            _note(
                f"This report lists the first {len(data.envelopes):,} of {data.total:,} envelopes "
                f"(at most {data.cap:,}); the totals above count them all. Export the envelopes "
                "as CSV for the full list.",
                width,
            )
        )
    if not data.envelopes:
        out.append(_note("No envelope was created in this period.", width))
        return out
    rows = [
        (
            e.public_id[:12],
            _clean(e.title),
            _clean(e.template),
            _clean(e.team),
            e.status,
            e.seal,
            _short(e.created_at),
            _short(e.finished_at),
        )
        for e in data.envelopes
    ]
    header = [
        "Envelope",
        "Document",
        "Template",
        "Team",
        "Status",
        "Seal",
        "Created (UTC)",
        "Finished (UTC)",
    ]
    shares = (0.13, 0.18, 0.15, 0.1, 0.12, 0.07, 0.11, 0.11)
    out.append(_listing(header, [list(r) for r in rows], _split(width, shares), small=True))
    return out


def render(data: ReportData) -> bytes:
    """The report as PDF bytes (A4, the certificate's look, page N of M on every page)."""
    fonts = _look().fonts
    buffer = io.BytesIO()
    doc, inner = a4_document(
        buffer,
        heading=HEADING,
        title=f"{HEADING} — {data.period.label}",
        subject=_clean(data.scope_label),
        organisation=data.organisation,
    )
    story: list[Flowable] = []
    story += _summary(data, inner)
    story += _totals(data, inner)
    story += _events(data, inner)
    story += _envelopes(data, inner)
    story.append(Spacer(1, 10))
    story.append(
        _note(
            f"Generated {format_utc(data.generated_at)} by the signing portal of "
            f"{_clean(data.organisation) or 'the organisation'}, and sealed with its seal: "
            "check it on the portal's verify page.",
            inner,
        )
    )
    maker = functools.partial(
        _NumberedCanvas,
        footer_label=f"{HEADING} · {data.period.label}",
        footer_font=fonts.regular,
    )
    doc.build(story, canvasmaker=maker)
    return buffer.getvalue()


# ---------------------------------------------------------------- the verb


def make(query: ReportQuery, user: User) -> tuple[bytes, str]:
    """The sealed report and its file name; recorded as ``records.exported``.

    Read and rendered without locking; sealed; then the lock only for the event.
    Raises ``ReportError`` when the query has errors or the seal cannot be made.
    """
    if query.errors:
        raise ReportError(" ".join(query.errors))
    data = gather(query, user)
    pdf = render(data)
    reason = f"Compliance report {data.period.first:%Y-%m-%d} to {data.period.last:%Y-%m-%d}"
    try:
        sealed = sealing.seal_report(pdf, reason)
    except sealing.SealingError as exc:
        raise ReportError(f"The report could not be sealed: {exc}") from exc
    digest = hashlib.sha256(sealed).hexdigest()
    write_lock()
    audit.record(
        EXPORTED,
        actor=user,
        data={
            "kind": KIND,
            "filters": query.params(),
            "rows": len(data.envelopes),
            "envelopes": data.total,
            "sha256": digest,
            "seal_level": sealing.report_level(sealed),
        },
    )
    db.session.commit()
    name = f"compliance-report-{data.period.first:%Y%m%d}-{data.period.last:%Y%m%d}.pdf"
    return sealed, name
