"""Late bounces: delivery status notifications (RFC 3464) mark mail bounced and tell the agent."""

from __future__ import annotations

import html
import os
from email import policy
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from portal import mail
from portal.audit import AuditEvent
from portal.envelopes import operations as envelopes
from portal.envelopes.bounces import Outcome, process_bounce
from portal.envelopes.models import Envelope, Recipient
from portal.envelopes.operations import RecipientInput
from portal.extensions import db
from portal.library import operations as library
from portal.mail import Message
from tests.conftest import audit_events, demo_agent, demo_template
from tests.test_envelopes import REFUND_VALUES

POSTFIX_DIAGNOSTIC = (
    "smtp; 550 5.1.1 <zoe@example.com>: Recipient address rejected: User unknown in virtual "
    "mailbox table"
)
EXCHANGE_DIAGNOSTIC = (
    "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
)


@pytest.fixture
def smtp(smtp_server):
    smtp_server.clear()
    return smtp_server


@pytest.fixture
def app(make_app, smtp):
    """Mail really goes out (to the test SMTP server), as it did before any bounce."""
    return make_app(**smtp.config())


@pytest.fixture
def sent(app, runner_for, smtp):
    """The demo refund sent to zoe@example.com; returns what a bounce test needs."""
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0

        agent = demo_agent()
        template = demo_template()
        people = [RecipientInput(role="customer", name="Zoë Łukasiewicz", email="zoe@example.com")]
        envelope, _links = envelopes.create_and_send(
            library.approved_version(template), REFUND_VALUES, people, by=agent
        )
        request = db.session.execute(
            select(Message).where(Message.kind == "signing_request")
        ).scalar_one()
        facts = {
            "envelope_id": envelope.id,
            "public_id": envelope.public_id,
            "title": envelope.title,
            "outbox_id": request.id,
            "message_id": request.smtp_message_id,
            "status": request.status,
        }
        db.session.commit()
    [received] = [m for m in smtp.messages if m.rcpt_tos == ["zoe@example.com"]]
    assert facts["status"] == "sent" and received.message["Message-ID"] == facts["message_id"]
    smtp.clear()
    return {**facts, "original": received.message}


# ---------------------------------------------------------------- DSNs as MTAs write them


def _fields(**values: str) -> EmailMessage:
    block = EmailMessage(policy=policy.SMTP)
    for name, value in values.items():
        block[name.replace("_", "-")] = value
    return block


def _report(
    outer: dict[str, str],
    human: str,
    message_fields: EmailMessage,
    recipient_fields: list[EmailMessage],
    returned: EmailMessage | None,
    *,
    headers_only: bool,
    html_too: bool = False,
) -> bytes:
    """``multipart/report; report-type=delivery-status``: words for people, the delivery
    status, then the returned message (whole, or its headers)."""
    dsn = EmailMessage(policy=policy.SMTP)
    for name, value in outer.items():
        dsn[name] = value
    dsn.set_content(human)
    if html_too:
        dsn.add_alternative(f"<p>{html.escape(human)}</p>", subtype="html")
    dsn.make_mixed()
    dsn.set_type("multipart/report")
    dsn.set_param("report-type", "delivery-status")
    status = EmailMessage(policy=policy.SMTP)
    status["Content-Type"] = "message/delivery-status"
    status.set_payload([message_fields, *recipient_fields])
    dsn.attach(status)
    if returned is not None:
        part = EmailMessage(policy=policy.SMTP)
        if headers_only:
            headers = "".join(f"{name}: {value}\r\n" for name, value in returned.items())
            part.set_content(headers, subtype="rfc822-headers")
        else:
            part.set_content(returned)
        dsn.attach(part)
    return dsn.as_bytes()


def postfix_dsn(
    original: EmailMessage | None,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = POSTFIX_DIAGNOSTIC,
    headers_only: bool = False,
    dsn_id: str = "<20260603101500.4F2A1C0042@mx.example.com>",
) -> bytes:
    delayed = action == "delayed"
    return _report(
        {
            "Date": "Wed, 3 Jun 2026 10:15:00 +0000 (UTC)",
            "From": "MAILER-DAEMON@mx.example.com (Mail Delivery System)",
            "Subject": "Delayed Mail (still being retried)"
            if delayed
            else "Undelivered Mail Returned to Sender",
            "To": "no-reply@localhost",
            "Auto-Submitted": "auto-replied",
            "Message-Id": dsn_id,
        },
        "This is the mail system at host mx.example.com.\n\n"
        + (
            "####################################################################\n"
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
            "####################################################################\n"
            if delayed
            else "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients. It's attached below.\n"
        )
        + "\n<zoe@example.com>: host mx.example.com said: 550 5.1.1 User unknown\n",
        _fields(
            Reporting_MTA="dns; mx.example.com",
            X_Postfix_Queue_ID="4F2A1C0042",
            X_Postfix_Sender="rfc822; no-reply@localhost",
            Arrival_Date="Wed,  3 Jun 2026 10:14:58 +0000 (UTC)",
        ),
        [
            _fields(
                Final_Recipient="rfc822; zoe@example.com",
                Original_Recipient="rfc822;zoe@example.com",
                Action=action,
                Status=status,
                Remote_MTA="dns; mailstore.example.com",
                Diagnostic_Code=diagnostic,
                **({"Will_Retry_Until": "Sat, 6 Jun 2026 10:14:58 +0000 (UTC)"} if delayed else {}),
            )
        ],
        original,
        headers_only=headers_only,
    )


def exchange_dsn(original: EmailMessage, *, headers_only: bool = True) -> bytes:
    """Exchange Online's non-delivery report: HTML and text for people, the status, and the
    original's headers; ``In-Reply-To`` / ``References`` name the original too."""
    return _report(
        {
            "From": "postmaster@outlook.com",
            "To": "no-reply@localhost",
            "Date": "Wed, 3 Jun 2026 10:15:02 +0000",
            "Subject": f"Undeliverable: {original['Subject']}",
            "Content-Language": "en-US",
            "Message-ID": "<7b9e5c1a-0d2f-4c3e@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>",
            "In-Reply-To": original["Message-ID"],
            "References": original["Message-ID"],
            "Thread-Topic": original["Subject"],
            "X-MS-Exchange-Message-Is-Ndr": "",
            "Auto-Submitted": "auto-replied",
        },
        "Your message to zoe@example.com couldn't be delivered.\n"
        "zoe wasn't found at example.com.\n",
        _fields(
            Reporting_MTA="dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com",
            Received_From_MTA="dns;localhost",
            Arrival_Date="Wed, 3 Jun 2026 10:15:00 +0000",
        ),
        [
            _fields(
                Original_Recipient="rfc822;zoe@example.com",
                Final_Recipient="rfc822;zoe@example.com",
                Action="failed",
                Status="5.1.10",
                Diagnostic_Code=EXCHANGE_DIAGNOSTIC,
            )
        ],
        original,
        headers_only=headers_only,
        html_too=True,
    )


def exim_bounce(original: EmailMessage) -> bytes:
    """An old-style Exim bounce: plain text, ``X-Failed-Recipients``, the original quoted."""
    bounce = EmailMessage(policy=policy.SMTP)
    bounce["From"] = "Mail Delivery System <Mailer-Daemon@mx.example.org>"
    bounce["To"] = "no-reply@localhost"
    bounce["Subject"] = "Mail delivery failed: returning message to sender"
    bounce["X-Failed-Recipients"] = "zoe@example.com"
    bounce["Auto-Submitted"] = "auto-replied"
    bounce.set_content(
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        "  zoe@example.com\n    No Such User Here\n\n"
        "------ This is a copy of the message, including all the headers. ------\n\n"
        + "".join(f"{name}: {value}\n" for name, value in original.items())
    )
    return bounce.as_bytes()


# ---------------------------------------------------------------- helpers


def _process(app, raw: bytes):
    with app.app_context():
        return process_bounce(raw)


def _message(app, outbox_id: int) -> tuple[str, str | None]:
    with app.app_context():
        message = db.session.get(Message, outbox_id)
        assert message is not None
        return message.status, message.last_error


def _state(app) -> tuple[list[tuple[int, str, str | None]], int]:
    """Every outbox row's status and error, and the length of the audit chain."""
    with app.app_context():
        rows = db.session.execute(
            select(Message.id, Message.status, Message.last_error).order_by(Message.id)
        ).all()
        events = db.session.scalar(select(func.count()).select_from(AuditEvent))
        return [tuple(row) for row in rows], events


def _notices(smtp) -> list[EmailMessage]:
    return [m.message for m in smtp.messages if m.rcpt_tos == ["agent@demo.example"]]


def _text(email: EmailMessage) -> str:
    return email.get_body(("plain",)).get_content().replace("\r\n", "\n")


# ---------------------------------------------------------------- hard bounces

VARIANTS = {
    "postfix-full": (lambda o: postfix_dsn(o), "550 5.1.1 <z***@example.com>: Recipient address"),
    "postfix-headers": (
        lambda o: postfix_dsn(o, headers_only=True),
        "550 5.1.1 <z***@example.com>: Recipient address",
    ),
    "exchange-headers": (lambda o: exchange_dsn(o), "550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
    "exchange-full": (
        lambda o: exchange_dsn(o, headers_only=False),
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound",
    ),
    "exim-plain": (exim_bounce, "permanent failure"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_hard_bounce_marks_the_request_bounced_and_tells_the_agent(app, sent, smtp, variant):
    build, diagnostic = VARIANTS[variant]
    result = _process(app, build(sent["original"]))

    assert result.outcome is Outcome.BOUNCED, str(result)
    assert result.outbox_id == sent["outbox_id"] and result.envelope_id == sent["envelope_id"]
    assert result.to == "z***@example.com" and result.sender_told
    status, error = _message(app, sent["outbox_id"])
    assert status == "bounced" and error is not None and error.startswith(diagnostic)
    assert "\n" not in error and "zoe@example.com" not in error and len(error) <= 300

    [event] = audit_events(app, "mail.bounced")
    assert (event.subject_type, event.subject_id) == ("envelope", str(sent["envelope_id"]))
    assert event.data["to"] == "z***@example.com"
    assert event.data["outbox_id"] == sent["outbox_id"]
    assert event.data["message_id"] == sent["message_id"]
    assert event.data["kind"] == "signing_request" and event.data["diagnostic"] == error
    assert "zoe@example.com" not in event.data_json

    [notice] = _notices(smtp)
    assert notice["Subject"] == f'Email to Zoë Łukasiewicz bounced: "{sent["title"]}"'
    text = _text(notice)
    assert f'The email to z***@example.com for "{sent["title"]}" bounced: {error}' in text
    link = f"http://127.0.0.1:5000/envelopes/{sent['public_id']}"
    assert f"Correct the address on the envelope page: {link}" in text
    assert link in notice.get_body(("html",)).get_content()
    assert "zoe@example.com" not in notice.as_string()
    with app.app_context():
        row = db.session.execute(select(Message).where(Message.kind == "notice")).scalar_one()
        assert row.recipient_id is None, "the recipient's latest message stays the bounced one"


def test_the_envelope_page_shows_the_bounce(app, sent, signed_in):
    assert _process(app, postfix_dsn(sent["original"])).outcome is Outcome.BOUNCED
    portal, _staff = signed_in("agent")
    page = portal.client.get(f"/envelopes/{sent['public_id']}").get_data(as_text=True)
    assert "Email bounced" in page
    assert html.escape("550 5.1.1 <z***@example.com>: Recipient address rejected") in page


def test_the_same_bounce_twice_changes_nothing_the_second_time(app, sent, smtp):
    raw = postfix_dsn(sent["original"])
    assert _process(app, raw).outcome is Outcome.BOUNCED
    before = _state(app)
    again = _process(app, raw)
    assert again.outcome is Outcome.ALREADY_RECORDED and not again.changed
    assert _state(app) == before
    # another report of the same failure (Exchange's, this time) is on record too
    assert _process(app, exchange_dsn(sent["original"])).outcome is Outcome.ALREADY_RECORDED
    assert _state(app) == before
    assert len(audit_events(app, "mail.bounced")) == 1 and len(_notices(smtp)) == 1


def test_a_bounced_completed_copy_asks_for_another_way(app, sent, smtp):
    with app.app_context():
        message = db.session.get(Message, sent["outbox_id"])
        message.kind = "completed"  # as if the sealed copy had bounced
        db.session.commit()
    assert _process(app, postfix_dsn(sent["original"])).sender_told
    [notice] = _notices(smtp)
    text = _text(notice)
    assert "did not get their copy of the signed document" in text
    assert "Correct the address" not in text


def test_no_notice_once_the_address_is_corrected_or_for_the_agents_own_mail(app, sent, smtp):
    with app.app_context():
        recipient = db.session.execute(select(Recipient)).scalar_one()
        recipient.email = "zoe.l@example.com"
        db.session.commit()
    result = _process(app, postfix_dsn(sent["original"]))
    assert result.outcome is Outcome.BOUNCED and not result.sender_told
    assert _notices(smtp) == []

    # a notice to the agent that bounces is marked, and tells nobody (no loop)
    with app.app_context():
        envelope = db.session.get(Envelope, sent["envelope_id"])
        notice = mail.queue("agent@demo.example", "Alex Agent", "Note", "Text", None,
                            kind="notice", envelope_id=envelope.id)  # fmt: skip
        db.session.commit()
        notice_id = notice.id
    [received] = _notices(smtp)
    smtp.clear()
    result = _process(app, postfix_dsn(received, dsn_id="<other@mx.example.com>"))
    assert result.outcome is Outcome.BOUNCED and result.outbox_id == notice_id
    assert not result.sender_told and smtp.messages == []


# ---------------------------------------------------------------- delays, strangers, garbage


def test_a_delay_is_recorded_and_leaves_the_message_as_it_is(app, sent, smtp):
    raw = postfix_dsn(
        sent["original"],
        action="delayed",
        status="4.4.1",
        diagnostic="X-Postfix; connect to mx2.example.com[192.0.2.7]:25: Connection timed out",
    )
    result = _process(app, raw)
    assert result.outcome is Outcome.DELAYED, str(result)
    assert _message(app, sent["outbox_id"]) == ("sent", None)
    [event] = audit_events(app, "mail.delayed")
    assert (event.subject_type, event.subject_id) == ("envelope", str(sent["envelope_id"]))
    assert event.data["to"] == "z***@example.com" and event.data["dsn_status"] == "4.4.1"
    assert "Connection timed out" in event.data["diagnostic"]
    assert _notices(smtp) == []

    before = _state(app)
    assert _process(app, raw).outcome is Outcome.ALREADY_RECORDED
    assert _state(app) == before
    # a later delay report is news
    later = postfix_dsn(sent["original"], action="delayed", status="4.4.1",
                        dsn_id="<20260604101500.77@mx.example.com>")  # fmt: skip
    assert _process(app, later).outcome is Outcome.DELAYED
    assert len(audit_events(app, "mail.delayed")) == 2


def test_a_bounce_of_someone_elses_mail_changes_nothing(app, sent):
    stranger = EmailMessage()
    stranger["Message-ID"] = "<not-ours.1234@elsewhere.example>"
    stranger["Subject"] = "Hello"
    stranger.set_content("Hi")
    before = _state(app)
    for raw in (postfix_dsn(stranger), postfix_dsn(None)):
        result = _process(app, raw)
        assert result.outcome is Outcome.NOT_OURS and not result.changed, str(result)
    assert _state(app) == before


def test_mail_that_is_not_a_bounce_changes_nothing(app, sent):
    # the customer replies to the signing request: it names our Message-ID, but is no DSN
    reply = EmailMessage()
    reply["From"] = "zoe@example.com"
    reply["To"] = "no-reply@localhost"
    reply["Subject"] = f"Re: {sent['original']['Subject']}"
    reply["In-Reply-To"] = sent["message_id"]
    reply["References"] = sent["message_id"]
    reply.set_content("Action: failed\nStatus: 5.1.1\n\nI'd rather sign on paper.")
    before = _state(app)
    result = _process(app, reply.as_bytes())
    assert result.outcome is Outcome.NOT_A_DSN and not result.changed
    assert _state(app) == before


GARBAGE = [
    b"",
    b"\x00\xff" * 500,
    os.urandom(4096),
    b"not an email at all",
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="x"\r\n\r\n--x\r\n'
    b"Content-Type: message/delivery-status\r\n\r\n\xff\xfe: \x00\r\n\r\nAction failed\r\n--x",
    b'Content-Type: multipart/report; boundary="unterminated\r\n\r\n--unterminated\r\n',
    b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!@@@",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n"
    b"In-Reply-To: <" + b"a" * 5000 + b"@x>\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n"
    b"\r\nFinal-Recipient: rfc822; =?utf-8?q?=ff=fe?=@\r\nAction: failed\r\nStatus: 9.9.9.9\r\n"
    b"\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <<<>>>\r\n--b--\r\n",
    b"Subject: =?utf-8?b?invalid?=\r\nX-Failed-Recipients: ,,,@@@\r\n\r\n" + b"x" * 100_000,
]


@pytest.mark.parametrize("raw", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_never_raises_and_changes_nothing(app, sent, raw):
    before = _state(app)
    result = _process(app, raw)
    assert not result.changed and result.outcome in (Outcome.NOT_A_DSN, Outcome.NOT_OURS)
    assert str(result)
    assert _state(app) == before


def test_a_bounce_with_our_id_only_in_reply_to(app, sent):
    """No returned headers (some servers send none): In-Reply-To still names our message."""
    raw = exchange_dsn(sent["original"], headers_only=True)
    stripped = raw.replace(f"Message-ID: {sent['message_id']}".encode(), b"X-Was: removed")
    assert sent["message_id"].encode() in stripped  # only in In-Reply-To / References now
    assert _process(app, stripped).outcome is Outcome.BOUNCED


# ---------------------------------------------------------------- the command


def test_cli_reads_a_file_or_stdin(app, sent, runner_for, tmp_path, smtp):
    path = tmp_path / "dsn.eml"
    path.write_bytes(postfix_dsn(sent["original"], headers_only=True))
    result = runner_for(app).invoke(args=["portal", "bounce", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"bounced: message {sent['outbox_id']} to z***@example.com")
    assert "the sending agent is told" in result.output
    assert _message(app, sent["outbox_id"])[0] == "bounced"

    again = runner_for(app).invoke(args=["portal", "bounce"], input=path.read_bytes())
    assert again.exit_code == 0 and again.output.startswith("already recorded:"), again.output

    stranger = runner_for(app).invoke(args=["portal", "bounce", "-"], input=b"Subject: hi\n\nhi")
    assert stranger.exit_code == 0 and stranger.output.startswith("not a DSN:"), stranger.output
    assert len(audit_events(app, "mail.bounced")) == 1 and len(_notices(smtp)) == 1


def test_cli_exits_1_when_the_input_cannot_be_read(app, runner_for, tmp_path):
    result = runner_for(app).invoke(args=["portal", "bounce", str(tmp_path / "missing.eml")])
    assert result.exit_code == 1
    assert "cannot be read" in result.output
