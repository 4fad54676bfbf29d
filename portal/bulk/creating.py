"""Creating the envelopes of one chunk of rows: complete, signable, audited, emails queued.

Each envelope is what ``envelopes.sending.send_new`` makes for the send form, from values
checked by the same rules (``checks``, when the file was read: ``checking``), with the same
audit events (``envelope.created``, ``envelope.link_sent`` per recipient whose turn it is,
``envelope.sent``) and the same signing email in the outbox. What differs is how it is
written, since a batch has up to 10,000 of them:

* a chunk's envelopes, recipients, messages and audit events each go in with one multi-row
  INSERT (``audit.record_many``), their ids taken beforehand from the table's sequence
  (PostgreSQL) or after its largest id (SQLite, whose writer holds the database's lock);
* envelopes of an uploaded-PDF template share the version's stored document (the same bytes,
  blob and SHA-256: a stored document never changes), where the form stores a copy; an
  authored document is merged and rendered for each row (``sending.store_document``);
* who gets a link first is worked out once (``links.active_now``): every row has the same roles;
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
from typing import Any, cast

from flask import current_app
from markupsafe import escape
from sqlalchemy import Table, func, select, text

from portal import audit, clock, inserts, jobs, mail
from portal.accounts import credentials
from portal.accounts.models import User
from portal.bulk.models import BulkBatch, RowState, mark_rows
from portal.envelopes import checks, images, links, sending
from portal.envelopes.checks import EnvelopeError
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

    row: Any  # a pending row's columns (``sending.PENDING_COLUMNS``)
    envelope: dict[str, Any]
    people: list[dict[str, Any]]
    invited: list[tuple[int, str]] = field(default_factory=list)  # (index in people, link)


@dataclass
class Outcome:
    """What a chunk did."""

    created: int = 0
    failed: int = 0
    emails: int = 0


def next_ids(table: Table, count: int) -> list[int]:
    """``count`` new primary keys of ``table``, for rows this transaction inserts."""
    if db.session.get_bind().dialect.name == "postgresql":
        sequence = func.pg_get_serial_sequence(table.name, "id")
        return list(
            db.session.scalars(
                select(func.nextval(sequence)).select_from(func.generate_series(1, count))
            )
        )
    # SQLite: this transaction holds the database's write lock (BEGIN IMMEDIATE).
    last = db.session.scalar(select(func.coalesce(func.max(table.c.id), 0)))
    return list(range(int(last or 0) + 1, int(last or 0) + 1 + count))


# PostgreSQL: the chunk's rows marked created in one statement (an executemany is one
# UPDATE per row there); the same columns and values as ``mark_rows``.
_MARK_CREATED = text(
    "UPDATE bulk_row SET state = :state, envelope_id = v.envelope_id, emails = v.emails,"
    " created_at = :created_at, error = NULL"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:envelopes AS integer[]),"
    " CAST(:emails AS integer[])) AS v(id, envelope_id, emails)"
    " WHERE bulk_row.id = v.id"
)


def _mark_created(changes: list[dict[str, Any]]) -> None:
    """Mark rows created with their envelope (each change as ``_write`` makes it)."""
    if db.session.get_bind().dialect.name != "postgresql" or len(changes) < 2:
        mark_rows(changes)
        return
    db.session.execute(
        _MARK_CREATED,
        {
            "state": RowState.CREATED.value,
            "created_at": changes[0]["created_at"],
            "ids": [c["row_id"] for c in changes],
            "envelopes": [c["envelope_id"] for c in changes],
            "emails": [c["emails"] for c in changes],
        },
    )


class ChunkCreator:
    """Creates the envelopes of rows of one batch, a chunk at a time (in the caller's
    transaction; the caller commits)."""

    def __init__(self, batch: BulkBatch, version: TemplateVersion, by: User) -> None:
        self.batch = batch
        self.version = version
        self.by = by
        self.settings = dict(version.settings or {})
        self.authored = version.source_kind == "authored"
        self.team_id = version.template.team_id if by.team_id is None else by.team_id
        self.held = not current_app.config.get("MAIL_SERVER")
        self.domain = parseaddr(str(current_app.config.get("MAIL_FROM") or ""))[1]
        self.domain = self.domain.rpartition("@")[2] or "localhost"
        self.title = version.template.name
        self.merge_keys = {str(k["key"]) for k in version.merge_keys or []}
        self.pages = [dict(page) for page in version.pages]
        if self.authored:  # (as ``sending._attach_pages``: its own images, made by a job)
            for page in self.pages:
                page["image_blob_id"] = None
        self.roles = {str(role["key"]): role for role in version.roles}
        shell = Envelope(routing=str(self.settings.get("routing") or "sequential"))
        shell.recipients = [
            Recipient(role=key, kind=str(r["kind"]), order=int(r["order"]), status="waiting")
            for key, r in self.roles.items()
        ]
        self.first = {r.role for r in links.active_now(shell)}  # who gets a link at once
        shell.recipients = []
        # What every row's envelope and events share, read off the ORM objects once.
        self.actor = by.audit_ref
        self.routing = str(self.settings.get("routing") or "sequential")
        self.default_auth = str(self.settings.get("default_auth") or "link")
        self.shared = {
            "template_version_id": version.id,
            "retention_policy_id": version.retention_policy_id,  # (None: the default)
            "team_id": self.team_id,
            "created_by_id": by.id,
            "title": self.title,
            "status": EnvelopeStatus.SENT.value,
            "routing": self.routing,
            "settings": self.settings,
            "page_count": version.page_count,
            "pages": self.pages,
            "images_status": "pending" if self.authored else version.images_status,
            "images_attempts": 0,
            "seal_attempts": 0,
        }
        self.options = {
            "expiry_days": self.settings.get("expiry_days"),
            "reminder_every_hours": self.settings.get("reminder_every_hours"),
            "reminder_max": self.settings.get("reminder_max"),
            "personal_message": False,
            "cc": 0,
        }
        self.version_number = version.number
        self.batch_public_id = batch.public_id
        self.document: sending.StoredDocument | None = None
        if not self.authored and version.source_blob_id and version.source_sha256:
            self.document = sending.StoredDocument(version.source_blob_id, version.source_sha256)
        # Language variants (as ``sending``: the first signer's language when the template has
        # it); an uploaded one's PDF is shared like the base's, and has its own page images.
        self.variants = {v.locale: v for v in version.variants}
        self.variant_pages = {
            v.locale: [{**page, "image_blob_id": None} for page in v.pages]
            for v in version.variants
            if not self.authored
        }

    def create(self, rows: Sequence[Any], codes: Mapping[int, Mapping[str, str]]) -> Outcome:
        """Create one envelope per row (a row whose values are refused fails, with why)."""
        now = clock.utcnow()
        expires_at = now + timedelta(days=int(self.settings.get("expiry_days") or 30))
        outcome = Outcome()
        prepared: list[Prepared] = []
        failed: list[dict[str, Any]] = []
        for row in rows:
            try:
                prepared.append(self._prepare(row, codes.get(row.number, {}), now, expires_at))
            except EnvelopeError as exc:
                failed.append({"row_id": row.id, "state": RowState.FAILED.value, "error": str(exc)})
        if failed:
            mark_rows(failed)
            outcome.failed = len(failed)
        if prepared:
            outcome.created = len(prepared)
            outcome.emails = self._write(prepared, now, expires_at)
        return outcome

    def fail(self, rows: Sequence[Any], reason: str) -> Outcome:
        """Mark rows failed without trying them (the template can no longer be sent)."""
        mark_rows([{"row_id": r.id, "state": RowState.FAILED.value, "error": reason} for r in rows])
        return Outcome(failed=len(rows))

    def _document(self, values: Mapping[str, str], locale: str) -> sending.StoredDocument:
        """The document as stored: the template's own (or its variant's) for an uploaded PDF."""
        variant = self.variants.get(locale)
        if variant is not None and not self.authored:
            if not variant.source_blob_id or not variant.source_sha256:
                raise EnvelopeError("This template has no document.")
            return sending.StoredDocument(variant.source_blob_id, variant.source_sha256)
        if variant is not None:
            return sending.store_document(self.version, values, locale)
        if not self.authored:
            if self.document is None:
                raise EnvelopeError("This template has no document.")
            return self.document
        return sending.store_document(self.version, values)

    def _person(self, person: Mapping[str, Any], codes: Mapping[str, str]) -> dict[str, Any]:
        """A recipient's row from what ``checking`` accepted (never weaker than the template)."""
        role = self.roles.get(str(person.get("role")))
        if role is None:
            raise EnvelopeError(f"The file's recipient role {person.get('role')!r} is unknown.")
        auth = checks.auth_method(role, str(person.get("auth") or ""), self.default_auth)
        code_hash = None
        if auth == "access_code":
            code = codes.get(str(role["key"]), "").strip()
            if len(code) < checks.MIN_ACCESS_CODE:
                raise EnvelopeError(
                    f"Give the {role['name']} an access code of at least "
                    f"{checks.MIN_ACCESS_CODE} characters."
                )
            code_hash = credentials.hash_password(code)
        if not person.get("name") or not person.get("email"):
            raise EnvelopeError(f"Enter the {role['name']}.")
        return {
            "role": str(role["key"]),
            "role_name": str(role["name"]),
            "kind": str(role["kind"]),
            "order": int(role["order"]),
            "name": str(person["name"]),
            "email": str(person["email"]),
            "phone": person.get("phone") or None,
            "locale": person.get("locale") if person.get("locale") in checks.LOCALES else "en",
            "auth_method": auth,
            "status": RecipientStatus.WAITING.value,
            "token_hash": None,
            "access_code_hash": code_hash,
            "sent_at": None,
            "auth_attempts": 0,
            "reminders_sent": 0,
        }

    def _prepare(
        self, row: Any, codes: Mapping[str, str], now: datetime, expires_at: datetime
    ) -> Prepared:
        values = dict(row.merge_data)  # checked with ``checks.merge_value`` when read
        missing = [key for key, value in values.items() if not value]
        if missing or set(values) != self.merge_keys:
            raise EnvelopeError(f"Fill in {', '.join(missing) or 'every merge value'}.")
        given = {str(p.get("role")): p for p in row.people}
        people = [self._person(given.get(key, {"role": key}), codes) for key in self.roles]
        ticket_id, ticket_url = checks.ticket(row.ticket_id or "", row.ticket_url or "")
        locale = checks.document_language(self.version, [(p["kind"], p["locale"]) for p in people])
        document = self._document(values, locale)
        own_pages = self.authored or locale in self.variants
        envelope = {
            **self.shared,
            "public_id": uuid.uuid4().hex,
            "merge_data": values,
            "ticket_id": ticket_id,
            "ticket_url": ticket_url,
            "document_blob_id": document.blob_id,
            "original_sha256": document.sha256,
            "images_requested_at": now if own_pages else None,
            "document_locale": locale,
            **(
                {"pages": self.variant_pages[locale], "images_status": "pending"}
                if locale in self.variant_pages
                else {}
            ),
            "created_at": now,
            "sent_at": now,
            "expires_at": expires_at,
            "search_text": search_text_for(
                self.title,
                ticket_id,
                values,
                [(p["name"], p["email"], p["phone"]) for p in people],
            ),
        }
        item = Prepared(row, envelope, people)
        for index, person in enumerate(people):
            if person["role"] in self.first:  # (as ``links.invite`` does)
                token = secrets.token_urlsafe(links.TOKEN_BYTES)
                person["token_hash"] = links.token_digest(token)
                person["status"] = RecipientStatus.SENT.value
                person["sent_at"] = now
                item.invited.append((index, links.link_for(token)))
        return item

    def _write(self, prepared: list[Prepared], now: datetime, expires_at: datetime) -> int:
        """Insert the chunk's envelopes, recipients, emails and audit events; mark the rows."""
        envelope_table = cast(Table, Envelope.__table__)
        recipient_table = cast(Table, Recipient.__table__)
        message_table = cast(Table, mail.Message.__table__)
        envelope_ids = next_ids(envelope_table, len(prepared))
        recipient_ids = iter(next_ids(recipient_table, sum(len(p.people) for p in prepared)))
        message_ids = iter(next_ids(message_table, sum(len(p.invited) for p in prepared)))
        signing_mail = SigningMail(self.by.name, self.title, expires_at)
        expires = audit.iso_time(expires_at)
        people: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        events: list[audit.Pending] = []
        row_updates = []
        for item, envelope_id in zip(prepared, envelope_ids, strict=True):
            item.envelope["id"] = envelope_id
            for person in item.people:
                person.update(id=next(recipient_ids), envelope_id=envelope_id)
                people.append(person)
            subject = ("envelope", str(envelope_id), item.envelope["title"])
            events.append(self._created_event(item, subject))
            for index, link in item.invited:
                person = item.people[index]
                messages.append(
                    self._message(signing_mail, person, link, next(message_ids), envelope_id, now)
                )
                events.append(
                    audit.Pending(
                        "envelope.link_sent",
                        self.actor,
                        subject,
                        {"recipient": person["id"], "email": mail.mask_address(person["email"])},
                    )
                )
            events.append(
                audit.Pending("envelope.sent", self.actor, subject, {"expires_at": expires})
            )
            row_updates.append(
                {
                    "row_id": item.row.id,
                    "state": RowState.CREATED.value,
                    "envelope_id": envelope_id,
                    "emails": len(item.invited),
                    "created_at": now,
                    "error": None,
                }
            )
        db.session.execute(envelope_table.insert(), [p.envelope for p in prepared])
        db.session.execute(recipient_table.insert(), people)
        inserts.insert_rows(db.session, message_table, messages)
        audit.record_many(events, created=dict.fromkeys(envelope_ids, self.team_id))
        _mark_created(row_updates)
        if not self.held:  # as ``mail.queue``: delivery is asked for after the commit
            for message in messages:
                jobs.enqueue(mail.deliver, message["id"])
        for item in prepared:
            if item.envelope["images_requested_at"] is not None:
                jobs.enqueue(images.render_envelope_pages, item.envelope["id"])
        return len(messages)

    def _created_event(self, item: Prepared, subject: tuple[str, str, str]) -> audit.Pending:
        envelope = item.envelope
        return audit.Pending(
            "envelope.created",
            self.actor,
            subject,
            {
                "template": self.title,
                "version": self.version_number,
                "sha256": envelope["original_sha256"],
                "language": envelope["document_locale"],
                "ticket": envelope["ticket_id"],
                "recipients": [
                    {
                        "role": p["role"],
                        "kind": p["kind"],
                        "email": mail.mask_address(p["email"]),
                        "auth": p["auth_method"],
                    }
                    for p in item.people
                ],
                "options": dict(self.options),
                "bulk_batch": self.batch_public_id,
                "row": item.row.number,
            },
        )

    def _message(
        self,
        signing_mail: SigningMail,
        person: Mapping[str, Any],
        link: str,
        message_id: int,
        envelope_id: int,
        now: datetime,
    ) -> dict[str, Any]:
        subject, body, html = signing_mail.render(
            person["locale"], person["kind"], person["name"], link
        )
        return {
            "id": message_id,
            "created_at": now,
            "to_address": person["email"],
            "to_name": _one_line(person["name"], 200),
            "subject": _one_line(subject, 500),
            "text_body": body,
            "html_body": html,
            "locale": person["locale"],
            "kind": "signing_request",
            "envelope_id": envelope_id,
            "recipient_id": person["id"],
            "status": mail.Status.QUEUED.value,
            "attempts": 0,
            "smtp_message_id": make_msgid(domain=self.domain),
            "last_error": mail.NO_SERVER if self.held else None,
            "last_attempt_at": None,
            "sent_at": None,
            "attachment_blob_id": None,
            "attachment_name": None,
        }
