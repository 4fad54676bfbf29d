"""Late bounces: delivery status notifications (RFC 3464) about mail the portal sent.

A receiving server may accept a message and find out later that the mailbox does not exist; it
then mails a delivery status notification (DSN) back: ``multipart/report;
report-type=delivery-status`` with a ``message/delivery-status`` part (per recipient ``Action``,
``Status``, ``Final-Recipient``, ``Diagnostic-Code``) and the original message or its headers
(``message/rfc822`` or ``text/rfc822-headers``). The MTA pipes it to ``flask portal bounce``,
which calls ``process_bounce``.

The outbox row is found by the ``Message-ID`` we sent (from the returned headers; else the DSN's
``In-Reply-To`` / ``References``; else a ``Message-ID:`` line quoted in its text). A permanent
failure makes the row ``bounced`` with the diagnostic as ``last_error``, records ``mail.bounced``
on the envelope's trail and, for a signing request, reminder or completed copy, tells the
sending agent by email; a delay records ``mail.delayed`` and leaves the row as it is. The same
DSN twice changes nothing the second time. Anything else (not a DSN, not about our mail, a
success report) changes nothing, and no input makes it raise.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, message_from_string, policy
from email.message import Message as MimeMessage
from hashlib import sha256
from typing import IO

from sqlalchemy import select

from portal import audit, mail
from portal.accounts import contacts
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.mail import Message

MAX_DSN_BYTES = 10 * 1024 * 1024  # the report comes first; a returned PDF may be cut off
MAX_CANDIDATES = 20
DIAGNOSTIC_LENGTH = 300
# Mail to an envelope's recipient whose bounce the sending agent should hear about.
NOTIFY_KINDS = ("signing_request", "reminder", "completed")
TOLD = "; the sending agent is told"

_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_TYPES = ("message/rfc822", "message/global")
_HEADER_TYPES = ("text/rfc822-headers", "message/global-headers")
_MSGID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_MSGID_LINE = re.compile(r"^[ \t]*Message-ID:[ \t]*(<[^<>\s]+@[^<>\s]+>)", re.IGNORECASE | re.M)
_STATUS_CODE = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_ADDRESS = re.compile(r"[^@\s<>()\[\]\\,;:\"']+@[^@\s<>()\[\]\\,;:\"']+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TYPED_VALUE = re.compile(r"\s*[A-Za-z0-9][A-Za-z0-9.-]*\s*;\s*(.*)", re.S)  # "smtp; 550 ..."


class Outcome(enum.StrEnum):
    """What processing a DSN did."""

    BOUNCED = "bounced"
    DELAYED = "delayed"
    ALREADY_RECORDED = "already recorded"
    IGNORED = "ignored"
    NOT_OURS = "not ours"
    NOT_A_DSN = "not a DSN"


@dataclass(frozen=True)
class BounceResult:
    """The outcome, what it was about (the outbox row, masked address) and why."""

    outcome: Outcome
    detail: str
    outbox_id: int | None = None
    envelope_id: int | None = None
    to: str | None = None
    diagnostic: str | None = None
    sender_told: bool = False

    @property
    def changed(self) -> bool:
        return self.outcome in (Outcome.BOUNCED, Outcome.DELAYED)

    def __str__(self) -> str:
        about = ""
        if self.outbox_id is not None:
            envelope = f", envelope {self.envelope_id}" if self.envelope_id is not None else ""
            about = f" message {self.outbox_id} to {self.to}{envelope}:"
        return f"{self.outcome.value}:{about} {self.detail}"


@dataclass(frozen=True)
class _Recipient:
    """One per-recipient block of a DSN."""

    addresses: tuple[str, ...]  # Final-Recipient and Original-Recipient, lower case
    action: str  # failed | delayed | delivered | relayed | expanded | ""
    status: str | None  # "5.1.1"
    diagnostic: str


@dataclass(frozen=True)
class _Report:
    """What a DSN says, before anything is looked up."""

    recipients: tuple[_Recipient, ...]
    message_ids: tuple[str, ...]  # candidates for the Message-ID we sent, best first
    dsn_id: str  # the DSN's own Message-ID, or a digest of it


def process_bounce(raw: bytes) -> BounceResult:
    """Read one DSN and record what it says about our mail.

    Ends the session's transaction: commits when something changed, else rolls back.
    """
    try:
        report = _parse(bytes(raw[:MAX_DSN_BYTES]))
    except Exception as exc:  # garbage in: the email package's many ways to give up
        return BounceResult(Outcome.NOT_A_DSN, f"unreadable ({type(exc).__name__})")
    if isinstance(report, str):
        return BounceResult(Outcome.NOT_A_DSN, report)
    if not report.message_ids:
        return BounceResult(Outcome.NOT_OURS, "it names no Message-ID of the original message")
    candidates = [i for i in report.message_ids if len(i) <= 255][:MAX_CANDIDATES]
    if not candidates:
        return BounceResult(Outcome.NOT_OURS, "it names no Message-ID the portal could have sent")
    rows = db.session.execute(
        select(Message).where(Message.smtp_message_id.in_(candidates)).with_for_update()
    ).scalars()
    by_id = {row.smtp_message_id: row for row in rows}
    message = next((by_id[c] for c in candidates if c in by_id), None)
    if message is None:
        db.session.rollback()
        return BounceResult(Outcome.NOT_OURS, f"no message of ours has Message-ID {candidates[0]}")
    try:
        result = _apply(message, report)
    except Exception:
        db.session.rollback()
        raise
    if result.changed:
        db.session.commit()  # inline mode: the agent's notice is sent now
    else:
        db.session.rollback()
    return result


def read_limited(stream: IO[bytes], limit: int = MAX_DSN_BYTES) -> bytes:
    """The first ``limit`` bytes of ``stream``, reading (and dropping) the rest, so that an MTA
    piping a large bounce never sees a broken pipe."""
    kept = bytearray()
    while chunk := stream.read(1024 * 1024):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


# ---------------------------------------------------------------- recording


def _apply(message: Message, report: _Report) -> BounceResult:
    to = mail.mask_address(message.to_address)

    def done(outcome: Outcome, detail: str, diagnostic: str | None = None) -> BounceResult:
        told = outcome is Outcome.BOUNCED and detail.endswith(TOLD)
        return BounceResult(outcome, detail, message.id, message.envelope_id, to, diagnostic, told)

    block = _block_for(report.recipients, message.to_address)
    if block is None:
        return done(Outcome.IGNORED, "it reports on other recipients")
    diagnostic = _diagnostic(block)
    facts = {"dsn_status": block.status, "diagnostic": diagnostic, "dsn_id": report.dsn_id}
    if block.action == "failed":
        if message.status == mail.Status.BOUNCED.value:
            return done(Outcome.ALREADY_RECORDED, "the bounce is on record")
        mail.mark_bounced(message, diagnostic, **facts)
        told = _tell_sender(message, diagnostic)
        return done(Outcome.BOUNCED, diagnostic + (TOLD if told else ""), diagnostic)
    if block.action == "delayed":
        if message.status == mail.Status.BOUNCED.value:
            return done(Outcome.IGNORED, "a delay report after the bounce")
        if _delay_recorded(message, report.dsn_id):
            return done(Outcome.ALREADY_RECORDED, "the delay is on record")
        mail.note_delayed(message, **facts)
        return done(Outcome.DELAYED, diagnostic, diagnostic)
    return done(Outcome.IGNORED, f"it reports {block.action or 'no action'}, not a failure")


def _delay_recorded(message: Message, dsn_id: str) -> bool:
    # mail's audit events concern the envelope when there is one, else the message
    subject = ("envelope", str(message.envelope_id)) if message.envelope_id else message.audit_ref
    needle = audit.encode_data({"dsn_id": dsn_id})[1:-1]  # '"dsn_id":"<...>"' as stored
    found = db.session.execute(
        select(audit.AuditEvent.seq)
        .where(
            audit.AuditEvent.event == "mail.delayed",
            audit.AuditEvent.subject_type == subject[0],
            audit.AuditEvent.subject_id == subject[1],
            audit.AuditEvent.data_json.contains(needle, autoescape=True),
        )
        .limit(1)
    ).first()
    return found is not None


def _tell_sender(message: Message, diagnostic: str) -> bool:
    """Email the agent who sent the envelope; whether a notice was queued."""
    if message.kind not in NOTIFY_KINDS or message.recipient_id is None:
        return False
    recipient = db.session.get(Recipient, message.recipient_id)
    if recipient is None or recipient.envelope_id != message.envelope_id:
        return False
    if recipient.email.lower() != message.to_address.lower():
        return False  # the address has been corrected since
    envelope: Envelope = recipient.envelope
    completed_copy = message.kind == "completed"
    if not completed_copy and (envelope.terminal or recipient.finished):
        return False  # the request no longer matters
    sender = contacts.notify(envelope.created_by)  # an API key's: its creator
    subject, text, html = mail.render(
        "recipient_bounced",
        "en",
        sender_name=sender.name,
        recipient_name=recipient.name,
        address=mail.mask_address(message.to_address),
        title=envelope.title,
        public_id=envelope.public_id,
        diagnostic=diagnostic,
        completed_copy=completed_copy,
    )
    # No recipient_id: the console shows the recipient's latest message, which must stay the
    # bounced one.
    mail.queue(sender.email, sender.name, subject, text, html, kind="notice",
               envelope_id=envelope.id)  # fmt: skip
    return True


# ---------------------------------------------------------------- reading the DSN


def _parse(raw: bytes) -> _Report | str:
    """The report, or why this is not a DSN."""
    dsn = message_from_bytes(raw, policy=policy.default)
    parts = list(_parts(dsn))
    status_part = next((p for p in parts if p.get_content_type() in _STATUS_TYPES), None)
    recipients: list[_Recipient] = []
    if status_part is not None:
        recipients = [_recipient(b) for b in _status_blocks(status_part) if _is_recipient(b)]
    elif failed := _header(dsn, "X-Failed-Recipients"):
        addresses = tuple(a.lower() for a in _ADDRESS.findall(failed))
        recipients = [_Recipient(addresses, "failed", None, "")]
    if not recipients:
        if status_part is None:
            return "no delivery-status part"
        return "no recipient in its delivery status"
    ids: list[str] = []
    for part in parts:
        kind = part.get_content_type()
        if kind in _ORIGINAL_TYPES or kind in _HEADER_TYPES:
            ids += _MSGID.findall(_header(_returned_headers(part), "Message-ID"))
    for name in ("In-Reply-To", "References"):
        ids += _MSGID.findall(_header(dsn, name))
    for part in parts:
        if part.get_content_maintype() == "text" and part.get_content_type() not in _HEADER_TYPES:
            ids += _MSGID_LINE.findall(_text(part))
    own = _MSGID.findall(_header(dsn, "Message-ID"))
    dsn_id = own[0] if own else "sha256:" + sha256(raw).hexdigest()
    unique = tuple(dict.fromkeys(i for i in ids if i not in own))
    return _Report(tuple(recipients), unique, dsn_id)


def _parts(message: MimeMessage) -> Iterator[MimeMessage]:
    """The parts of the DSN, not looking inside returned messages."""
    yield message
    payload = message.get_payload()
    if message.is_multipart() and message.get_content_maintype() == "multipart":
        for part in payload if isinstance(payload, list) else []:
            if isinstance(part, MimeMessage):
                yield from _parts(part)


def _header(message: MimeMessage, name: str) -> str:
    return " ".join(str(value) for value in message.get_all(name) or [])


def _text(part: MimeMessage) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return ""


def _blocks(text: str) -> list[MimeMessage]:
    chunks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return [
        message_from_string(c.strip() + "\n", policy=policy.default) for c in chunks if c.strip()
    ]


def _status_blocks(part: MimeMessage) -> list[MimeMessage]:
    """The field groups of a delivery-status part (per message, then per recipient)."""
    payload = part.get_payload()
    if not isinstance(payload, list):  # an encoded or oddly formed part
        return _blocks(_text(part))
    blocks: list[MimeMessage] = []
    for block in payload:
        if not isinstance(block, MimeMessage):
            continue
        blocks.append(block)
        rest = block.get_payload()  # the global form parses as one message: the rest is its body
        if isinstance(rest, str) and rest.strip():
            blocks += _blocks(rest)
    return blocks


def _returned_headers(part: MimeMessage) -> MimeMessage:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], MimeMessage):
        return payload[0]
    return message_from_string(_text(part), policy=policy.default)


def _is_recipient(block: MimeMessage) -> bool:
    return bool(_header(block, "Final-Recipient") or _header(block, "Action"))


def _recipient(block: MimeMessage) -> _Recipient:
    addresses: list[str] = []
    for name in ("Final-Recipient", "Original-Recipient", "X-Actual-Recipient"):
        addresses += (a.lower() for a in _ADDRESS.findall(_typed_value(_header(block, name))))
    status = _STATUS_CODE.search(_header(block, "Status"))
    code = status.group(0) if status else None
    action = (_header(block, "Action").split() or [""])[0].lower()
    if action not in ("failed", "delayed", "delivered", "relayed", "expanded") and code:
        action = {"5": "failed", "4": "delayed"}.get(code[0], "")
    diagnostic = _typed_value(_header(block, "Diagnostic-Code"))
    return _Recipient(tuple(addresses), action, code, diagnostic)


def _typed_value(value: str) -> str:
    """``smtp; 550 5.1.1 ...`` -> ``550 5.1.1 ...``."""
    match = _TYPED_VALUE.fullmatch(value)
    return match.group(1) if match else value


def _block_for(recipients: tuple[_Recipient, ...], address: str) -> _Recipient | None:
    """The block about our recipient: the one naming the address; else (an alias or a relay
    rewrote it) the only block, or the only failure or delay."""
    address = address.lower()
    named = [r for r in recipients if address in r.addresses]
    if named:
        return named[0]
    if len(recipients) == 1:
        return recipients[0]
    problems = [r for r in recipients if r.action in ("failed", "delayed")]
    return problems[0] if len(problems) == 1 else None


def _diagnostic(block: _Recipient) -> str:
    """One short line for people: the server's words with addresses masked."""
    text = " ".join(_CONTROL.sub(" ", block.diagnostic).split())
    if not text:
        described = "permanent failure" if block.action == "failed" else block.action
        text = f"{described} (status {block.status})" if block.status else described
    text = _ADDRESS.sub(lambda m: mail.mask_address(m.group(0)), text)
    if len(text) > DIAGNOSTIC_LENGTH:
        text = text[: DIAGNOSTIC_LENGTH - 1].rstrip() + "…"
    return text
