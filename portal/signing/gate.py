"""Who this browser session signs for, and whether they may see the document now.

The document page, its page images and its PDF all pass through ``document_gate``: the
recipient of this session for this envelope only (else 404), read in one plain query, and
what stands between them and the document (the envelope or the recipient stopped, the
disclosure, the code). The first time the document itself is shown is recorded once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from flask import abort, session
from sqlalchemy import bindparam, select
from sqlalchemy.orm import contains_eager, load_only

from portal.accounts import contacts
from portal.accounts.models import Team, User
from portal.envelopes.models import FINISHED, Envelope, Recipient
from portal.extensions import db, read_row
from portal.signing import access, operations

SIGNER = "signer"  # the session key: {"rid": recipient id, "th": the link's hash}

# The columns of the recipient the signer's pages read (any other one loads when first used).
_RECIPIENT_COLUMNS = load_only(
    Recipient.id, Recipient.envelope_id, Recipient.role, Recipient.kind, Recipient.name,
    Recipient.email, Recipient.locale, Recipient.auth_method, Recipient.status,
    Recipient.token_hash, Recipient.consent_version, Recipient.authenticated_at,
    Recipient.locked_at, Recipient.auth_attempts,
)  # fmt: skip
_WHERE = (Recipient.id == bindparam("rid"), Envelope.public_id == bindparam("public_id"))

# The signer's actions: the recipient with its envelope. (Statements are built once:
# building an ORM statement costs more than running these.)
_SIGNER_QUERY = (
    select(Recipient)
    .join(Recipient.envelope)
    .where(*_WHERE)
    .options(
        _RECIPIENT_COLUMNS,
        contains_eager(Recipient.envelope).load_only(
            Envelope.id, Envelope.public_id, Envelope.template_version_id,
            Envelope.created_by_id, Envelope.title, Envelope.status, Envelope.merge_data,
            Envelope.pages, Envelope.expires_at, Envelope.void_reason, Envelope.document_blob_id,
        ),
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SignerView:
    """The recipient as the gate reads it: this request's values, not the ORM object.

    The document page is the one a signer spends their time on, and loading an entity costs
    more than the rest of its query. Steps that change the recipient, or need more of it,
    load the recipient itself (``loaded``).
    """

    id: int
    role: str
    kind: str
    name: str
    locale: str
    auth_method: str
    status: str
    token_hash: str | None
    consent_version: str | None
    authenticated_at: datetime | None
    locked_at: datetime | None
    document_viewed_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, slots=True)
class EnvelopeView:
    """The envelope as the gate reads it (see ``SignerView``)."""

    id: int
    public_id: str
    template_version_id: int
    title: str
    status: str
    expires_at: datetime | None
    merge_data: dict[str, str]
    pages: list[dict[str, Any]]
    document_blob_id: str
    document_locale: str  # the language of the document (its variant's field placement)


def _columns(table: Any, view: type) -> list[Any]:
    return [table.c[f.name] for f in fields(view)]


# The gate's one query: the views' columns and the sender's name.
_RECIPIENTS, _ENVELOPES, _USERS = Recipient.__table__, Envelope.__table__, User.__table__
_TEAMS = Team.__table__
_PAGE_QUERY = (
    select(
        *_columns(_RECIPIENTS, SignerView), *_columns(_ENVELOPES, EnvelopeView), contacts.SHOWN_NAME
    )
    .select_from(
        _RECIPIENTS.join(_ENVELOPES, _RECIPIENTS.c.envelope_id == _ENVELOPES.c.id)
        .join(_USERS, _USERS.c.id == _ENVELOPES.c.created_by_id)
        .outerjoin(_TEAMS, _TEAMS.c.id == _USERS.c.team_id)  # an API key's: its team's name
    )
    .where(_RECIPIENTS.c.id == bindparam("rid"), _ENVELOPES.c.public_id == bindparam("public_id"))
)
_SPLIT = len(fields(SignerView))

_R = TypeVar("_R", Recipient, SignerView)


def _held() -> dict[str, Any]:
    """Which recipient this browser session is for: ``rid`` and the link's hash ``th``."""
    held = session.get(SIGNER) or {}
    return {"rid": int(held.get("rid", 0) or 0), "th": held.get("th")}


def _checked(recipient: _R | None, held: dict[str, Any]) -> _R:
    if recipient is None:
        abort(404)
    if recipient.token_hash != held["th"] and not recipient.finished:
        session.pop(SIGNER, None)  # the link was replaced: this session dies with it
        abort(404)
    return recipient


def signer(public_id: str) -> Recipient:
    """The recipient of this browser session, for this envelope only; else 404."""
    held = _held()
    recipient = db.session.execute(
        _SIGNER_QUERY, {"rid": held["rid"], "public_id": public_id}
    ).scalar_one_or_none()
    return _checked(recipient, held)


def loaded(view: SignerView) -> Recipient:
    """The recipient itself, for steps that need more than the gate's view."""
    recipient = db.session.get(Recipient, view.id)
    if recipient is None:
        abort(404)
    return recipient


@dataclass(frozen=True, slots=True)
class Gate:
    """What the gate found: the recipient and envelope as read, the sender's name, and
    ``operations.next_step`` (None: the document may be shown)."""

    recipient: SignerView
    envelope: EnvelopeView
    sender: str
    step: str | None


def document_gate(public_id: str, via: str) -> Gate:
    """The one gate before the document page, a page image (``via`` "image") or the PDF
    ("pdf"): as ``signer``, plus whatever stands in the way of the document.

    Past the gate the first view is recorded, and every PDF, under the locks
    (``operations.show_document``); later views of the page or its images only read.
    """
    held = _held()
    row = read_row(_PAGE_QUERY, {"rid": held["rid"], "public_id": public_id})
    if row is None:
        abort(404)
    recipient = _checked(SignerView(*row[:_SPLIT]), held)
    envelope = EnvelopeView(*row[_SPLIT:-1])
    step = operations.next_step(recipient, access.blocked_state(recipient, envelope))
    if step is None and (via == "pdf" or recipient.document_viewed_at is None):
        step = operations.show_document(recipient.id, recipient.token_hash, via)
    return Gate(recipient, envelope, str(row[-1]), step)
