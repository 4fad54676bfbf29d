"""Checking what a signer submits against the template's fields, before anything is stored."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from PIL import Image, UnidentifiedImageError
from sqlalchemy import select

from portal import clock
from portal.documents.attachments import check_attachment
from portal.envelopes.models import Envelope, FieldValue, Recipient
from portal.extensions import db
from portal.library import queries, rules
from portal.library.models import Field
from portal.text import printable

MAX_ATTACHMENT = 10 * 1024 * 1024
MAX_SIGNATURE = 512 * 1024
ATTACHMENT_TYPES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"%PDF-": "application/pdf",
}


@dataclass
class Upload:
    """A file a signer attached."""

    filename: str
    data: bytes


@dataclass
class Checked:
    """What will be stored for each field, or the problems to show."""

    values: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # key -> (bytes, type)
    signature_png: bytes | None = None
    problems: dict[str, str] = field(default_factory=dict)
    refused_files: list[dict[str, Any]] = field(default_factory=list)  # for the audit trail


def my_fields(envelope: Envelope, recipient: Recipient) -> list[Field]:
    """The fields this recipient fills in, in the template's order, labelled in the
    document's language (read them, never change them: ``queries.sent_fields``)."""
    fields = queries.sent_fields(envelope.template_version_id, envelope.document_locale)
    return [f for f in fields if f.role == recipient.role]


@dataclass(frozen=True, slots=True)
class Entered:
    """A value another recipient entered, as stored (the page words it in the reader's
    language): text, "true" for a ticked box, "drawn" or the typed name for a signature."""

    label: str
    type: str
    value: str


@dataclass(frozen=True, slots=True)
class EnteredBy:
    """Everything one earlier recipient entered, in the template's order."""

    name: str
    role_name: str
    values: tuple[Entered, ...]


def entered_before(
    envelope_id: int, version_id: int, reader_id: int, locale: str | None = None
) -> list[EnteredBy]:
    """What the other recipients of an envelope entered so far (for an approver to see what
    they approve), by routing order, labelled in the document's language ``locale``."""
    order = {f.key: (i, f) for i, f in enumerate(queries.sent_fields(version_id, locale))}
    others = db.session.execute(
        select(Recipient)
        .where(Recipient.envelope_id == envelope_id, Recipient.id != reader_id)
        .order_by(Recipient.order, Recipient.id)
    ).scalars()
    stored: dict[int, list[FieldValue]] = {}
    for value in db.session.execute(
        select(FieldValue).where(
            FieldValue.envelope_id == envelope_id, FieldValue.recipient_id != reader_id
        )
    ).scalars():
        if value.value and value.field_key in order:
            stored.setdefault(value.recipient_id, []).append(value)
    out = []
    for person in others:
        mine = sorted(stored.get(person.id, []), key=lambda v: order[v.field_key][0])
        if mine:
            entered = tuple(
                Entered(order[v.field_key][1].label or v.field_key, order[v.field_key][1].type,
                        v.value or "")
                for v in mine
            )  # fmt: skip
            out.append(EnteredBy(person.name, person.role_name, entered))
    return out


def prefilled(merge_data: Mapping[str, str], item: Field) -> str | None:
    """The merge value (of the envelope's ``merge_data``) that fills a field, if it has one."""
    if item.merge_key:
        return merge_data.get(item.merge_key) or None
    return None


def is_readonly(merge_data: Mapping[str, str], item: Field) -> bool:
    return bool(item.readonly_when_prefilled and prefilled(merge_data, item))


def decode_drawing(data_url: str) -> bytes | None:
    """The PNG behind a ``data:image/png;base64,...`` drawing, or None if it is not one."""
    prefix = "data:image/png;base64,"
    if not data_url.startswith(prefix) or len(data_url) > MAX_SIGNATURE * 4 // 3 + 100:
        return None
    try:
        png = base64.b64decode(data_url[len(prefix) :], validate=True)
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG" or not (
                20 <= image.width <= 4000 and 10 <= image.height <= 2000
            ):
                return None
            # an empty canvas is fully transparent: refuse it as "no signature"
            alpha = image.convert("RGBA").getchannel("A")
            if alpha.getbbox() is None:
                return None
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        return None
    return png


def _refused(item: Field, upload: Upload, reason: str) -> dict[str, Any]:
    """What the audit trail keeps about an attachment that was refused."""
    return {
        "field": item.key,
        "file": printable(upload.filename)[:200],
        "size": len(upload.data),
        "sha256": hashlib.sha256(upload.data).hexdigest(),
        "reason": reason,
    }


def _content_problem(data: bytes, kind: str) -> tuple[str, str] | None:
    """What is wrong inside an attachment (read in the sandbox): (message, audit reason)."""
    code = check_attachment(data, kind)
    if code is None:
        return None
    if code == "active_content":
        message = _(
            "This PDF contains scripts or attached files, which we do not accept. Attach a "
            "photo, or print the document to a new PDF and attach that."
        )
    elif code == "too_complex":
        message = _("This file is too large or complex to check. Attach a smaller photo or PDF.")
    elif code == "busy":
        message = _("We could not check your file just now. Wait a moment and send it again.")
    else:
        message = _("This file could not be read. Attach a photo or a PDF that opens normally.")
    return message, {
        "active_content": "active content (scripts or attached files)",
        "too_complex": "too large or complex to check",
        "busy": "the file checks were busy",
    }.get(code, "damaged: could not be read")


def _attachment_type(data: bytes) -> str | None:
    for magic, kind in ATTACHMENT_TYPES.items():
        if data.startswith(magic):
            return kind
    return None


def check(
    envelope: Envelope,
    recipient: Recipient,
    form: dict[str, str],
    uploads: dict[str, Upload],
    adoption: str,
    typed_name: str,
    drawing: str,
) -> Checked:
    """Validate a signer's submission on the server (conditions, required, formats, files)."""
    out = Checked()
    fields = my_fields(envelope, recipient)
    needs_signature = any(f.type in ("signature", "initials") for f in fields)
    if needs_signature:
        if adoption == "drawn":
            out.signature_png = decode_drawing(drawing)
            if out.signature_png is None:
                out.problems["signature"] = _(
                    "Draw your signature in the box, or type your name instead."
                )
        elif len(" ".join(typed_name.split())) < 2:
            out.problems["signature"] = _("Type your full name to sign.")
    current: dict[str, Any] = {}
    for item in fields:
        fixed = prefilled(envelope.merge_data, item)
        if is_readonly(envelope.merge_data, item):
            current[item.key] = fixed
        elif item.type == "checkbox":
            current[item.key] = "true" if form.get(f"f-{item.key}") else ""
        else:
            current[item.key] = " ".join(str(form.get(f"f-{item.key}", fixed or "")).split())[:2000]
    for item in fields:
        if not rules.is_visible(item, current):
            continue
        if item.type in ("signature", "initials"):
            out.values[item.key] = "drawn" if adoption == "drawn" else " ".join(typed_name.split())
            continue
        if item.type == "date_signed":
            out.values[item.key] = clock.utcnow().date().isoformat()
            continue
        if item.type == "attachment":
            upload = uploads.get(item.key)
            if upload is None or not upload.data:
                if rules.is_required(item, current):
                    out.problems[item.key] = _(
                        "Attach %(label)s.", label=item.label or _("the file")
                    )
                continue
            kind = _attachment_type(upload.data)
            if len(upload.data) > MAX_ATTACHMENT:
                out.problems[item.key] = _("That file is larger than 10 MB. Choose a smaller one.")
                out.refused_files.append(_refused(item, upload, "larger than 10 MB"))
            elif kind is None:
                out.problems[item.key] = _("Attach a photo (JPEG or PNG) or a PDF.")
                out.refused_files.append(_refused(item, upload, "not a JPEG, PNG or PDF"))
            elif refusal := _content_problem(upload.data, kind):
                out.problems[item.key], reason = refusal
                out.refused_files.append(_refused(item, upload, reason))
            else:
                out.files[item.key] = (upload.data, kind)
                out.values[item.key] = printable(upload.filename)[:200]
            continue
        problem = rules.problem(item, current.get(item.key), current)
        if problem:
            out.problems[item.key] = problem
        elif current.get(item.key):
            out.values[item.key] = str(current[item.key])
    return out
