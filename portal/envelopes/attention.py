"""What needs an agent's attention: the console's "needs attention" view and the reasons shown
beside an envelope's status.

An envelope needs attention when it is out for signature and the latest email to one of its
recipients bounced or failed, a recipient is locked after wrong codes, or it expires within
two days; when its sealing failed; or when it was declined today (UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import ColumnElement, CompoundSelect, and_, exists, func, or_, select, union
from sqlalchemy.orm import aliased

from portal import clock, mail
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db

EXPIRING_WITHIN = timedelta(days=2)
BAD_MAIL = (mail.Status.BOUNCED.value, mail.Status.FAILED.value)


def _undelivered() -> tuple[ColumnElement[bool], ...]:
    """An email that bounced or failed and is the latest to its recipient (notices to the
    agent aside): the recipient has not got the envelope."""
    later = aliased(mail.Message)
    return (
        mail.Message.status.in_(BAD_MAIL),
        mail.Message.kind != "notice",
        ~exists().where(
            later.recipient_id == mail.Message.recipient_id,
            later.kind != "notice",
            later.id > mail.Message.id,
        ),
    )


def needs_attention(now: datetime) -> ColumnElement[bool]:
    """Bounced or failed email, a locked recipient or expiry within two days (envelopes still
    out for signature), sealing failed, or declined today (UTC).

    The candidates come from small indexed sets (the latest email of a recipient that
    bounced or failed, locked recipients, the expiry and finish times, failed seals), so the
    view costs little however many envelopes a team has.
    """
    # No email about a live envelope is older than the oldest live envelope: a short range of
    # the (status, created_at) index instead of every bounce there ever was. (Read first, so
    # that the planner sees the date and expects the few rows it finds.)
    oldest_live = db.session.execute(
        select(func.min(Envelope.created_at)).where(Envelope.status == "sent")
    ).scalar()
    if oldest_live is None:
        oldest_live = now
    bad_mail = select(mail.Message.envelope_id).where(
        mail.Message.created_at >= oldest_live,
        mail.Message.recipient_id.is_not(None),
        *_undelivered(),
    )
    today = datetime.combine(now.date(), time.min, tzinfo=UTC)
    candidates: CompoundSelect[int] = union(
        bad_mail,
        select(Recipient.envelope_id).where(Recipient.locked_at.is_not(None)),
        select(Envelope.id).where(
            Envelope.status == "sent",
            Envelope.expires_at > now,
            Envelope.expires_at <= now + EXPIRING_WITHIN,
        ),
        select(Envelope.id).where(Envelope.seal_status == "failed"),
        select(Envelope.id).where(Envelope.finished_at >= today, Envelope.status == "declined"),
    )
    return and_(
        Envelope.id.in_(candidates),
        or_(
            Envelope.status == "sent",
            Envelope.seal_status == "failed",
            and_(Envelope.status == "declined", Envelope.finished_at >= today),
        ),
    )


def bad_deliveries(recipient_ids: Sequence[int]) -> dict[int, str]:
    """Recipient id -> "bounced" or "failed", for those whose latest email did not arrive."""
    if not recipient_ids:
        return {}
    rows = db.session.execute(
        select(mail.Message.recipient_id, mail.Message.status).where(
            mail.Message.recipient_id.in_(recipient_ids), *_undelivered()
        )
    )
    return {rid: str(status) for rid, status in rows if rid is not None}


def reasons(envelopes: Sequence[Envelope], now: datetime) -> dict[int, list[str]]:
    """Envelope id -> why it needs attention (the badges beside its status), in one query."""
    live = [e for e in envelopes if e.status == "sent"]
    bad = bad_deliveries([r.id for e in live for r in e.recipients])
    why: dict[int, list[str]] = {}
    for envelope in live:
        found = [f"Email {bad[r.id]}: {r.name}" for r in envelope.recipients if r.id in bad] + [
            f"Locked: {r.name}" for r in envelope.recipients if r.locked_at is not None
        ]
        expires = envelope.expires_at and clock.as_utc(envelope.expires_at)
        if expires and now < expires <= now + EXPIRING_WITHIN:
            found.append("Expires soon")
        if found:
            why[envelope.id] = found
    return why
