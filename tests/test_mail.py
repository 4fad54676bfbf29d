"""Outgoing mail: the outbox row, delivery by jobs to a real SMTP server, retries, the mailbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select, update

from portal import clock, jobs, mail
from portal.extensions import db, write_lock
from portal.mail import Message
from portal.mailbox import HTML_CSP, links
from tests.conftest import ARTIFACTS, Portal, audit_events
from tests.services import free_port

SIGNING_LINK = "https://sign.example.test/s/4bV9xQ2pLm7Rt8Kw"
TEXT = f"Hello Jane,\n\nPlease sign your refund authorization:\n{SIGNING_LINK}.\n"
HTML = f'<p>Hello Jane,</p><p><a href="{SIGNING_LINK}">Review and sign</a></p>'


def _part(email, subtype: str) -> str:
    """A body part's text with the wire's CRLF line ends made plain."""
    return email.get_body((subtype,)).get_content().replace("\r\n", "\n")


def _queue(**overrides: object) -> Message:
    values: dict[str, object] = {
        "to_address": "jane@example.com",
        "to_name": "Jane Doe",
        "subject": "Please sign: Refund authorization",
        "text_body": TEXT,
        "html_body": HTML,
        "kind": "signing_request",
    }
    values.update(overrides)
    return mail.queue(**values)  # type: ignore[arg-type]


def _queue_committed(app, **overrides: object) -> int:
    with app.app_context():
        message_id = _queue(**overrides).id
        db.session.commit()
    return message_id


def _row(app, message_id: int) -> Message:
    with app.app_context():
        message = db.session.get(Message, message_id)
        assert message is not None
        db.session.expunge(message)
        return message


def _age(app, message_id: int, minutes: int) -> None:
    """Pretend the message was queued and last tried ``minutes`` ago."""
    with app.app_context():
        past = clock.utcnow() - timedelta(minutes=minutes)
        db.session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(created_at=past, last_attempt_at=past)
        )
        db.session.commit()


def _tick(app, runner_for) -> str:
    result = runner_for(app).invoke(args=["portal", "tick"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def smtp(smtp_server):
    smtp_server.clear()
    return smtp_server


@pytest.fixture
def mail_app(make_app, smtp):
    return make_app(**smtp.config())


@pytest.fixture
def down_app(make_app):
    """Mail goes to a loopback port where nothing listens."""
    return make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), MAIL_USE_TLS=False)


# ---------------------------------------------------------------- delivery


def test_queued_message_is_delivered_after_the_commit(mail_app, smtp):
    with mail_app.app_context():
        message = _queue()
        message_id, stored_id = message.id, message.smtp_message_id
        assert smtp.messages == [], "nothing is sent before the commit"
        db.session.commit()

    [received] = smtp.messages
    email = received.message
    assert received.rcpt_tos == ["jane@example.com"]
    assert email["Subject"] == "Please sign: Refund authorization"
    assert email["To"] == "Jane Doe <jane@example.com>"
    assert email["From"] == "Signing Portal <no-reply@localhost>"
    assert email["Auto-Submitted"] == "auto-generated"
    assert email["Date"]
    assert email["Message-ID"] == stored_id and stored_id.endswith("@localhost>")
    assert _part(email, "plain") == TEXT
    assert _part(email, "html").strip() == HTML

    row = _row(mail_app, message_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None
    [event] = audit_events(mail_app, "mail.sent")
    assert event.subject_type == "message" and event.subject_id == str(message_id)
    assert event.data == {
        "kind": "signing_request",
        "to": "j***@example.com",
        "message_id": stored_id,
        "outbox_id": message_id,
        "attempt": 1,
    }
    assert "jane@example.com" not in event.data_json


def test_mail_about_an_envelope_is_in_the_envelope_trail(mail_app, smtp):
    message_id = _queue_committed(
        mail_app,
        envelope_id=41,
        recipient_id=7,
        kind="reminder",
        to_name="Zoë Łukasiewicz",
        subject="Recordatorio: firme su autorización",
    )
    email = smtp.messages[0].message
    assert email["To"] == "Zoë Łukasiewicz <jane@example.com>"
    assert email["Subject"] == "Recordatorio: firme su autorización"
    [event] = audit_events(mail_app, "mail.sent")
    assert (event.subject_type, event.subject_id) == ("envelope", "41")
    assert event.data["recipient_id"] == 7 and event.data["outbox_id"] == message_id


def test_rolled_back_transaction_sends_nothing(mail_app, smtp):
    with mail_app.app_context():
        _queue()
        db.session.rollback()
        db.session.commit()
        assert smtp.messages == []
        assert db.session.scalar(select(func.count()).select_from(Message)) == 0


def test_delivering_twice_sends_once(mail_app, smtp):
    message_id = _queue_committed(mail_app)
    with mail_app.app_context():
        assert mail.deliver(message_id) == "nothing to do"
        assert jobs.execute("portal.mail:deliver", message_id) == "nothing to do"
    assert len(smtp.messages) == 1
    assert _row(mail_app, message_id).attempts == 1
    assert len(audit_events(mail_app, "mail.sent")) == 1


def test_a_permanently_refused_recipient_fails_at_once(mail_app, smtp):
    message_id = _queue_committed(mail_app, to_address="nobody@refused.example")
    row = _row(mail_app, message_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "550" in (row.last_error or "")
    [event] = audit_events(mail_app, "mail.failed")
    assert event.data["final"] is True and event.data["response_code"] == 550
    assert event.data["to"] == "n***@refused.example"
    assert smtp.messages == []


# ---------------------------------------------------------------- RQ


@pytest.fixture
def rq_conn(redis_server):
    conn = Redis.from_url(redis_server.url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


def _work(app, conn) -> None:
    with app.app_context():
        SimpleWorker([Queue("mail", connection=conn)], connection=conn).work(burst=True)


def test_with_redis_the_mail_queue_delivers(make_app, smtp, redis_server, rq_conn):
    app = make_app(REDIS_URL=redis_server.url, JOBS_INLINE=False, **smtp.config())
    message_id = _queue_committed(app)
    assert Queue("mail", connection=rq_conn).count == 1
    assert smtp.messages == [] and _row(app, message_id).status == "queued"
    _work(app, rq_conn)
    assert [r.message["Subject"] for r in smtp.messages] == ["Please sign: Refund authorization"]
    assert _row(app, message_id).status == "sent"


def test_with_redis_a_failed_try_is_counted_and_retried_by_rq(make_app, redis_server, rq_conn):
    app = make_app(
        REDIS_URL=redis_server.url,
        JOBS_INLINE=False,
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=free_port(),
        MAIL_USE_TLS=False,
    )
    message_id = _queue_committed(app)
    _work(app, rq_conn)
    row = _row(app, message_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert ScheduledJobRegistry("mail", connection=rq_conn).count == 1, "RQ retries it later"


# ---------------------------------------------------------------- SMTP down, sweeper


def test_smtp_down_keeps_the_message_and_the_sweeper_sends_it_once(
    down_app, smtp, runner_for, caplog
):
    @down_app.get("/_test/queue-mail")
    def queue_mail() -> dict[str, int]:
        write_lock()  # a GET that writes
        message_id = _queue().id
        db.session.commit()
        return {"id": message_id}

    response = down_app.test_client().get("/_test/queue-mail")
    assert response.status_code == 200, "the caller never sees the SMTP failure"
    message_id = response.get_json()["id"]
    assert "Inline job portal.mail:deliver failed" in caplog.text

    row = _row(down_app, message_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "ConnectionRefusedError" in (row.last_error or "")
    [failed] = audit_events(down_app, "mail.failed")
    assert failed.data["attempt"] == 1 and failed.data["final"] is False

    assert "0 messages retried" in _tick(down_app, runner_for), "too soon to try again"
    down_app.config.update(MAIL_PORT=smtp.port)  # SMTP is back
    _age(down_app, message_id, minutes=10)
    assert "portal.mail:retry_stuck_mail: 1 messages retried, 0 given up" in _tick(
        down_app, runner_for
    )
    _age(down_app, message_id, minutes=600)
    assert "0 messages retried" in _tick(down_app, runner_for)

    assert len(smtp.messages) == 1
    assert smtp.messages[0].message["Message-ID"] == row.smtp_message_id, "same id on every try"
    row = _row(down_app, message_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert len(audit_events(down_app, "mail.sent")) == 1


def test_sweeper_gives_up_after_eight_tries(mail_app, smtp, runner_for):
    with mail_app.app_context():
        message = Message(  # as the failed tries of an earlier SMTP outage left it
            to_address="jane@example.com",
            subject="Stuck",
            text_body="x",
            kind="reminder",
            attempts=mail.MAX_ATTEMPTS,
            last_error="ConnectionRefusedError: [Errno 111] Connection refused",
            smtp_message_id="<stuck@localhost>",
        )
        db.session.add(message)
        db.session.commit()
        message_id = message.id
    _age(mail_app, message_id, minutes=24 * 60)
    assert "0 messages retried, 1 given up" in _tick(mail_app, runner_for)
    row = _row(mail_app, message_id)
    assert (row.status, row.attempts) == ("failed", mail.MAX_ATTEMPTS)
    [event] = audit_events(mail_app, "mail.abandoned")
    assert event.data["attempts"] == mail.MAX_ATTEMPTS
    assert smtp.messages == []
    assert "0 messages retried, 0 given up" in _tick(mail_app, runner_for)


def test_sweeper_nudges_a_message_whose_job_was_lost(mail_app, smtp, runner_for):
    with mail_app.app_context():
        message = Message(
            to_address="jane@example.com", subject="Lost nudge", text_body="x", kind="otp"
        )
        db.session.add(message)  # as if Redis had been down at the commit
        db.session.commit()
        message_id = message.id
    assert "0 messages retried" in _tick(mail_app, runner_for)
    _age(mail_app, message_id, minutes=3)
    assert "1 messages retried" in _tick(mail_app, runner_for)
    assert [r.message["Subject"] for r in smtp.messages] == ["Lost nudge"]


def test_without_mail_server_messages_wait_in_the_outbox(app, runner_for):
    message_id = _queue_committed(app)
    row = _row(app, message_id)
    assert (row.status, row.attempts, row.last_error) == ("queued", 0, mail.NO_SERVER)
    assert audit_events(app, "mail.failed") == []
    assert "no MAIL_SERVER: 1 messages held" in _tick(app, runner_for)


# ---------------------------------------------------------------- queue and render


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to_address", "not an address"),
        ("to_address", "a@b.example\r\nBcc: x@evil.example"),
        ("kind", "newsletter"),
    ],
)
def test_queue_refuses_what_could_never_be_sent(ctx, field, value):
    with pytest.raises(ValueError):
        _queue(**{field: value})


def test_headers_cannot_be_injected(ctx):
    message = _queue(subject="Hi\r\nBcc: x@evil.example", to_name="Jane\nBcc: y@evil.example")
    assert message.subject == "Hi Bcc: x@evil.example"
    assert "\n" not in message.to_name


def test_render_escapes_html_and_keeps_text_plain(ctx):
    subject, text, html = mail.render(
        "test", "en", address="<b>x</b>@example.com", server="", at="2026-01-01 10:00"
    )
    assert subject == "Test message from Signing Portal"
    assert "<b>x</b>@example.com" in text
    assert "&lt;b&gt;x&lt;/b&gt;@example.com" in html and "<b>x</b>" not in html
    assert 'href="http://127.0.0.1:5000/"' in html
    assert mail.render("test", "xx-nope", address="a@b", server="", at="")[0] == subject


def test_addresses_are_masked_and_links_found():
    assert mail.mask_address("jane@example.com") == "j***@example.com"
    assert mail.mask_address("broken") == "***"

    found = links(TEXT + f"again: {SIGNING_LINK} and (https://x.example/a?b=1).")
    assert found == [SIGNING_LINK, "https://x.example/a?b=1"]


# ---------------------------------------------------------------- CLI


def test_send_test_mail_without_a_server_points_to_the_mailbox(ctx, runner_for):
    result = runner_for(ctx).invoke(args=["portal", "send-test-mail", "ops@example.com"])
    assert result.exit_code == 0, result.output
    assert "MAIL_SERVER is not set" in result.output
    assert "/dev/mailbox/1" in result.output
    row = _row(ctx, 1)
    assert (row.kind, row.to_address, row.status) == ("test", "ops@example.com", "queued")


def test_send_test_mail_sends_through_smtp(mail_app, smtp, runner_for):
    result = runner_for(mail_app).invoke(args=["portal", "send-test-mail", "ops@example.com"])
    assert result.exit_code == 0, result.output
    assert f"through 127.0.0.1:{smtp.port}" in result.output
    [received] = smtp.messages
    assert received.message["Subject"] == "Test message from Signing Portal"
    assert f"127.0.0.1:{smtp.port}" in _part(received.message, "plain")


def test_send_test_mail_reports_a_failure(down_app, runner_for):
    result = runner_for(down_app).invoke(args=["portal", "send-test-mail", "ops@example.com"])
    assert result.exit_code == 1
    assert "could not be sent" in result.output and "stays queued" in result.output
    bad = runner_for(down_app).invoke(args=["portal", "send-test-mail", "nonsense"])
    assert bad.exit_code == 1 and "not an email address" in bad.output


# ---------------------------------------------------------------- development mailbox


def test_mailbox_lists_and_shows_messages(app, signed_in):
    portal, _staff = signed_in("admin")  # admins read every message (see tests/test_mailbox.py)
    first = _queue_committed(app, subject="First <message>")
    second = _queue_committed(app, subject="Second message", to_address="sam@example.com")

    page = portal.client.get("/dev/mailbox")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert body.index("Second message") < body.index("First &lt;message&gt;"), "newest first"
    assert "sam@example.com" in body and "signing_request" in body and "Queued" in body
    assert 'href="/dev/mailbox"' in body and ">Mailbox</a>" in body

    page = portal.client.get(f"/dev/mailbox/{first}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'<a href="{SIGNING_LINK}">' in body, "the signing link can be followed"
    assert "Please sign your refund authorization:" in body
    assert f'<iframe id="message-html" sandbox src="/dev/mailbox/{first}/html"' in body
    assert second != first


def test_mailbox_html_part_has_its_own_strict_policy(app, signed_in):
    portal, _staff = signed_in("admin")
    message_id = _queue_committed(app, html_body="<p>Hi</p><script>alert(1)</script>")
    response = portal.client.get(f"/dev/mailbox/{message_id}/html")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.get_data(as_text=True) == "<p>Hi</p><script>alert(1)</script>"
    csp = response.headers["Content-Security-Policy"]
    assert csp == HTML_CSP
    for part in ("default-src 'none'", "img-src data:", "style-src 'unsafe-inline'"):
        assert part in csp
    assert "frame-ancestors 'self'" in csp and "script-src" not in csp
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    page = portal.client.get("/dev/mailbox")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert portal.client.get("/dev/mailbox/999").status_code == 404


def test_mailbox_needs_a_signed_in_member_of_staff(app):
    client = app.test_client()
    for url in ("/dev/mailbox", "/dev/mailbox/1", "/dev/mailbox/1/html"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/auth/login" in response.headers["Location"]


def test_mailbox_is_not_there_in_production(make_app, make_staff):
    production = make_app(PRODUCTION=True)
    portal = Portal(production, production.test_client())
    assert portal.client.get("/dev/mailbox").status_code == 404
    assert portal.sign_in(make_staff("admin")).status_code == 302
    account = portal.client.get("/account/").get_data(as_text=True)
    assert "Templates</a>" in account and "Mailbox" not in account
    for url in ("/dev/mailbox", "/dev/mailbox/1", "/dev/mailbox/1/html"):
        assert portal.client.get(url).status_code == 404


@pytest.mark.browser
def test_mailbox_in_a_desktop_browser(app, desktop, make_staff):
    from playwright.sync_api import expect

    _queue_committed(app)
    with app.app_context():
        subject, text, html = mail.render("test", address="ops@example.com", server="", at="now")
        test_id = mail.queue("ops@example.com", None, subject, text, html, kind="test").id
        db.session.commit()
    desktop.sign_in(make_staff("admin"))
    page = desktop.page
    page.get_by_role("link", name="Mailbox").click()
    expect(page.get_by_role("link", name="Please sign: Refund authorization")).to_be_visible()
    desktop.screenshot("desktop-mailbox.png")
    page.get_by_role("link", name="Test message from Signing Portal").click()
    expect(page).to_have_url(desktop.url(f"/dev/mailbox/{test_id}"))
    frame = page.frame_locator("#message-html")
    expect(frame.get_by_role("link", name="Open the portal")).to_be_visible()
    expect(page.locator("#message-links a")).to_have_attribute("href", "http://127.0.0.1:5000/")
    desktop.screenshot("desktop-mailbox-message.png")
    # full-page captures leave the sandboxed (out-of-process) frame blank: shoot it in view
    page.locator("#message-html").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "desktop-mailbox-html.png"))
    desktop.assert_clean()
