"""Creating the envelopes of one chunk of rows: complete, signable, audited, emails queued.

Each envelope is what ``envelopes.sending.send_new`` makes for the send form, checked by the
same blocks (``checks.merge_data``, ``checks.recipients``, ``checks.ticket``,
``sending.store_document``, ``links.active_now``, ``links.token_digest``), with the same audit
events (``envelope.created``, ``envelope.link_sent`` per recipient whose turn it is,
``envelope.sent``) and the same signing email in the outbox. What differs is how it is
written: a chunk's envelopes, recipients, messages and audit events each go in with one
multi-row INSERT (``audit.record_many``), and

* envelopes of an uploaded-PDF template share the version's stored document (the same bytes,
  blob and SHA-256: a stored document never changes), where the form stores a copy; an
  authored document is merged and rendered for each row (it differs per customer);
* the signing email is rendered once per language and role kind with stand-ins for the
  recipient's name and link, which are then put in (escaped for HTML); the first email of each
  kind is also rendered in full and compared, and should they ever differ every email of that
  kind is rendered in full.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import make_msgid, parseaddr
from typing import Any

from flask import current_app
from markupsafe import escape
from sqlalchemy import insert, update

from portal import audit, clock, jobs, mail
from portal.accounts.models import User
from portal.bulk.models import BulkBatch, BulkRow, RowState
from portal.envelopes import checks, images, links, sending
from portal.envelopes.checks import EnvelopeError, RecipientInput
from portal.envelopes.models import Envelope, EnvelopeStatus, Recipient, RecipientStatus
from portal.envelopes.search import search_text_for
from portal.extensions import db
from portal.library.models import TemplateVersion
from portal.text import printable

_NAME = "bulkname7f3a9c"
_LINK = "bulklink7f3a9c"


def _one_line(value: str, limit: int) -> str:
    return " ".join(printable(value).split())[:limit]


class SigningMail:
    """The signing email of one chunk (one sender, title and expiry), by language and kind."""

    def __init__(self, sender: str, title: str, expires_at: datetime) -> None:
        self.context = {"sender_name": sender, "title": title, "expires_at": expires_at}
        self.made: dict[tuple[str, str], tuple[str, str, str] | None] = {}

    def _render(self, locale: str, kind: str, name: str, link: str) -> tuple[str, str, str]:
        return mail.render(
            "signing_request",
            locale,
            recipient_name=name,
            kind=kind,
            link=link,
            reminder=False,
            expiring=False,
            **self.context,
        )

    def render(self, locale: str, kind: str, name: str, link: str) -> tuple[str, str, str]:
        """``(subject, text, html)`` exactly as ``mail.render`` gives them."""
        key = (locale, kind)
        if key not in self.made:
            parts = self._render(locale, kind, _NAME, _LINK)
            whole = self._render(locale, kind, name, link)
            self.made[key] = parts if self._fill(parts, name, link) == whole else None
            return whole
        stand_in = self.made[key]
        if stand_in is None:
            return self._render(locale, kind, name, link)
        return self._fill(stand_in, name, link)

    @staticmethod
    def _fill(parts: tuple[str, str, str], name: str, link: str) -> tuple[str, str, str]:
        name = printable(name)
        subject, text, html = parts
        return (
            subject.replace(_NAME, " ".join(name.split())).replace(_LINK, link),
            text.replace(_NAME, name).replace(_LINK, link),
            html.replace(_NAME, str(escape(name))).replace(_LINK, str(escape(link))),
        )


@dataclass
class Prepared:
    """One row made ready: its envelope and recipients as rows, and who gets a link now."""

    row: BulkRow
    envelope: dict[str, Any]
    people: list[Recipient]
    invited: list[tuple[int, str]] = field(default_factory=list)  # (index in people, link)


@dataclass
class Outcome:
    """What a chunk did."""

    created: int = 0
    failed: int = 0
    emails: int = 0


class ChunkCreator:
    """Creates the envelopes of rows of one batch, a chunk at a time (in the caller's
    transaction; the caller commits)."""

    def __init__(self, batch: BulkBatch, version: TemplateVersion, by: User) -> None:
        self.batch = batch
        self.version = version
        self.by = by
        self.settings = dict(version.settings or {})
        self.default_auth = str(self.settings.get("default_auth") or "link")
        self.authored = version.source_kind == "authored"
        self.team_id = version.template.team_id if by.team_id is None else by.team_id
        self.held = not current_app.config.get("MAIL_SERVER")
        self.domain = parseaddr(str(current_app.config.get("MAIL_FROM") or ""))[1]
        self.domain = self.domain.rpartition("@")[2] or "localhost"

    def create(self, rows: Sequence[BulkRow], codes: Mapping[int, Mapping[str, str]]) -> Outcome:
        """Create one envelope per row (rows whose values the operations refuse fail)."""
        now = clock.utcnow()
        expires_at = now + timedelta(days=int(self.settings.get("expiry_days") or 30))
        outcome = Outcome()
        prepared: list[Prepared] = []
        failed: list[dict[str, Any]] = []
        for row in rows:
            try:
                prepared.append(self._prepare(row, codes.get(row.number, {}), now, expires_at))
            except EnvelopeError as exc:
                failed.append({"id": row.id, "state": RowState.FAILED.value, "error": str(exc)})
        if failed:
            db.session.execute(update(BulkRow), failed)
            outcome.failed = len(failed)
        if prepared:
            outcome.created = len(prepared)
            outcome.emails = self._write(prepared, now, expires_at)
        return outcome

    def fail(self, rows: Sequence[BulkRow], reason: str) -> Outcome:
        """Mark rows failed without trying them (the template can no longer be sent)."""
        failed = [{"id": r.id, "state": RowState.FAILED.value, "error": reason} for r in rows]
        db.session.execute(update(BulkRow), failed)
        return Outcome(failed=len(failed))

    def _document(self, values: Mapping[str, str]) -> sending.StoredDocument:
        """The document as stored: the template's own for an uploaded PDF."""
        if not self.authored:
            if not self.version.source_blob_id or not self.version.source_sha256:
                raise EnvelopeError("This template has no document.")
            return sending.StoredDocument(self.version.source_blob_id, self.version.source_sha256)
        return sending.store_document(self.version, values)

    def _prepare(
        self, row: BulkRow, codes: Mapping[str, str], now: datetime, expires_at: datetime
    ) -> Prepared:
        values = checks.merge_data(self.version, row.merge_data)
        people = checks.recipients(
            self.version,
            [
                RecipientInput(
                    role=person["role"],
                    name=person["name"],
                    email=person["email"],
                    phone=person.get("phone") or "",
                    locale=person.get("locale") or "en",
                    auth_method=person.get("auth") or "",
                    access_code=codes.get(person["role"], ""),
                )
                for person in row.people
            ],
        )
        ticket_id, ticket_url = checks.ticket(row.ticket_id or "", row.ticket_url or "")
        document = self._document(values)
        pages = [dict(page) for page in self.version.pages]
        if self.authored:  # (as ``_attach_pages``: its own images, rendered by a job)
            for page in pages:
                page["image_blob_id"] = None
        envelope = {
            "public_id": uuid.uuid4().hex,
            "template_version_id": self.version.id,
            "team_id": self.team_id,
            "created_by_id": self.by.id,
            "title": self.version.template.name,
            "status": EnvelopeStatus.SENT.value,
            "merge_data": values,
            "ticket_id": ticket_id,
            "ticket_url": ticket_url,
            "routing": str(self.settings.get("routing") or "sequential"),
            "settings": self.settings,
            "document_blob_id": document.blob_id,
            "original_sha256": document.sha256,
            "page_count": self.version.page_count,
            "pages": pages,
            "images_status": "pending" if self.authored else self.version.images_status,
            "images_requested_at": now if self.authored else None,
            "created_at": now,
            "sent_at": now,
            "expires_at": expires_at,
            "search_text": search_text_for(
                self.version.template.name,
                ticket_id,
                values,
                [(p.name, p.email, p.phone) for p in people],
            ),
        }
        item = Prepared(row, envelope, people)
        shell = Envelope(routing=envelope["routing"])  # for ``active_now``; never stored
        shell.recipients = people
        for recipient in links.active_now(shell):  # (as ``links.invite`` does)
            token = secrets.token_urlsafe(links.TOKEN_BYTES)
            recipient.token_hash = links.token_digest(token)
            recipient.status = RecipientStatus.SENT.value
            recipient.sent_at = now
            item.invited.append((people.index(recipient), links.link_for(token)))
        shell.recipients = []
        return item

    def _write(self, prepared: list[Prepared], now: datetime, expires_at: datetime) -> int:
        """Insert the chunk's envelopes, recipients, emails and audit events; mark the rows."""
        envelope_ids = db.session.scalars(
            insert(Envelope).returning(Envelope.id, sort_by_parameter_order=True),
            [p.envelope for p in prepared],
        ).all()
        recipient_rows = []
        for item, envelope_id in zip(prepared, envelope_ids, strict=True):
            for person in item.people:
                recipient_rows.append(_recipient_row(person, envelope_id))
        recipient_ids = iter(
            db.session.scalars(
                insert(Recipient).returning(Recipient.id, sort_by_parameter_order=True),
                recipient_rows,
            ).all()
        )
        signing_mail = SigningMail(self.by.name, self.version.template.name, expires_at)
        messages: list[dict[str, Any]] = []
        events: list[audit.Pending] = []
        row_updates = []
        for item, envelope_id in zip(prepared, envelope_ids, strict=True):
            ids = [next(recipient_ids) for _ in item.people]
            subject = ("envelope", str(envelope_id), item.envelope["title"])
            events.append(self._created_event(item, subject))
            for index, link in item.invited:
                person = item.people[index]
                messages.append(
                    self._message(signing_mail, person, link, envelope_id, ids[index], now)
                )
                events.append(
                    audit.Pending(
                        "envelope.link_sent",
                        self.by,
                        subject,
                        {"recipient": ids[index], "email": mail.mask_address(person.email)},
                    )
                )
            events.append(
                audit.Pending(
                    "envelope.sent", self.by, subject, {"expires_at": audit.iso_time(expires_at)}
                )
            )
            row_updates.append(
                {
                    "id": item.row.id,
                    "state": RowState.CREATED.value,
                    "envelope_id": envelope_id,
                    "emails": len(item.invited),
                    "created_at": now,
                    "error": None,
                }
            )
        message_ids = db.session.scalars(
            insert(mail.Message).returning(mail.Message.id, sort_by_parameter_order=True),
            messages,
        ).all()
        audit.record_many(events)
        db.session.execute(update(BulkRow), row_updates)
        if not self.held:  # as ``mail.queue``: delivery is asked for after the commit
            for message_id in message_ids:
                jobs.enqueue(mail.deliver, message_id)
        if self.authored:
            for envelope_id in envelope_ids:
                jobs.enqueue(images.render_envelope_pages, envelope_id)
        return len(messages)

    def _created_event(self, item: Prepared, subject: tuple[str, str, str]) -> audit.Pending:
        envelope = item.envelope
        return audit.Pending(
            "envelope.created",
            self.by,
            subject,
            {
                "template": self.version.template.name,
                "version": self.version.number,
                "sha256": envelope["original_sha256"],
                "ticket": envelope["ticket_id"],
                "recipients": [
                    {
                        "role": p.role,
                        "kind": p.kind,
                        "email": mail.mask_address(p.email),
                        "auth": p.auth_method,
                    }
                    for p in item.people
                ],
                "options": {
                    "expiry_days": self.settings.get("expiry_days"),
                    "reminder_every_hours": self.settings.get("reminder_every_hours"),
                    "reminder_max": self.settings.get("reminder_max"),
                    "personal_message": False,
                    "cc": 0,
                },
                "bulk_batch": self.batch.public_id,
                "row": item.row.number,
            },
        )

    def _message(
        self,
        signing_mail: SigningMail,
        person: Recipient,
        link: str,
        envelope_id: int,
        recipient_id: int,
        now: datetime,
    ) -> dict[str, Any]:
        subject, text, html = signing_mail.render(person.locale, person.kind, person.name, link)
        return {
            "created_at": now,
            "to_address": person.email,
            "to_name": _one_line(person.name, 200),
            "subject": _one_line(subject, 500),
            "text_body": text,
            "html_body": html,
            "locale": person.locale,
            "kind": "signing_request",
            "envelope_id": envelope_id,
            "recipient_id": recipient_id,
            "status": mail.Status.QUEUED.value,
            "attempts": 0,
            "smtp_message_id": make_msgid(domain=self.domain),
            "last_error": mail.NO_SERVER if self.held else None,
        }


def _recipient_row(person: Recipient, envelope_id: int) -> dict[str, Any]:
    return {
        "envelope_id": envelope_id,
        "role": person.role,
        "role_name": person.role_name,
        "kind": person.kind,
        "order": person.order,
        "name": person.name,
        "email": person.email,
        "phone": person.phone,
        "locale": person.locale,
        "auth_method": person.auth_method,
        "status": person.status,
        "token_hash": person.token_hash,
        "access_code_hash": person.access_code_hash,
        "sent_at": person.sent_at,
        "auth_attempts": 0,
        "reminders_sent": 0,
    }
