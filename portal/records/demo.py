"""Ended refund envelopes for the records centre's demo (``flask portal seed-demo``).

Three demo customers get refunds that ended in the last two months: Jordan Rivera two
completed last month and one declined, Amara Okafor one completed last month, Lukas Brandt
one completed the month before. They are sent, signed (or declined) and sealed the way a
customer would, with the portal's clock (``portal.clock``) moved back to each moment for the
duration: every row and audit event carries that time and the chain is appended in order, so
``verify-audit`` passes. Seeding twice adds them once (their ticket references mark them;
a purge removes the ticket, so once all five are purged, seeding adds a fresh set).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from portal import clock
from portal.accounts.models import User
from portal.envelopes import operations as envelopes
from portal.envelopes.checks import SendOptions
from portal.envelopes.links import token_digest
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import operations as library
from portal.library.models import Template
from portal.signing import access, values
from portal.signing import operations as signing

TICKET_PREFIX = "DEMO-REFUND-"
TEMPLATE = "Refund authorization"


@dataclass(frozen=True)
class Customer:
    name: str
    email: str
    phone: str


JORDAN = Customer("Jordan Rivera", "jordan.rivera@example.com", "+44 7700 900461")
AMARA = Customer("Amara Okafor", "amara.okafor@example.com", "+44 7700 900872")
LUKAS = Customer("Lukas Brandt", "lukas.brandt@example.net", "+49 151 2345 6789")


@dataclass(frozen=True)
class Refund:
    """One demo refund: who, sent on which day (months back, day of month), how it ended."""

    customer: Customer
    months_back: int
    day: int
    order: str
    amount: str
    reason: str
    declined: str = ""  # the customer's reason, when they declined


REFUNDS = (
    Refund(JORDAN, 1, 6, "ORD-10231", "€42.00", "Damaged in transit."),
    Refund(AMARA, 1, 11, "ORD-10388", "€129.90", "Wrong size; returned unopened."),
    Refund(JORDAN, 1, 18, "ORD-10502", "€15.50", "Late delivery."),
    Refund(JORDAN, 1, 22, "ORD-10577", "€60.00", "Changed my mind.", "The amount is wrong."),
    Refund(LUKAS, 2, 14, "ORD-09812", "€249.00", "Arrived broken."),
)


def _month_day(today: date, months_back: int, day: int) -> datetime:
    """10:00 UTC on ``day`` of the month ``months_back`` before ``today``'s."""
    year, month = today.year, today.month - months_back
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, day, 10, 0, tzinfo=UTC)


def seeded() -> bool:
    """Whether demo refunds exist that still have their ticket (a purge removes it)."""
    stmt = select(Envelope.id).where(Envelope.ticket_id.like(f"{TICKET_PREFIX}%")).limit(1)
    return db.session.execute(stmt).first() is not None


def _send(refund: Refund, number: int, agent: User) -> tuple[int, int, str]:
    template = db.session.execute(
        select(Template).where(Template.name == TEMPLATE, Template.team_id == agent.team_id)
    ).scalar_one()
    version = library.approved_version(template)
    if version is None:
        raise RuntimeError(f"The demo template {TEMPLATE!r} has no approved version.")
    person = refund.customer
    merge = {
        "customer.name": person.name,
        "customer.email": person.email,
        "order.number": refund.order,
        "order.date": clock.utcnow().strftime("%-d %B %Y"),
        "refund.amount": refund.amount,
        "refund.method": "card",
        "refund.reason": refund.reason,
    }
    envelope, links = envelopes.create_and_send(
        version,
        merge,
        [envelopes.RecipientInput("customer", person.name, person.email, person.phone)],
        by=agent,
        ticket_id=f"{TICKET_PREFIX}{number}",
        options=SendOptions(message=f"Hello {person.name}, here is the refund we agreed."),
    )
    recipient_id = envelope.recipients[0].id
    return envelope.id, recipient_id, links[recipient_id].rsplit("/", 1)[-1]


def _finish(refund: Refund, envelope_id: int, recipient_id: int, token: str) -> None:
    """The customer opens the link, accepts the disclosure, sees the document, and signs
    (typed) or declines."""
    access.open_link(token)
    signing.give_consent(recipient_id)
    signing.show_document(recipient_id, token_digest(token), "page")
    if refund.declined:
        signing.decline(recipient_id, refund.declined)
        return
    recipient = signing.locked(recipient_id)
    name = refund.customer.name
    checked = values.check(recipient.envelope, recipient, {}, {}, "typed", name, "")
    if checked.problems:
        raise RuntimeError(f"The demo refund {envelope_id} cannot be signed: {checked.problems}")
    db.session.rollback()
    signing.sign(recipient_id, checked, "typed")


def seed(agent: User) -> int:
    """Send and end the demo refunds unless they exist; returns how many were added."""
    if seeded():
        return 0
    today = clock.utcnow().date()
    try:
        for number, refund in enumerate(REFUNDS, start=1):
            sent_at = _month_day(today, refund.months_back, refund.day)
            clock.travel_to(sent_at)
            envelope_id, recipient_id, token = _send(refund, number, agent)
            clock.travel_to(sent_at + timedelta(hours=3, minutes=7 * number))
            _finish(refund, envelope_id, recipient_id, token)
            db.session.expire_all()
    finally:
        clock.reset()
    return len(REFUNDS)
