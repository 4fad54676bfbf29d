"""Retention policies, the retention date each envelope keeps, and the daily sweep.

A policy has a name, a period in years (``RETENTION_YEARS_RANGE``, 2-7 unless an admin
widens it, at most 1-15), what starts its clock (``completed``: only a completed envelope;
``any_end``: completed, declined, voided or expired) and what happens when the period is over
(``purge_documents``, ``anonymise`` or ``both``, see ``portal.records.purge``). One policy is
the default (``RETENTION_DEFAULT_YEARS``, made by migration 0014 and ``seed-demo``): template
versions that name none keep their envelopes under it.

Every envelope keeps the policy it was sent with (``Envelope.retention_policy_id``, set when
the envelope is first written) and gets ``retention_until`` when its clock starts (when it
ends, if the policy's clock starts then). Both are kept by a flush hook here, so every way an
envelope is sent or ends (console, signer pages, expiry, API) is covered; bulk send writes its
rows directly and gives the version's policy itself.

The daily sweep (``sweep``, also run by ``flask portal tick``) lists envelopes whose
retention date has passed: each gets a ``RetentionReview`` with ``purge_after`` =
the day it was listed + ``RETENTION_REVIEW_DAYS``, so compliance always has the whole window
to look (and to postpone, with a reason). Once ``purge_after`` has passed the sweep purges it,
unless something protects it (a legal hold), which it says on the due page and in the
``retention.sweep_finished`` event.
"""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    and_,
    event,
    func,
    inspect,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship

from portal import audit, clock, jobs
from portal.accounts.models import User
from portal.envelopes.models import TERMINAL, Envelope
from portal.extensions import Model, db
from portal.library.models import TemplateVersion
from portal.records.holds import hold_reasons

YEARS_LIMITS = (1, 15)  # the widest range an admin may allow
SWEEP_BATCH = 500  # envelopes listed or purged per sweep run and step
MAX_REASON = 500

audit.add_labels(
    {
        "retention.policy_created": "Retention policy created",
        "retention.policy_changed": "Retention policy changed",
        "retention.version_policy_set": "Template version's retention policy chosen",
        "retention.postponed": "Purge postponed",
        "retention.sweep_finished": "Retention sweep finished",
        "envelope.purged": "Envelope purged (retention)",
    }
)


class ClockStart(enum.StrEnum):
    """What starts a policy's clock."""

    COMPLETED = "completed"
    ANY_END = "any_end"

    @property
    def label(self) -> str:
        return CLOCK_LABELS[self.value]


CLOCK_LABELS = {
    "completed": "When it is completed",
    "any_end": "When it ends (completed, declined, voided or expired)",
}


class Action(enum.StrEnum):
    """What a policy does at the end of the period."""

    PURGE_DOCUMENTS = "purge_documents"
    ANONYMISE = "anonymise"
    BOTH = "both"


ACTION_LABELS = {
    "purge_documents": "Delete the documents",
    "anonymise": "Remove personal data",
    "both": "Delete the documents and remove personal data",
}


class RetentionError(ValueError):
    """A policy or a postponement that cannot be saved as given (shown to the officer)."""


class RetentionPolicy(Model):
    """How long envelopes are kept, from when, and what happens then."""

    __tablename__ = "retention_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    years: Mapped[int] = mapped_column(Integer)
    clock_start: Mapped[str] = mapped_column(String(20), default=ClockStart.COMPLETED.value)
    action: Mapped[str] = mapped_column(String(20), default=Action.BOTH.value)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("retention_policy", str(self.id), self.name)

    @property
    def clock_label(self) -> str:
        return CLOCK_LABELS.get(self.clock_start, self.clock_start)

    @property
    def action_label(self) -> str:
        return ACTION_LABELS.get(self.action, self.action)

    @property
    def summary(self) -> str:
        return f"{self.name} ({self.years} years)"

    def starts_on(self, status: str) -> bool:
        """Whether an envelope ending in ``status`` starts this policy's clock."""
        if self.clock_start == ClockStart.COMPLETED.value:
            return status == "completed"
        return status in TERMINAL


class RetentionReview(Model):
    """An envelope listed as due for purge: when it will be purged, and why not yet."""

    __tablename__ = "retention_review"

    envelope_id: Mapped[int] = mapped_column(ForeignKey("envelope.id"), primary_key=True)
    listed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    purge_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    postponed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    postponed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    postpone_reason: Mapped[str | None] = mapped_column(Text)
    # Why the last sweep past ``purge_after`` did not purge it (a legal hold), if it did not.
    skipped: Mapped[str | None] = mapped_column(Text)

    envelope: Mapped[Envelope] = relationship()
    postponed_by: Mapped[User | None] = relationship()


# ---------------------------------------------------------------- settings and policies


def years_range() -> tuple[int, int]:
    """The periods a policy may have (``RETENTION_YEARS_RANGE``, within 1-15)."""
    raw = str(current_app.config.get("RETENTION_YEARS_RANGE") or "2-7")
    low_text, _, high_text = raw.partition("-")
    try:
        low, high = int(low_text), int(high_text or low_text)
    except ValueError:
        low, high = 2, 7
    low, high = max(low, YEARS_LIMITS[0]), min(high, YEARS_LIMITS[1])
    return (low, high) if low <= high else (2, 7)


def review_days() -> int:
    try:
        days = int(current_app.config.get("RETENTION_REVIEW_DAYS") or 14)
    except (TypeError, ValueError):
        days = 14
    return max(days, 0)


def default_years() -> int:
    low, high = years_range()
    try:
        years = int(current_app.config.get("RETENTION_DEFAULT_YEARS") or 7)
    except (TypeError, ValueError):
        years = 7
    return min(max(years, low), high)


def default_policy() -> RetentionPolicy | None:
    return db.session.execute(
        select(RetentionPolicy).where(RetentionPolicy.is_default.is_(True)).limit(1)
    ).scalar_one_or_none()


def ensure_default_policy() -> RetentionPolicy:
    """The default policy, made when missing (``seed-demo``; migration 0014 makes it too)."""
    policy = default_policy()
    if policy is None:
        policy = RetentionPolicy(
            name="Standard",
            years=default_years(),
            clock_start=ClockStart.ANY_END.value,
            action=Action.BOTH.value,
            is_default=True,
        )
        db.session.add(policy)
        db.session.flush()
    return policy


def policies() -> list[RetentionPolicy]:
    return list(
        db.session.execute(
            select(RetentionPolicy).order_by(
                RetentionPolicy.is_default.desc(), RetentionPolicy.name
            )
        ).scalars()
    )


def usage() -> dict[int, tuple[int, int]]:
    """Policy id -> (template versions naming it, envelopes kept under it)."""
    versions: dict[int, int] = {
        int(pid): int(n)
        for pid, n in db.session.execute(
            select(TemplateVersion.retention_policy_id, func.count())
            .where(TemplateVersion.retention_policy_id.is_not(None))
            .group_by(TemplateVersion.retention_policy_id)
        ).all()
        if pid is not None
    }
    envelopes: dict[int, int] = {
        int(pid): int(n)
        for pid, n in db.session.execute(
            select(Envelope.retention_policy_id, func.count())
            .where(Envelope.retention_policy_id.is_not(None))
            .group_by(Envelope.retention_policy_id)
        ).all()
        if pid is not None
    }
    return {
        pid: (versions.get(pid, 0), envelopes.get(pid, 0)) for pid in set(versions) | set(envelopes)
    }


def in_use(policy: RetentionPolicy) -> bool:
    """Whether a template version names it or an envelope keeps it (then only its name may
    change: envelopes keep the period they were sent with)."""
    if policy.id is None:
        return False
    return bool(
        db.session.execute(
            select(TemplateVersion.id)
            .where(TemplateVersion.retention_policy_id == policy.id)
            .limit(1)
        ).first()
        or db.session.execute(
            select(Envelope.id).where(Envelope.retention_policy_id == policy.id).limit(1)
        ).first()
    )


def _clean(name: str, years: object, clock_start: str, action: str) -> tuple[str, int, str, str]:
    clean_name = " ".join(str(name or "").split())
    if not clean_name:
        raise RetentionError("Give the policy a name.")
    if len(clean_name) > 120:
        raise RetentionError("Keep the name under 120 characters.")
    low, high = years_range()
    try:
        period = int(str(years).strip())
    except (TypeError, ValueError) as exc:
        raise RetentionError(f"The period is a whole number of years, {low} to {high}.") from exc
    if not low <= period <= high:
        raise RetentionError(f"The period is {low} to {high} years.")
    if clock_start not in CLOCK_LABELS:
        raise RetentionError("Choose what starts the clock.")
    if action not in ACTION_LABELS:
        raise RetentionError("Choose what happens at the end of the period.")
    return clean_name, period, clock_start, action


def _name_taken(name: str, other_than: int | None = None) -> bool:
    stmt = select(RetentionPolicy.id).where(func.lower(RetentionPolicy.name) == name.lower())
    if other_than is not None:
        stmt = stmt.where(RetentionPolicy.id != other_than)
    return db.session.execute(stmt.limit(1)).first() is not None


def create_policy(
    name: str, years: object, clock_start: str, action: str, by: User
) -> RetentionPolicy:
    """A new policy (caller commits)."""
    clean_name, period, start, act = _clean(name, years, clock_start, action)
    if _name_taken(clean_name):
        raise RetentionError(f"A policy named {clean_name!r} exists already.")
    policy = RetentionPolicy(
        name=clean_name, years=period, clock_start=start, action=act, created_by_id=by.id
    )
    db.session.add(policy)
    db.session.flush()
    audit.record(
        "retention.policy_created",
        actor=by,
        subject=policy,
        data={"name": clean_name, "years": period, "clock_start": start, "action": act},
    )
    return policy


def change_policy(
    policy: RetentionPolicy, name: str, years: object, clock_start: str, action: str, by: User
) -> dict[str, list[Any]]:
    """Change a policy (caller commits): anything while unused, only the name once in use.
    Returns the changes (empty when nothing changed)."""
    if in_use(policy):
        years, clock_start, action = policy.years, policy.clock_start, policy.action
        wanted = _clean(name, years, clock_start, action)
    else:
        wanted = _clean(name, years, clock_start, action)
    clean_name, period, start, act = wanted
    if _name_taken(clean_name, other_than=policy.id):
        raise RetentionError(f"A policy named {clean_name!r} exists already.")
    before = {
        "name": policy.name,
        "years": policy.years,
        "clock_start": policy.clock_start,
        "action": policy.action,
    }
    after = {"name": clean_name, "years": period, "clock_start": start, "action": act}
    changes = {k: [before[k], v] for k, v in after.items() if before[k] != v}
    if changes:
        policy.name, policy.years, policy.clock_start, policy.action = (
            clean_name,
            period,
            start,
            act,
        )
        policy.changed_at = clock.utcnow()
        audit.record(
            "retention.policy_changed", actor=by, subject=policy, data={"changes": changes}
        )
    return changes


def policy_for(version: TemplateVersion) -> RetentionPolicy | None:
    """The policy envelopes of this version are kept under (the default when it names none)."""
    if version.retention_policy_id is not None:
        return db.session.get(RetentionPolicy, version.retention_policy_id)
    return default_policy()


def set_version_policy(version: TemplateVersion, policy_id: object, by: User) -> RetentionPolicy:
    """Choose the policy of a draft version (caller commits)."""
    if not version.editable:
        raise RetentionError("Only a draft version's policy can be chosen.")
    try:
        policy = db.session.get(RetentionPolicy, int(str(policy_id)))
    except (TypeError, ValueError):
        policy = None
    if policy is None:
        raise RetentionError("Choose one of the retention policies.")
    if version.retention_policy_id != policy.id:
        before = version.retention_policy_id
        version.retention_policy_id = policy.id
        audit.record(
            "retention.version_policy_set",
            actor=by,
            subject=version,
            data={"policy": policy.name, "policy_id": policy.id, "before_id": before},
        )
    return policy


# ---------------------------------------------------------------- the retention date


def add_years(moment: datetime, years: int) -> datetime:
    """The same moment ``years`` later (29 February becomes 28 February)."""
    year = moment.year + years
    day = min(moment.day, calendar.monthrange(year, moment.month)[1])
    return moment.replace(year=year, day=day)


def until_for(policy: RetentionPolicy, status: str, ended_at: datetime) -> datetime | None:
    """When an envelope that ended in ``status`` at ``ended_at`` is due, under ``policy``."""
    if not policy.starts_on(status):
        return None
    return add_years(clock.as_utc(ended_at), policy.years)


def _status_changed(envelope: Envelope) -> bool:
    return inspect(envelope).attrs["status"].history.has_changes()


@event.listens_for(Session, "before_flush")
def keep_retention(session: Session, _context: object, _instances: object) -> None:
    """Give new envelopes their policy, and envelopes that just ended their retention date."""
    new = [o for o in session.new if isinstance(o, Envelope)]
    ended = [
        o
        for o in session.dirty
        if isinstance(o, Envelope)
        and o.status in TERMINAL
        and o.retention_until is None
        and o.purged_at is None
        and _status_changed(o)
    ]
    ended += [o for o in new if o.status in TERMINAL]
    if not new and not ended:
        return
    with session.no_autoflush:
        fallback: list[RetentionPolicy | None] = []

        def default() -> RetentionPolicy | None:
            if not fallback:
                fallback.append(default_policy())
            return fallback[0]

        for envelope in new:
            if envelope.retention_policy_id is None:
                version = envelope.version or (
                    session.get(TemplateVersion, envelope.template_version_id)
                    if envelope.template_version_id
                    else None
                )
                chosen = version.retention_policy_id if version is not None else None
                if chosen is None:
                    policy = default()
                    chosen = policy.id if policy is not None else None
                envelope.retention_policy_id = chosen
        for envelope in ended:
            _start_clock(session, envelope, default)


def _start_clock(session: Session, envelope: Envelope, default: Any) -> None:
    policy: RetentionPolicy | None = None
    if envelope.retention_policy_id is None:  # (written directly, e.g. by bulk send)
        version = session.get(TemplateVersion, envelope.template_version_id)
        if version is not None and version.retention_policy_id is not None:
            envelope.retention_policy_id = version.retention_policy_id
        else:
            fallback = default()
            envelope.retention_policy_id = fallback.id if fallback is not None else None
    if envelope.retention_policy_id is not None:
        policy = session.get(RetentionPolicy, envelope.retention_policy_id)
    if policy is not None:
        envelope.retention_until = until_for(
            policy, envelope.status, envelope.finished_at or clock.utcnow()
        )


# ---------------------------------------------------------------- the review window and the sweep


@dataclass
class SweepResult:
    """What one sweep did (the counts go into ``retention.sweep_finished``)."""

    listed: int = 0
    purged: int = 0
    skipped_held: int = 0
    waiting_review: int = 0
    failed: int = 0
    skipped: dict[int, str] = field(default_factory=dict)  # envelope id -> why
    changed_skips: int = 0

    def __str__(self) -> str:
        return (
            f"{self.listed} listed as due, {self.purged} purged, {self.skipped_held} kept "
            f"(held), {self.waiting_review} in review"
            + (f", {self.failed} failed" if self.failed else "")
        )


def list_due(now: datetime) -> int:
    """Give every envelope whose retention date has passed its review (caller commits)."""
    rows = db.session.execute(
        select(Envelope.id)
        .outerjoin(RetentionReview, RetentionReview.envelope_id == Envelope.id)
        .where(
            Envelope.retention_until <= now,
            Envelope.purged_at.is_(None),
            RetentionReview.envelope_id.is_(None),
        )
        .order_by(Envelope.retention_until, Envelope.id)
        .limit(SWEEP_BATCH)
    ).scalars()
    purge_after = now + timedelta(days=review_days())
    count = 0
    for envelope_id in rows:
        db.session.add(
            RetentionReview(envelope_id=envelope_id, listed_at=now, purge_after=purge_after)
        )
        count += 1
    db.session.flush()
    return count


def postpone(envelope: Envelope, until: datetime, reason: str, by: User) -> RetentionReview:
    """Move an envelope's purge to a later date, for a reason (caller commits)."""
    text = " ".join(str(reason or "").split())
    if not text:
        raise RetentionError("Say why the purge is postponed.")
    if len(text) > MAX_REASON:
        raise RetentionError(f"Keep the reason under {MAX_REASON} characters.")
    review = db.session.get(RetentionReview, envelope.id)
    if review is None or envelope.purged_at is not None:
        raise RetentionError("This envelope is not due for purge.")
    now = clock.utcnow()
    until = clock.as_utc(until)
    if until <= now:
        raise RetentionError("Choose a date in the future.")
    if until > add_years(now, YEARS_LIMITS[1]):
        raise RetentionError(f"Postpone by at most {YEARS_LIMITS[1]} years.")
    before = clock.as_utc(review.purge_after)
    review.purge_after = until
    review.postponed_at = now
    review.postponed_by_id = by.id
    review.postpone_reason = text
    audit.record(
        "retention.postponed",
        actor=by,
        subject=envelope,
        data={"from": audit.iso_time(before), "to": audit.iso_time(until), "reason": text},
    )
    return review


@dataclass(frozen=True)
class DueRow:
    """One line of the "due for purge" page."""

    envelope: Envelope
    review: RetentionReview
    policy: RetentionPolicy | None
    holds: list[str]


def _after(review: RetentionReview) -> Any:
    return or_(
        RetentionReview.purge_after > review.purge_after,
        and_(
            RetentionReview.purge_after == review.purge_after,
            RetentionReview.envelope_id > review.envelope_id,
        ),
    )


def due(after: object = None, limit: int = 200) -> tuple[list[DueRow], int, int | None]:
    """Envelopes listed as due and not purged yet, soonest first, from the one after the
    envelope id ``after`` (keyset; anything else: the first page), how many in all, and the
    id to go on after (None on the last page)."""
    # (a purge deletes the envelope's review row: every row is of an envelope not purged)
    total = db.session.execute(select(func.count()).select_from(RetentionReview)).scalar_one()
    stmt = (
        select(RetentionReview)
        .options(joinedload(RetentionReview.envelope))
        .order_by(RetentionReview.purge_after, RetentionReview.envelope_id)
        .limit(limit + 1)
    )
    given = str(after or "")
    start = None
    if given.isdigit() and len(given) < 12:
        start = db.session.get(RetentionReview, int(given))
    if start is not None:
        stmt = stmt.where(_after(start))
    reviews = list(db.session.execute(stmt).scalars())
    more = len(reviews) > limit
    reviews = reviews[:limit]
    holds = hold_reasons([r.envelope_id for r in reviews]) if reviews else {}
    found = {p.id: p for p in policies()}
    rows = [
        DueRow(
            r.envelope,
            r,
            found.get(r.envelope.retention_policy_id or 0),
            holds.get(r.envelope_id, []),
        )
        for r in reviews
    ]
    return rows, int(total), reviews[-1].envelope_id if more else None


def _purge_one(envelope_id: int, result: SweepResult) -> None:
    from portal.records import purge

    envelope = db.session.get(Envelope, envelope_id)
    if envelope is None or envelope.purged_at is not None:
        return
    review = db.session.get(RetentionReview, envelope_id)
    why = purge.protection(envelope)
    if why is not None:
        result.skipped[envelope_id] = why
        if review is not None and review.skipped != why:
            review.skipped = why
            result.changed_skips += 1
        db.session.commit()
        return
    policy = db.session.get(RetentionPolicy, envelope.retention_policy_id or 0)
    reason = f"Retention period ended ({policy.summary})" if policy else "Retention period ended"
    purge.purge_envelope(envelope, reason=reason, actor=None)
    result.purged += 1


def sweep() -> SweepResult:
    """List what is due, purge what has waited out its review, say what was kept and why."""
    now = clock.utcnow()
    result = SweepResult()
    while True:  # (in batches, each committed: a backlog of years is listed in one run)
        listed = list_due(now)
        db.session.commit()
        result.listed += listed
        if listed < SWEEP_BATCH:
            break
    after: tuple[datetime, int] | None = None
    while True:
        stmt = (
            select(RetentionReview.purge_after, RetentionReview.envelope_id)
            .join(Envelope, Envelope.id == RetentionReview.envelope_id)
            .where(RetentionReview.purge_after <= now, Envelope.purged_at.is_(None))
            .order_by(RetentionReview.purge_after, RetentionReview.envelope_id)
            .limit(SWEEP_BATCH)
        )
        if after is not None:
            stmt = stmt.where(
                or_(
                    RetentionReview.purge_after > after[0],
                    and_(
                        RetentionReview.purge_after == after[0],
                        RetentionReview.envelope_id > after[1],
                    ),
                )
            )
        ready = [(row[0], row[1]) for row in db.session.execute(stmt)]
        db.session.rollback()
        for _purge_after, envelope_id in ready:
            try:
                _purge_one(envelope_id, result)
            except Exception:
                db.session.rollback()
                result.failed += 1
                current_app.logger.exception("Purging envelope %s failed", envelope_id)
        if len(ready) < SWEEP_BATCH:
            break
        after = ready[-1]
    result.skipped_held = len(result.skipped)
    result.waiting_review = db.session.execute(
        select(func.count())
        .select_from(RetentionReview)
        .join(Envelope, Envelope.id == RetentionReview.envelope_id)
        .where(RetentionReview.purge_after > now, Envelope.purged_at.is_(None))
    ).scalar_one()
    if result.listed or result.purged or result.changed_skips or result.failed:
        audit.record(
            "retention.sweep_finished",
            data={
                "listed": result.listed,
                "purged": result.purged,
                "skipped_held": result.skipped_held,
                "waiting_review": result.waiting_review,
                "failed": result.failed,
                "skipped": [
                    {"envelope": eid, "why": why}
                    for eid, why in sorted(result.skipped.items())[:100]
                ],
            },
        )
    db.session.commit()
    return result


@jobs.periodic(every=86400)
def retention_sweep() -> str:
    """The daily retention sweep (``flask portal tick`` runs it too)."""
    return str(sweep())


def latest_sweep() -> audit.AuditEvent | None:
    return db.session.execute(
        select(audit.AuditEvent)
        .where(audit.AuditEvent.event == "retention.sweep_finished")
        .order_by(audit.AuditEvent.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
