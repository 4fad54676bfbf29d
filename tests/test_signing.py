"""The customer's side: link, consent, code, fill and sign, decline; the state machine."""

from __future__ import annotations

import re
import threading
import time

import pytest
from sqlalchemy import select

from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope, FieldValue
from portal.envelopes.operations import RecipientInput
from portal.extensions import db
from portal.library import operations as library
from portal.mail import Message
from tests.conftest import audit_events, demo_agent, demo_template
from tests.test_envelopes import REFUND_VALUES


@pytest.fixture
def sent(app, runner_for):
    """Send the demo refund; returns a function giving (app, envelope id, link)."""
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0

    def send(template: str = "Refund authorization", **recipient: str):

        with app.app_context():
            agent = demo_agent()
            tpl = demo_template(template)
            version = library.approved_version(tpl)
            if template == "Refund authorization":
                people = [
                    RecipientInput(
                        role="customer",
                        name="Zoë Łukasiewicz",
                        email="zoe@example.com",
                        **recipient,
                    )
                ]
                values = REFUND_VALUES
            else:
                values = {k.key: k.sample for k in library.merge_keys(version)}
                people = [
                    RecipientInput(
                        role="customer", name="Jordan Rivera", email="jordan@example.com"
                    ),
                    RecipientInput(
                        role="account_manager", name="Sam Manager", email="sam@example.com"
                    ),
                ]
            envelope, links = envelopes.create_and_send(version, values, people, by=agent)
            return envelope.id, envelope.public_id, next(iter(links.values()))

    return send


def _csrf(client, url: str) -> str:
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def _path(link: str) -> str:
    return link.replace("http://127.0.0.1:5000", "")


def test_customer_opens_consents_signs_and_the_envelope_completes(app, sent):
    envelope_id, public_id, link = sent()
    client = app.test_client()
    opened = client.get(_path(link))
    assert opened.status_code == 302 and opened.headers["Location"] == f"/sign/{public_id}"
    page = client.get(f"/sign/{public_id}")
    text = page.get_data(as_text=True)
    assert "Your right to paper" in text and "withdraw your consent" in text
    assert (
        page.headers["Referrer-Policy"] == "no-referrer"
        and page.headers["Cache-Control"] == "no-store"
    )
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    document = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Adopt and sign" in document and "Zoë Łukasiewicz" in document
    missing = client.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Zoë Łukasiewicz"},
    )
    assert (
        missing.status_code == 422
        and "Confirm that this is your signature." in missing.get_data(as_text=True)
    )
    done = client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "typed",
            "typed_name": "Zoë Łukasiewicz",
            "agree": "yes",
        },
    )
    assert done.status_code == 302
    assert "Thank you, you have signed" in client.get(f"/sign/{public_id}").get_data(as_text=True)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.status == "completed" and envelope.seal_status == "sealed"
        stored = {v.field_key: v.value for v in db.session.execute(select(FieldValue)).scalars()}
        assert stored["customer_signature"] == "Zoë Łukasiewicz"
        assert stored["full_name"] == "Zoë Łukasiewicz" and stored["date_signed"]
        kinds = [m.kind for m in db.session.execute(select(Message).order_by(Message.id)).scalars()]
        assert kinds == ["signing_request", "completed", "notice"], "copy, then the agent"
        to = [
            m.to_address for m in db.session.execute(select(Message).order_by(Message.id)).scalars()
        ]
        assert to[-1] == "agent@demo.example", "the sending agent is told"
    events = [e.event for e in audit_events(app)]
    for name in (
        "recipient.opened",
        "recipient.consented",
        "recipient.field_completed",
        "recipient.signed",
        "envelope.completed",
        "envelope.sealed",
    ):
        assert name in events, name
    signed = audit_events(app, "recipient.signed")[0]
    assert signed.ip == "127.0.0.1" and signed.data["adoption"] == "typed"
    # a second submit (another tab, a double tap) changes nothing
    again = client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "typed",
            "typed_name": "Someone else",
            "agree": "yes",
        },
    )
    assert again.status_code == 302
    assert len(audit_events(app, "recipient.signed")) == 1


def test_links_that_do_nothing_show_a_clear_page(app, sent):
    envelope_id, _public_id, link = sent()
    client = app.test_client()
    assert "This link does not work" in client.get("/s/not-a-real-token").get_data(as_text=True)
    with app.app_context():
        agent = demo_agent()
        recipient = db.session.get(Envelope, envelope_id).recipients[0]
        new_link = envelopes.resend(recipient, by=agent)
    replaced = client.get(_path(link))
    assert replaced.status_code == 410 and "This link has been replaced" in replaced.get_data(
        as_text=True
    )
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        envelopes.void(envelope, "Customer cancelled the order.", by=envelope.created_by)
    voided = client.get(_path(new_link)).get_data(as_text=True)
    assert "This document was cancelled" in voided and "Customer cancelled the order." in voided


def test_a_signing_session_cannot_open_another_envelope(app, sent):
    _, first_public, first_link = sent()
    _, second_public, _ = sent()
    client = app.test_client()
    client.get(_path(first_link))
    assert client.get(f"/sign/{first_public}").status_code == 200
    assert client.get(f"/sign/{second_public}").status_code == 404
    assert client.get(f"/sign/{second_public}/document.pdf").status_code == 404
    assert client.get(f"/sign/{second_public}/pages/1.png").status_code == 404


def test_email_code_expires_is_single_use_and_locks_after_five_tries(app, sent, monkeypatch):
    _envelope_id, public_id, link = sent(auth_method="email_otp")
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    assert "Email me a code" in client.get(f"/sign/{public_id}").get_data(as_text=True)
    client.post(f"/sign/{public_id}/code/send", data={"csrf_token": token})
    with app.app_context():
        message = db.session.execute(select(Message).where(Message.kind == "otp")).scalar_one()
        code = re.search(r"\b(\d{6})\b", message.text_body).group(1)
    for attempt in range(4):
        wrong = client.post(
            f"/sign/{public_id}/code",
            data={"csrf_token": token, "code": "000000" if code != "000000" else "111111"},
        )
        assert wrong.status_code == 422 and f"{4 - attempt} tries left" in wrong.get_data(
            as_text=True
        )
    locked = client.post(
        f"/sign/{public_id}/code",
        data={"csrf_token": token, "code": "999999" if code != "999999" else "888888"},
    )
    assert "This document is locked" in locked.get_data(as_text=True)
    # even the right code does nothing now, and the agent was told
    assert "locked" in client.post(
        f"/sign/{public_id}/code", data={"csrf_token": token, "code": code}
    ).get_data(as_text=True)
    assert audit_events(app, "recipient.locked")
    with app.app_context():
        notice = db.session.execute(select(Message).where(Message.kind == "notice")).scalar_one()
        assert notice.to_address == "agent@demo.example"


def test_right_email_code_opens_the_document_once(app, sent):
    _, public_id, link = sent(auth_method="email_otp")
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    client.post(f"/sign/{public_id}/code/send", data={"csrf_token": token})
    with app.app_context():
        code = re.search(
            r"\b(\d{6})\b",
            db.session.execute(select(Message).where(Message.kind == "otp")).scalar_one().text_body,
        ).group(1)
    assert (
        client.post(f"/sign/{public_id}/code", data={"csrf_token": token, "code": code}).status_code
        == 302
    )
    assert "Adopt and sign" in client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert audit_events(app, "recipient.authenticated")[0].data == {"method": "email_otp"}
    assert code not in str([e.data for e in audit_events(app)])


def test_sequential_signer_then_approver(app, sent):
    envelope_id, public_id, link = sent("Service-change addendum")
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    client.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "typed",
            "typed_name": "Jordan Rivera",
            "agree": "yes",
        },
    )
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        customer, manager = envelope.recipients
        assert (
            customer.status == "signed" and manager.status == "sent" and envelope.status == "sent"
        )
        message = db.session.execute(
            select(Message).where(Message.to_address == "sam@example.com")
        ).scalar_one()
        manager_link = re.search(r"http://127.0.0.1:5000(/s/\S+)", message.text_body).group(1)
    approver = app.test_client()
    approver.get(manager_link)
    token = _csrf(approver, f"/sign/{public_id}")
    approver.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    assert "Your decision" in approver.get(f"/sign/{public_id}").get_data(as_text=True)
    silent = approver.post(
        f"/sign/{public_id}/review", data={"csrf_token": token, "decision": "reject"}
    )
    assert silent.status_code == 422 and "Say why you reject it" in silent.get_data(as_text=True)
    approver.post(
        f"/sign/{public_id}/review",
        data={"csrf_token": token, "decision": "approve", "comment": "Plan change OK"},
    )
    with app.app_context():
        assert db.session.get(Envelope, envelope_id).status == "completed"
    assert audit_events(app, "recipient.approved")[0].data == {"comment": "Plan change OK"}


def test_declining_ends_the_envelope_and_tells_the_agent(app, sent):
    envelope_id, public_id, link = sent()
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    client.post(f"/sign/{public_id}/decline", data={"csrf_token": token, "reason": "Wrong amount"})
    assert "You declined this document" in client.get(f"/sign/{public_id}").get_data(as_text=True)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert (
            envelope.status == "declined"
            and envelope.recipients[0].decline_reason == "Wrong amount"
        )
    assert audit_events(app, "recipient.declined")[0].data == {"reason": "Wrong amount"}


def test_declining_the_disclosure_declines_the_envelope(app, sent):
    envelope_id, public_id, link = sent()
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "decline"})
    with app.app_context():
        assert db.session.get(Envelope, envelope_id).status == "declined"


def test_concurrent_double_submit_signs_once(app, sent):
    _envelope_id, public_id, link = sent()
    first, second = app.test_client(), app.test_client()
    first.get(_path(link))
    with first.session_transaction() as state:
        signer = dict(state["signer"])
    token = _csrf(first, f"/sign/{public_id}")
    first.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    with second.session_transaction() as state:
        state["signer"] = signer
    token2 = _csrf(second, f"/sign/{public_id}")
    barrier = threading.Barrier(2)
    results = []

    def submit(client, csrf):
        barrier.wait()
        response = client.post(
            f"/sign/{public_id}/sign",
            data={"csrf_token": csrf, "adoption": "typed", "typed_name": "Zoë", "agree": "yes"},
        )
        results.append(response.status_code)

    threads = [
        threading.Thread(target=submit, args=pair) for pair in ((first, token), (second, token2))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [302, 302]
    assert len(audit_events(app, "recipient.signed")) == 1
    with app.app_context():
        assert (
            db.session.execute(
                select(FieldValue).where(FieldValue.field_key == "customer_signature")
            )
            .scalars()
            .all()
            .__len__()
            == 1
        )


def test_names_and_values_with_markup_are_harmless(app, runner_for):

    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        agent = demo_agent()
        version = library.approved_version(demo_template())
        evil = "<img src=x onerror=alert(1)>"
        values = {
            **REFUND_VALUES,
            "customer.name": evil,
            "refund.reason": "{{ 7*7 }} **bold** <b>x</b>",
        }
        envelope, links = envelopes.create_and_send(
            version,
            values,
            [RecipientInput(role="customer", name=evil, email="x@example.com")],
            by=agent,
        )
        public_id, link = envelope.public_id, next(iter(links.values()))
        message = db.session.execute(select(Message)).scalar_one()
        assert evil not in message.html_body and "&lt;img" in message.html_body
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_delivered_signing_emails_keep_no_link_in_the_outbox(make_app, smtp_server, runner_for):
    from portal import mail

    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, MAIL_USE_TLS=False)
    smtp_server.clear()
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0

        agent = demo_agent()
        tpl = demo_template()
        _, links = envelopes.create_and_send(
            library.approved_version(tpl),
            REFUND_VALUES,
            [RecipientInput(role="customer", name="Zoë", email="zoe@example.com")],
            by=agent,
        )
        link = next(iter(links.values()))
        message = db.session.execute(select(Message)).scalar_one()
        assert message.status == "sent"
        assert link not in message.text_body and link not in message.html_body
        assert "[removed after delivery]" in message.text_body
    (received,) = smtp_server.messages
    assert link in received.message.get_body(("plain",)).get_content()
    assert (
        mail.redact("code 123456 and http://x/s/abcDEF_-1")
        == "code [removed after delivery] and [removed after delivery]"
    )


def test_expired_links_stop_working_and_the_sweeper_expires_the_rest(
    app, sent, runner_for, monkeypatch
):
    from datetime import timedelta

    from portal import clock

    first_id, _, first_link = sent()
    second_id, _, _ = sent()
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(days=31))
    page = app.test_client().get(_path(first_link))
    assert page.status_code == 410 and "This link has expired" in page.get_data(as_text=True)
    result = runner_for(app).invoke(args=["portal", "tick"])
    assert "1 envelopes expired" in result.output
    with app.app_context():
        assert {db.session.get(Envelope, i).status for i in (first_id, second_id)} == {"expired"}
    assert len(audit_events(app, "envelope.expired")) == 2


def test_agent_previews_the_merged_document_before_sending(app, runner_for):
    from tests.test_console import _demo_agent, _form

    portal, version_id = _demo_agent(app, runner_for)
    preview = portal.post(f"/envelopes/preview/{version_id}", _form())
    assert preview.status_code == 200 and preview.mimetype == "application/pdf"
    from io import BytesIO

    from pypdf import PdfReader

    assert "ORD-77" in PdfReader(BytesIO(preview.data)).pages[0].extract_text()
    with app.app_context():
        assert db.session.execute(select(Envelope)).first() is None
    bad = portal.post(f"/envelopes/preview/{version_id}", _form(**{"m-order.number": ""}))
    assert bad.status_code == 422 and "Fill in Order number" in bad.get_data(as_text=True)


def test_reassigned_completed_and_declined_links_explain_themselves(app, sent):

    # reassigned: the agent corrected the email, so the old link names that
    envelope_id, public_id, link = sent()
    with app.app_context():
        agent = demo_agent()
        recipient = db.session.get(Envelope, envelope_id).recipients[0]
        new_link = envelopes.correct_email(recipient, "zoe.new@example.com", by=agent)
    page = app.test_client().get(_path(link))
    assert page.status_code == 410
    assert "sent to a corrected email address" in page.get_data(as_text=True)

    # completed: once signed, the live link shows that the document is complete
    client = app.test_client()
    client.get(_path(new_link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    client.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Zoë", "agree": "yes"},
    )
    later = app.test_client()
    opened = later.get(_path(new_link))  # for SIGNER_COPY_DAYS it leads to the signed copy
    assert opened.status_code == 302
    assert "Download your signed copy" in later.get(opened.headers["Location"]).get_data(
        as_text=True
    )
    app.config["SIGNER_COPY_DAYS"] = 0
    gone = app.test_client().get(_path(new_link))
    assert gone.status_code == 410 and "This document is complete" in gone.get_data(as_text=True)

    # declined: another envelope, declined by its customer
    _, other_id, other_link = sent()
    declining = app.test_client()
    declining.get(_path(other_link))
    token = _csrf(declining, f"/sign/{other_id}")
    declining.post(f"/sign/{other_id}/consent", data={"csrf_token": token, "decision": "decline"})
    again = app.test_client().get(_path(other_link))
    assert again.status_code == 410 and "This document was declined" in again.get_data(as_text=True)


def _void_while_signing(app, sent, delay: float) -> None:
    """One race: the agent voids ``delay`` seconds after the only signer submits."""

    envelope_id, public_id, link = sent()
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    barrier = threading.Barrier(2)
    voided: list[str] = []

    def sign():
        barrier.wait()
        client.post(
            f"/sign/{public_id}/sign",
            data={"csrf_token": token, "adoption": "typed", "typed_name": "Zoë", "agree": "yes"},
        )

    def void():
        with app.app_context():
            agent = demo_agent()
            envelope = db.session.get(Envelope, envelope_id)
            barrier.wait()
            time.sleep(delay)
            try:
                envelopes.void(envelope, "Customer asked to stop", by=agent)
                voided.append("voided")
            except envelopes.EnvelopeError as exc:
                voided.append(str(exc))

    threads = [threading.Thread(target=sign), threading.Thread(target=void)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with app.app_context():
        status = db.session.get(Envelope, envelope_id).status
    mine = [
        e.event
        for e in audit_events(app)
        if e.subject_type == "envelope" and e.subject_id == str(envelope_id)
    ]
    if status == "voided":
        assert voided == ["voided"]
        assert "recipient.signed" not in mine and "envelope.completed" not in mine
    else:
        assert status == "completed"
        assert voided == ["This envelope is completed and can no longer change."]
        assert "envelope.voided" not in mine and mine.count("recipient.signed") == 1


def test_voiding_while_the_customer_signs_leaves_one_outcome(app, sent):
    """Either the envelope is voided and the signature refused, or it completes and the void
    is refused; never both (terminal states never change), under real concurrency too."""
    for delay in (0.0, 0.005, 0.01, 0.02, 0.03, 0.05):  # into the signature's transaction
        _void_while_signing(app, sent, delay)
