"""Outgoing mail: rendered messages in an outbox table, delivered over SMTP by jobs.

``queue(...)`` adds the ``message`` row and asks for ``deliver`` in the caller's transaction (a
rollback keeps no row and sends nothing); after the commit ``deliver`` sends it once (inline in
embedded mode, on the RQ ``mail`` queue with Redis) and records the outcome on the row and in
the audit chain. The row is the truth: while SMTP is down a message stays ``queued`` with
``attempts`` and ``last_error``, RQ retries the job, and ``retry_stuck_mail`` asks again for
whatever still waits, longer after each try (``SWEEP_WAIT_MINUTES``), until ``MAX_ATTEMPTS``
make it ``failed``. A recipient the server refuses permanently (5xx) fails at once; a late
bounce (a delivery status notification, see ``envelopes.bounces``) makes it ``bounced``.
Without ``MAIL_SERVER`` (development) nothing is sent: messages stay ``queued`` with
``NO_SERVER`` as ``last_error`` and are read at ``/dev/mailbox``.

Delivery is at least once: a crash between the server's "250" and the commit that marks the row
sent sends it again later, with the same ``Message-ID``. On PostgreSQL ``deliver`` holds the
row's lock (``FOR UPDATE SKIP LOCKED``) while talking to SMTP, so an RQ retry and a sweeper
nudge never send one message twice at once; on SQLite (embedded, one process) it does not hold
the database-wide write lock over the network.
"""

from __future__ import annotations

import contextlib
import enum
import re
import smtplib
import ssl
import time
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

import click
from babel import Locale, UnknownLocaleError
from flask import current_app, render_template
from flask.cli import with_appcontext
from flask_babel import force_locale
from jinja2 import Template
from sqlalchemy import DateTime, Index, Integer, Select, String, Text, and_, func, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from portal import audit, clock, jobs, storage
from portal.extensions import Model, db
from portal.text import printable

KINDS = ("signing_request", "reminder", "completed", "otp", "notice", "test")  # add new kinds here
RETRY_INTERVALS = (10, 60, 300, 900, 3600)  # RQ's retries of one job, in seconds
MAX_ATTEMPTS = 8
# How long the sweeper waits after the last try (or the creation), by tries made so far:
# about 22 hours from the first try to giving up when SMTP stays down.
SWEEP_WAIT_MINUTES = (2, 6, 20, 60, 180, 360, 360, 360)
SWEEP_BATCH = 200
SMTP_TIMEOUT = 20
NO_SERVER = "No MAIL_SERVER configured; see the development mailbox"
_ADDRESS = re.compile(r"[^@\s<>()\[\]\\,;:\"]+@[^@\s<>()\[\]\\,;:\"]+")


class Status(enum.StrEnum):
    """Where a message is: ``queued`` until sent or given up."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"  # a late bounce: see mark_bounced


class Message(Model):
    """One outgoing email: what to send, to whom, and how sending went."""

    __tablename__ = "message"
    __table_args__ = (Index("ix_message_status_created_at", "status", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=clock.utcnow)
    to_address: Mapped[str] = mapped_column(String(320))
    to_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(500))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text, default="")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    kind: Mapped[str] = mapped_column(String(40))
    # Plain columns until envelopes exist (no foreign keys yet).
    envelope_id: Mapped[int | None] = mapped_column(Integer, index=True)
    recipient_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), default=Status.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Chosen when queued and kept for every try, so a receiver can spot a repeat.
    smtp_message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # An attached file (the sealed copy), kept as an encrypted blob.
    attachment_blob_id: Mapped[str | None] = mapped_column(String(32))
    attachment_name: Mapped[str | None] = mapped_column(String(200))

    @property
    def audit_ref(self) -> tuple[str, str, str]:
        return ("message", str(self.id), mask_address(self.to_address))


def mask_address(address: str) -> str:
    """``jane@example.com`` -> ``j***@example.com``: enough to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def _one_line(value: str) -> str:
    return " ".join(printable(value).split())


def _sender_domain() -> str:
    address = parseaddr(str(current_app.config.get("MAIL_FROM") or ""))[1]
    return address.rpartition("@")[2] or "localhost"


def build_email(message: Message, *, attachment: bool = True) -> EmailMessage:
    """The MIME message for a row: text part, HTML alternative and the portal's headers
    (and the attached file, unless ``attachment`` is false)."""
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = str(current_app.config["MAIL_FROM"])
    email["To"] = Address(display_name=message.to_name or "", addr_spec=message.to_address)
    email["Date"] = format_datetime(clock.utcnow())
    email["Message-ID"] = message.smtp_message_id or make_msgid(domain=_sender_domain())
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.text_body)
    if message.html_body:
        email.add_alternative(message.html_body, subtype="html")
    if message.attachment_blob_id and attachment:
        email.add_attachment(
            storage.get(message.attachment_blob_id),
            maintype="application",
            subtype="pdf",
            filename=message.attachment_name or "document.pdf",
        )
    return email


def queue(
    to_address: str,
    to_name: str | None,
    subject: str,
    text_body: str,
    html_body: str | None,
    *,
    kind: str,
    locale: str = "en",
    envelope_id: int | None = None,
    recipient_id: int | None = None,
    attachment: tuple[str, str] | None = None,
) -> Message:
    """Add a message to the outbox and ask for its delivery, in the caller's transaction.

    ``attachment`` is ``(blob id, file name)`` of a PDF to attach. Raises ``ValueError`` for an
    address or header that could never be sent.
    """
    address = to_address.strip()
    if not _ADDRESS.fullmatch(address):
        raise ValueError(f"{to_address!r} is not an email address.")
    if kind not in KINDS:
        raise ValueError(f"Unknown kind of message {kind!r}; use one of {KINDS}.")
    message = Message(
        created_at=clock.utcnow(),
        to_address=address,
        to_name=_one_line(to_name or "")[:200],
        subject=_one_line(subject)[:500],
        text_body=text_body,
        html_body=html_body or "",
        locale=locale,
        kind=kind,
        envelope_id=envelope_id,
        recipient_id=recipient_id,
        status=Status.QUEUED.value,
        attempts=0,
        smtp_message_id=make_msgid(domain=_sender_domain()),
        attachment_blob_id=attachment[0] if attachment else None,
        attachment_name=_one_line(attachment[1])[:200] if attachment else None,
    )
    build_email(message, attachment=False)  # refuse now what the job could never send
    if not current_app.config.get("MAIL_SERVER"):
        message.last_error = NO_SERVER  # held in the outbox (see /dev/mailbox); nothing to ask
    db.session.add(message)
    db.session.flush()
    if message.last_error is None:
        jobs.enqueue(deliver, message.id)
    return message


def _known_locale(locale: str) -> str:
    try:
        Locale.parse(locale.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return "en"
    return locale


def render(template_name: str, locale: str = "en", **context: Any) -> tuple[str, str, str]:
    """Render ``templates/mail/<name>.subject.txt``, ``.txt`` and ``.html``.

    Returns ``(subject, text, html)``: the subject on one line, the text part plain, the HTML
    autoescaped. A translation in ``templates/mail/<locale>/<name>.*`` is used when present;
    ``_()`` works in the templates with the message's locale. The context always has
    ``org_name``, ``base_url`` (``PUBLIC_BASE_URL``, for links) and ``locale``. Its strings
    (names, titles, reasons) are made ``printable``: nothing in them reorders the text.
    """
    locale = _known_locale(locale)
    values = {
        "org_name": current_app.config["ORG_NAME"],
        "base_url": current_app.config["PUBLIC_BASE_URL"],
        "locale": locale,
        **{key: printable(v) if isinstance(v, str) else v for key, v in context.items()},
    }

    def one(suffix: str) -> str:
        names: list[str | Template] = [
            f"mail/{locale}/{template_name}.{suffix}",
            f"mail/{template_name}.{suffix}",
        ]
        return render_template(names, **values)

    with force_locale(locale):
        subject, text, html = one("subject.txt"), one("txt"), one("html")
    return _one_line(subject), text.strip() + "\n", html


def _locked(stmt: Select[Any]) -> Select[Any]:
    # Row lock on PostgreSQL, skipping rows another worker holds; SQLite ignores it.
    return stmt.with_for_update(skip_locked=True)


def _audit(event: str, message: Message, **data: Any) -> None:
    facts: dict[str, Any] = {
        "kind": message.kind,
        "to": mask_address(message.to_address),
        "message_id": message.smtp_message_id,
        "outbox_id": message.id,
    }
    if message.recipient_id is not None:
        facts["recipient_id"] = message.recipient_id
    subject: audit.Ref = message
    if message.envelope_id is not None:  # the envelope's trail shows its mail
        subject = ("envelope", str(message.envelope_id), None)
    audit.record(event, subject=subject, data={**facts, **data})


def mark_bounced(message: Message, error: str, **facts: Any) -> None:
    """A delivery status notification says the mailbox refused the message for good: the row
    becomes ``bounced`` with ``error`` and ``mail.bounced`` goes into the audit chain."""
    message.status = Status.BOUNCED.value
    message.last_error = _one_line(error)[:2000]
    _audit("mail.bounced", message, **facts)


def note_delayed(message: Message, **facts: Any) -> None:
    """A delivery status notification says delivery is delayed: ``mail.delayed`` in the audit
    chain, the row as it is."""
    _audit("mail.delayed", message, **facts)


def _send(email: EmailMessage) -> None:
    config = current_app.config
    smtp = smtplib.SMTP(str(config["MAIL_SERVER"]), int(config["MAIL_PORT"]), timeout=SMTP_TIMEOUT)
    try:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls(context=ssl.create_default_context())
        if config.get("MAIL_USERNAME"):
            smtp.login(str(config["MAIL_USERNAME"]), str(config.get("MAIL_PASSWORD") or ""))
        smtp.send_message(email)
    finally:
        # The message is accepted once DATA is answered; a failing QUIT must not resend it.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        smtp.close()


def _reply_code(exc: Exception) -> int | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return max((code for code, _text in exc.recipients.values()), default=None)
    code = getattr(exc, "smtp_code", None)
    return code if isinstance(code, int) else None


def _permanent(exc: Exception) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _text in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    return isinstance(exc, ValueError)  # a header the email package refuses


def _note_failure(message_id: int, exc: Exception) -> bool:
    """Record a failed try; return whether trying again could help."""
    message = db.session.get(Message, message_id)
    assert message is not None
    permanent = _permanent(exc)
    message.attempts += 1
    message.last_attempt_at = clock.utcnow()
    message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    if permanent:
        message.status = Status.FAILED.value
    facts: dict[str, Any] = {"attempt": message.attempts, "error": type(exc).__name__}
    if _reply_code(exc) is not None:
        facts["response_code"] = _reply_code(exc)
    _audit("mail.failed", message, **facts, final=permanent)
    db.session.commit()
    return not permanent


SECRET_KINDS = ("signing_request", "reminder", "otp")
_SECRETS = re.compile(r"https?://[^\s\"'<>]+/s/[A-Za-z0-9_\-]+|\b\d{6}\b")


def redact(body: str) -> str:
    """The body without signing links and one-time codes."""
    return _SECRETS.sub("[removed after delivery]", body or "")


def _note_sent(message_id: int) -> None:
    message = db.session.get(Message, message_id)
    assert message is not None
    now = clock.utcnow()
    message.status = Status.SENT.value
    message.attempts += 1
    message.last_attempt_at = now
    message.sent_at = now
    message.last_error = None
    if message.kind in SECRET_KINDS:
        # Signing links and codes are secrets held only as hashes elsewhere: once the email
        # is on its way, the outbox keeps the message without them.
        message.text_body = redact(message.text_body)
        message.html_body = redact(message.html_body)
    _audit("mail.sent", message, attempt=message.attempts)
    db.session.commit()


@jobs.job(queue="mail", retry=RETRY_INTERVALS, timeout=120)
def deliver(message_id: int) -> str:
    """Send one queued message over SMTP (idempotent: a sent message is left alone).

    A failed try is counted and committed, then re-raised so that RQ retries the job; in
    inline mode ``jobs`` logs it and the sweeper retries later.
    """
    message = db.session.execute(
        _locked(select(Message).where(Message.id == message_id))
    ).scalar_one_or_none()
    if message is None or message.status != Status.QUEUED.value:
        db.session.rollback()  # sent, given up, gone, or being sent by another worker
        return "nothing to do"
    if not current_app.config.get("MAIL_SERVER"):
        message.last_error = NO_SERVER
        db.session.commit()
        return "held: no MAIL_SERVER"
    try:
        email = build_email(message)
        if db.engine.dialect.name == "sqlite":
            db.session.commit()  # do not hold SQLite's database-wide write lock during SMTP
        _send(email)
    except Exception as exc:
        if _note_failure(message_id, exc):
            raise
        return "failed"
    _note_sent(message_id)
    return "sent"


def _due(now: datetime) -> Any:
    last_try = func.coalesce(Message.last_attempt_at, Message.created_at)
    return or_(
        *(
            and_(Message.attempts == tries, last_try <= now - timedelta(minutes=wait))
            for tries, wait in enumerate(SWEEP_WAIT_MINUTES[:MAX_ATTEMPTS])
        )
    )


@jobs.periodic(every=300)
def retry_stuck_mail() -> str:
    """Ask again for messages waiting too long; give up on those tried ``MAX_ATTEMPTS`` times."""
    queued = Message.status == Status.QUEUED.value
    if not current_app.config.get("MAIL_SERVER"):
        held = db.session.scalar(select(func.count()).select_from(Message).where(queued))
        db.session.rollback()
        return f"no MAIL_SERVER: {held} messages held in the outbox"
    exhausted = _locked(
        select(Message)
        .where(queued, Message.attempts >= MAX_ATTEMPTS)
        .order_by(Message.id)
        .limit(SWEEP_BATCH)
    )
    given_up = 0
    for message in db.session.execute(exhausted).scalars().all():
        message.status = Status.FAILED.value
        _audit("mail.abandoned", message, attempts=message.attempts)
        given_up += 1
    due = db.session.execute(
        select(Message.id)
        .where(queued, Message.attempts < MAX_ATTEMPTS, _due(clock.utcnow()))
        .order_by(Message.id)
        .limit(SWEEP_BATCH)
    ).scalars()
    retried = 0
    for message_id in due:
        jobs.enqueue(deliver, message_id)
        retried += 1
    db.session.commit()  # inline mode: the deliveries run now
    return f"{retried} messages retried, {given_up} given up"


def _outcome(message_id: int, wait: float) -> tuple[str, int, str | None] | None:
    """``(status, attempts, last_error)`` once the message has been tried; None after ``wait``."""
    deadline = time.monotonic() + wait
    while True:
        db.session.expire_all()
        message = db.session.get(Message, message_id)
        outcome = None
        if message is not None and (
            message.status != Status.QUEUED.value or message.attempts or message.last_error
        ):
            outcome = (message.status, message.attempts, message.last_error)
        db.session.rollback()  # hold no lock while waiting
        if outcome is not None or time.monotonic() >= deadline:
            return outcome
        time.sleep(0.5)


@click.command("send-test-mail")
@click.argument("address")
@click.option("--wait", default=30, show_default=True, help="Seconds to wait for an RQ worker.")
@with_appcontext
def send_test_mail(address: str, wait: int) -> None:
    """Queue a test message to ADDRESS to check the SMTP settings."""
    config = current_app.config
    server = f"{config['MAIL_SERVER']}:{config['MAIL_PORT']}" if config["MAIL_SERVER"] else ""
    subject, text, html = render(
        "test", "en", address=address, server=server, at=clock.utcnow().strftime("%Y-%m-%d %H:%M")
    )
    try:
        message_id = queue(address, None, subject, text, html, kind="test").id
    except ValueError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()  # inline mode: delivered (or not) by now
    outcome = _outcome(message_id, 0 if config.get("JOBS_INLINE", True) else wait)
    if outcome is None:
        click.echo(f"Queued message {message_id} to {address}; no worker has tried it yet.")
        click.echo("Is an `rq worker ... mail` running? It is sent when one does.")
        return
    status, attempts, error = outcome
    if status == Status.SENT.value:
        click.echo(f"Sent message {message_id} to {address} through {server}.")
    elif error == NO_SERVER:
        click.echo(f"MAIL_SERVER is not set: message {message_id} was not sent.")
        if not config.get("PRODUCTION"):
            click.echo(f"Read it at {config['PUBLIC_BASE_URL']}/dev/mailbox/{message_id}")
    else:
        retry = "it stays queued and is retried" if status == Status.QUEUED.value else "given up"
        raise click.ClickException(
            f"Message {message_id} could not be sent through {server} "
            f"(try {attempts}; {retry}): {error}"
        )
