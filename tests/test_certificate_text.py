"""The certificate's text: email addresses wrap at sensible points (never letter by letter),
and what the portal does on its own is attributed to the portal, with no one's IP address."""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader

from portal.documents.certificate import PartyEvidence, render_certificate
from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.conftest import audit_events
from tests.test_certificate import _data, _recipients, _signature_png
from tests.test_sealing import _sealed_bytes, _sign
from tests.test_signing import _csrf, _path, sent  # noqa: F401  (fixture)

LONG_EMAIL = "maria.fernanda.gonzalez-rodriguez@customer-services.example.com"
SENDER_EMAIL = "customer.care.refunds-team@payments.example.co.uk"
SIGNER_IP = "127.0.0.1"  # the test client's address


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)


def _breaks(text: str, email: str) -> list[list[int]]:
    """For each place ``email`` is printed (possibly over several lines), the positions in
    it where a line break fell."""
    pattern = r"\s*".join(re.escape(char) for char in email)
    found = []
    for match in re.finditer(pattern, text):
        spread = match.group(0)
        breaks, position = [], 0
        for char in spread:
            if char.isspace():
                if not breaks or breaks[-1] != position:
                    breaks.append(position)
            else:
                position += 1
        found.append(breaks)
    return found


def _sensible(email: str, position: int) -> bool:
    """A break before "@" or after ".", "-", "_", "+" (between the parts of an address)."""
    return email[position] == "@" or email[position - 1] in ".-_+"


def assert_wrapped_sensibly(text: str, email: str) -> None:
    spreads = _breaks(text, email)
    assert spreads, f"{email} is not in the certificate"
    for breaks in spreads:
        bad = [f"{email[:p]}|{email[p:]}" for p in breaks if not _sensible(email, p)]
        assert not bad, f"{email} is split mid-word: {bad}"


def test_a_long_email_in_narrow_columns_breaks_between_its_parts_only():
    people = _recipients(_signature_png())
    people[0] = people[0].__class__(**{**people[0].__dict__, "email": LONG_EMAIL})
    data = _data(
        recipients=people,
        sender=PartyEvidence("Maria Agent", SENDER_EMAIL, "192.0.2.10"),
        cc_deliveries=[("Eve", LONG_EMAIL, None)],
    )
    text = _text(render_certificate(data))
    assert_wrapped_sensibly(text, LONG_EMAIL)
    assert_wrapped_sensibly(text, SENDER_EMAIL)
    # the consent table's and the cc table's email columns are narrow: the address did wrap
    assert any(_breaks(text, LONG_EMAIL)), "the test needs an address that has to wrap"


def test_a_word_with_no_break_point_is_still_kept_inside_its_column():
    endless = "x" * 120 + "@example.com"
    data = _data(cc_deliveries=[("Eve", endless, None)])
    text = _text(render_certificate(data))
    assert re.sub(r"\s+", "", text).count(endless) >= 1


@pytest.fixture
def completed(app, sent):  # noqa: F811
    """The demo refund sent to a long address, signed and sealed: (envelope id, sealed PDF)."""
    envelope_id, public_id, link = sent()
    with app.app_context():  # (the demo's sending fixture names its own customer)
        (customer,) = db.session.get(Envelope, envelope_id).recipients
        customer.email = LONG_EMAIL
        db.session.commit()
    _sign(app, link, public_id)
    return envelope_id, _sealed_bytes(app, envelope_id)


def test_the_sealed_certificate_wraps_the_signers_email_sensibly(completed):
    _, data = completed
    assert_wrapped_sensibly(_text(data), LONG_EMAIL)


def test_envelope_completed_is_the_portals_act_with_no_ip_address(app, completed):
    _, data = completed
    (event,) = audit_events(app, "envelope.completed")
    assert event.actor_type == "system" and event.ip is None and event.user_agent is None
    # what the signer did in the same request keeps the signer and the signer's address
    (signed,) = audit_events(app, "recipient.signed")
    assert signed.actor_type == "recipient" and signed.ip == SIGNER_IP

    rows = _timeline_rows(_text(data), "Envelope completed")
    assert rows, "the timeline lists the completion"
    for row in rows:
        assert row.startswith("Envelope completed The portal")
        assert SIGNER_IP not in row and "system" not in row.lower()


def _timeline_rows(text: str, event: str) -> list[str]:
    """The timeline's rows for ``event`` (whitespace collapsed), from the time stamp on."""
    timeline = text[text.index("Event timeline") :]
    chunks = re.split(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", timeline)
    rows = [" ".join(chunk.split()) for chunk in chunks]
    return [row for row in rows if row.startswith(event)]


def test_no_event_by_the_portal_carries_an_ip_address(app, completed):
    by_portal = [e for e in audit_events(app) if e.actor_type == "system"]
    assert {e.event for e in by_portal} >= {"envelope.completed"}
    assert [(e.event, e.ip) for e in by_portal if e.ip is not None] == []
