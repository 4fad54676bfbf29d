"""The development mailbox is scoped like the console: agents read the mail about their team's
envelopes and the mail addressed to them; compliance and admins read it all."""

from __future__ import annotations

import html

import pytest

from tests.conftest import demo_agent
from tests.test_input_hygiene import send_refund


@pytest.fixture
def mail(app, runner_for, make_staff):
    """Four messages: about a Customer Care envelope, about a Billing envelope, to an agent
    of Customer Care, to nobody on the staff. Returns their ids and that agent."""
    from portal import mail as outbox
    from portal.accounts.models import User
    from portal.extensions import db
    from portal.mail import Message

    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    care = make_staff("agent", team="Customer Care")
    billing = make_staff("agent", team="Billing")
    ids: dict[str, int] = {}
    with app.app_context():
        for name, sender in (("care", demo_agent()), ("billing", db.session.get(User, billing.id))):
            envelope, _link = send_refund(name, f"{name}@example.com", by=sender)
            ids[name] = db.session.query(Message.id).filter_by(envelope_id=envelope.id).scalar()
        for name, address in (("to agent", care.email.upper()), ("to others", "ops@example.com")):
            subject, text, body = outbox.render("test", address=address, server="", at="now")
            ids[name] = outbox.queue(address, None, subject, text, body, kind="test").id
        db.session.commit()
    return ids, care


def _visible(portal, ids: dict[str, int]) -> set[str]:
    listing = portal.client.get("/dev/mailbox").get_data(as_text=True)
    seen = {name for name, message_id in ids.items() if f'/dev/mailbox/{message_id}"' in listing}
    for name, message_id in ids.items():
        for url in (f"/dev/mailbox/{message_id}", f"/dev/mailbox/{message_id}/html"):
            status = portal.client.get(url).status_code
            assert status == (200 if name in seen else 404), (name, url, status)
    return seen


def test_an_agent_reads_mail_about_their_teams_envelopes_and_mail_to_them(portal, mail):
    ids, care = mail
    assert portal.sign_in(care).status_code == 302
    assert _visible(portal, ids) == {"care", "to agent"}
    page = html.unescape(portal.client.get("/dev/mailbox").get_data(as_text=True))
    assert "The emails about your team's envelopes and the emails to you" in page


@pytest.mark.parametrize("role", ["admin", "compliance"])
def test_admins_and_compliance_read_every_message(signed_in, mail, role):
    ids, _care = mail
    portal, _staff = signed_in(role)
    assert _visible(portal, ids) == set(ids)
    assert "Every email the portal has queued" in portal.client.get("/dev/mailbox").get_data(
        as_text=True
    )


def test_an_agent_without_a_team_reads_only_mail_to_them(signed_in, mail):
    ids, _care = mail
    portal, _staff = signed_in("agent", team=None)
    assert _visible(portal, ids) == set()
