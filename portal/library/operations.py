"""Verbs of the template library. Each changes rows, records audit events, asks for jobs
and commits; a ``LibraryError`` means nothing was changed and says why."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from portal import audit, clock, jobs, storage
from portal.accounts.access import team_scope
from portal.accounts.models import Role, Team, User
from portal.documents import authoring
from portal.documents.geometry import Rect, clamp_display, display_to_pdf, pdf_to_display
from portal.documents.inspect import PageBox, PdfInfo, inspect_pdf
from portal.extensions import db
from portal.library import images, rules
from portal.library.models import (
    DEFAULT_ROLES,
    DEFAULT_SETTINGS,
    DOCUMENT_TYPE_LABELS,
    FIELD_DEFAULT_SIZE,
    Field,
    FieldType,
    Template,
    TemplateVersion,
    VersionStatus,
)

REVIEW_EVERY = timedelta(days=365)
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
MERGE_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
ROLE_KINDS = ("signer", "approver", "cc")
AUTH_METHODS = ("link", "email_otp", "access_code")
REVIEWERS = (Role.COMPLIANCE, Role.ADMIN)


STARTER_BODY = """# Title of the document

Dear {{ customer.name }},

Write the document here. Use **bold** and *italic* text, lists and tables:

| Detail | Value |
|---|---|
| Order number | {{ order.number }} |

{% if order.channel == "phone" %}
This paragraph appears only when the order was placed by phone.
{% endif %}

By signing below you confirm that the details above are correct.
"""

STARTER_MERGE_KEYS = [
    {"key": "customer.name", "label": "Customer name", "sample": "Jane Doe"},
    {"key": "order.number", "label": "Order number", "sample": "A-10042"},
    {"key": "order.channel", "label": "Order channel", "sample": "phone"},
]


class LibraryError(ValueError):
    """A change that cannot be made; the message says why and what to do."""


# ------------------------------------------------------------------ reading


def page_box(version: TemplateVersion, number: int) -> PageBox:
    """The geometry of one page of the version."""
    page = version.page(number)
    if page is None:
        raise LibraryError(f"This document has no page {number}.")
    return PageBox(
        number=number,
        x0=float(page["x0"]),
        y0=float(page["y0"]),
        x1=float(page["x1"]),
        y1=float(page["y1"]),
        rotation=int(page["rotation"]),
    )


def display_rect(field: Field) -> Rect:
    """Where the editor shows a field: display points from the page's top-left corner."""
    return pdf_to_display(
        page_box(field.version, field.page), Rect(field.x, field.y, field.w, field.h)
    )


def merge_keys(version: TemplateVersion) -> list[authoring.MergeKey]:
    """The version's declared merge keys."""
    return [
        authoring.MergeKey(
            str(k["key"]), str(k.get("label") or k["key"]), str(k.get("sample") or "")
        )
        for k in version.merge_keys or []
    ]


def latest_version(template: Template) -> TemplateVersion:
    """The newest version, whatever its status."""
    return template.versions[-1]


def approved_version(template: Template) -> TemplateVersion | None:
    """The one version that may be sent, if any."""
    if template.retired_at is not None:
        return None
    for version in reversed(template.versions):
        if version.status == VersionStatus.APPROVED.value:
            return version
    return None


def ensure_sendable(version: TemplateVersion) -> None:
    """Raise unless this exact version is the latest approved version of a live template."""
    reasons = {
        VersionStatus.DRAFT.value: "is a draft that has not been approved",
        VersionStatus.IN_REVIEW.value: "is waiting for compliance review",
        VersionStatus.SUPERSEDED.value: "has been replaced by a newer approved version",
        VersionStatus.RETIRED.value: "has been retired",
    }
    name = f"{version.template.name} v{version.number}"
    if version.template.retired_at is not None:
        raise LibraryError(f"{name} cannot be sent: the template has been retired.")
    if version.status in reasons:
        raise LibraryError(f"{name} cannot be sent: it {reasons[version.status]}.")
    if approved_version(version.template) is not version:
        raise LibraryError(f"{name} cannot be sent: it is not the current approved version.")


def sendable_templates(user: User) -> list[tuple[Template, TemplateVersion]]:
    """The templates the user's team may send now, each with its approved version."""
    stmt = team_scope(
        select(Template).where(Template.retired_at.is_(None)).order_by(Template.name),
        Template.team_id,
        user,
    )
    out = []
    for template in db.session.execute(stmt).scalars():
        version = approved_version(template)
        if version is not None:
            out.append((template, version))
    return out


def review_due(template: Template) -> bool:
    """Approved templates are reviewed every 12 months."""
    if template.last_reviewed_at is None or template.retired_at is not None:
        return False
    return clock.utcnow() - clock.as_utc(template.last_reviewed_at) >= REVIEW_EVERY


def previous_version(version: TemplateVersion) -> TemplateVersion | None:
    """The version before this one, for the "what changed" view."""
    earlier = [v for v in version.template.versions if v.number < version.number]
    return earlier[-1] if earlier else None


# ------------------------------------------------------------------ creating


def _check_document_type(document_type: str) -> None:
    if document_type not in DOCUMENT_TYPE_LABELS:
        raise LibraryError("Choose a document type from the list.")


def _new_template(name: str, document_type: str, team: Team | None, by: User) -> Template:
    _check_document_type(document_type)
    if not name.strip():
        raise LibraryError("Give the template a name.")
    template = Template(
        name=name.strip(), document_type=document_type, team=team, created_by_id=by.id
    )
    db.session.add(template)
    return template


def _pages_of(info: PdfInfo) -> list[dict[str, Any]]:
    return [
        {
            "number": p.number,
            "x0": p.x0,
            "y0": p.y0,
            "x1": p.x1,
            "y1": p.y1,
            "rotation": p.rotation,
            "image_blob_id": None,
            "width_px": None,
            "height_px": None,
        }
        for p in info.pages
    ]


def _attach_pdf(version: TemplateVersion, data: bytes, info: PdfInfo, filename: str) -> None:
    version.source_blob_id = storage.put(data, kind="template_source")
    version.source_filename = filename[:255] or None
    version.source_sha256 = info.sha256
    version.page_count = info.page_count
    version.pages = _pages_of(info)
    version.images_status = "pending"
    version.images_error = None


def create_from_pdf(
    name: str, document_type: str, team: Team | None, data: bytes, filename: str, by: User
) -> TemplateVersion:
    """A new template whose first draft is an uploaded PDF (checked before anything is stored)."""
    info = inspect_pdf(data, filename)
    template = _new_template(name, document_type, team, by)
    version = TemplateVersion(
        template=template,
        number=1,
        source_kind="pdf",
        roles=[dict(r) for r in DEFAULT_ROLES],
        settings=dict(DEFAULT_SETTINGS),
        merge_keys=[],
        created_by_id=by.id,
    )
    db.session.add(version)
    _attach_pdf(version, data, info, filename)
    db.session.flush()
    audit.record(
        "template.created",
        actor=by,
        subject=template,
        data={"name": template.name, "type": document_type, "source": "pdf"},
    )
    audit.record(
        "template.version_created",
        actor=by,
        subject=version,
        data={"number": 1, "sha256": info.sha256, "pages": info.page_count, "file": filename},
    )
    jobs.enqueue(images.render_page_images, version.id)
    db.session.commit()
    return version


def create_authored(
    name: str,
    document_type: str,
    team: Team | None,
    body: str,
    keys: Sequence[Mapping[str, Any]],
    by: User,
) -> tuple[TemplateVersion, list[authoring.Problem]]:
    """A new template written in the portal; problems in the body are returned, not raised."""
    template = _new_template(name, document_type, team, by)
    version = TemplateVersion(
        template=template,
        number=1,
        source_kind="authored",
        roles=[dict(r) for r in DEFAULT_ROLES],
        settings=dict(DEFAULT_SETTINGS),
        created_by_id=by.id,
    )
    db.session.add(version)
    db.session.flush()
    audit.record(
        "template.created",
        actor=by,
        subject=template,
        data={"name": template.name, "type": document_type, "source": "authored"},
    )
    audit.record("template.version_created", actor=by, subject=version, data={"number": 1})
    problems = _apply_body(version, body, keys)
    db.session.commit()
    return version, problems


def _apply_body(
    version: TemplateVersion, body: str, keys: Sequence[Mapping[str, Any]]
) -> list[authoring.Problem]:
    version.authored_body = body
    version.merge_keys = _clean_merge_keys(keys)
    known = merge_keys(version)
    problems = authoring.check_body(body, known)
    if problems:
        return problems
    pdf = authoring.render_pdf(
        body, authoring.sample_values(known), known, title=version.template.name
    )
    info = inspect_pdf(pdf, "authored.pdf")
    if info.sha256 != version.source_sha256:
        _attach_pdf(version, pdf, info, f"{version.template.name}.pdf")
        for field in version.fields:
            field.page = min(field.page, info.page_count)
        jobs.enqueue(images.render_page_images, version.id)
    return []


def _clean_merge_keys(keys: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for entry in keys:
        key = str(entry.get("key") or "").strip()
        if not key:
            continue
        if not MERGE_KEY_PATTERN.match(key):
            raise LibraryError(
                f"Merge field {key!r} must be lower-case words joined by dots, like customer.name."
            )
        if key in seen:
            raise LibraryError(f"Merge field {key} is listed twice.")
        seen.add(key)
        out.append(
            {
                "key": key,
                "label": str(entry.get("label") or key).strip()[:120],
                "sample": str(entry.get("sample") or "").strip()[:200],
            }
        )
    return out


# ------------------------------------------------------------------ editing drafts


def _editable(version: TemplateVersion) -> None:
    if not version.editable:
        raise LibraryError(
            f"Version {version.number} is {version.status_enum.label.lower()} and can no longer "
            "be changed. Start a new draft to make changes."
        )


def update_body(
    version: TemplateVersion, body: str, keys: Sequence[Mapping[str, Any]], by: User
) -> list[authoring.Problem]:
    """Save an authored document's text and merge fields; re-render it when it is valid."""
    _editable(version)
    if version.source_kind != "authored":
        raise LibraryError("This template is an uploaded PDF; upload a new file instead.")
    problems = _apply_body(version, body, keys)
    audit.record(
        "template.body_saved",
        actor=by,
        subject=version,
        data={"problems": len(problems), "sha256": version.source_sha256},
    )
    db.session.commit()
    return problems


def replace_pdf(version: TemplateVersion, data: bytes, filename: str, by: User) -> None:
    """Upload a new PDF into a draft; fields stay, clamped to the new pages."""
    _editable(version)
    info = inspect_pdf(data, filename)
    _attach_pdf(version, data, info, filename)
    for field in version.fields:
        field.page = min(field.page, info.page_count)
    audit.record(
        "template.source_replaced",
        actor=by,
        subject=version,
        data={"sha256": info.sha256, "pages": info.page_count, "file": filename},
    )
    jobs.enqueue(images.render_page_images, version.id)
    db.session.commit()


def _role_keys(version: TemplateVersion) -> list[str]:
    return [str(r["key"]) for r in version.roles or []]


def _next_key(version: TemplateVersion, field_type: str) -> str:
    used = {f.key for f in version.fields}
    n = 1
    while f"{field_type}_{n}" in used:
        n += 1
    return f"{field_type}_{n}"


def add_field(
    version: TemplateVersion,
    field_type: str,
    page: int,
    at: Rect | None,
    role: str | None,
    by: User,
) -> Field:
    """Place a new field; ``at`` is in display points (top-left origin) of that page."""
    _editable(version)
    if field_type not in {t.value for t in FieldType}:
        raise LibraryError("Choose a field type from the list.")
    box = page_box(version, page)
    width, height = FIELD_DEFAULT_SIZE[field_type]
    rect = at or Rect(box.display_width / 2 - width / 2, box.display_height * 0.75, width, height)
    rect = clamp_display(box, Rect(rect.x, rect.y, rect.w or width, rect.h or height))
    pdf = display_to_pdf(box, rect)
    roles = _role_keys(version)
    field = Field(
        key=_next_key(version, field_type),
        type=field_type,
        role=role if role in roles else roles[0],
        page=page,
        x=pdf.x,
        y=pdf.y,
        w=pdf.w,
        h=pdf.h,
        required=field_type not in ("checkbox", "attachment"),
        label=FieldType(field_type).label,
        options=["Option 1", "Option 2"] if field_type in ("radio", "select") else [],
        validation={},
        position=max((f.position for f in version.fields), default=0) + 1,
    )
    version.fields.append(field)
    db.session.flush()
    audit.record(
        "template.field_added",
        actor=by,
        subject=version,
        data={"key": field.key, "type": field_type, "page": page},
    )
    db.session.commit()
    return field


def move_field(field: Field, page: int, at: Rect, by: User) -> Field:
    """Move or resize a field; ``at`` is in display points of the page."""
    version = field.version
    _editable(version)
    box = page_box(version, page)
    pdf = display_to_pdf(box, clamp_display(box, at))
    field.page, field.x, field.y, field.w, field.h = page, pdf.x, pdf.y, pdf.w, pdf.h
    audit.record(
        "template.field_moved",
        actor=by,
        subject=version,
        data={
            "key": field.key,
            "page": page,
            "rect": [round(v, 2) for v in (pdf.x, pdf.y, pdf.w, pdf.h)],
        },
    )
    db.session.commit()
    return field


def update_field(field: Field, changes: Mapping[str, Any], by: User) -> Field:
    """Change a field's properties (everything but its place)."""
    version = field.version
    _editable(version)
    key = str(changes.get("key", field.key)).strip()
    if not KEY_PATTERN.match(key):
        raise LibraryError(
            "A field key is lower-case letters, digits and underscores, like refund_iban."
        )
    if key != field.key and any(f.key == key for f in version.fields if f is not field):
        raise LibraryError(f"Another field is already called {key}.")
    role = str(changes.get("role", field.role))
    if role not in _role_keys(version):
        raise LibraryError("Choose one of the template's roles.")
    merge_key = (changes.get("merge_key", field.merge_key) or "").strip() or None
    if merge_key and merge_key not in {k.key for k in merge_keys(version)}:
        raise LibraryError(f"{merge_key} is not one of this template's merge fields; add it first.")
    options = [
        str(o).strip() for o in changes.get("options", field.options) or [] if str(o).strip()
    ]
    if field.type in ("radio", "select") and len(options) < 2:
        raise LibraryError("A choice needs at least two options.")
    validation = {
        k: v
        for k, v in dict(changes.get("validation", field.validation) or {}).items()
        if v not in (None, "")
    }
    if validation.get("pattern"):
        bad = rules.pattern_problem(str(validation["pattern"]))
        if bad:
            raise LibraryError(bad)
    condition = changes.get("condition", field.condition) or None
    if condition:
        target = str(condition.get("field") or "")
        if not target:
            condition = None
        elif target == key or target not in {f.key for f in version.fields}:
            raise LibraryError("A condition must refer to another field of this template.")
    before = field.snapshot()
    field.key = key
    field.role = role
    field.required = bool(changes.get("required", field.required))
    field.label = str(changes.get("label", field.label)).strip()[:200]
    field.merge_key = merge_key
    field.readonly_when_prefilled = bool(
        changes.get("readonly_when_prefilled", field.readonly_when_prefilled)
    ) and bool(merge_key)
    field.options = options
    field.validation = validation
    field.condition = condition
    after = field.snapshot()
    changed = {k: after[k] for k in after if before[k] != after[k]}
    audit.record(
        "template.field_changed",
        actor=by,
        subject=version,
        data={"key": before["key"], "changes": changed},
    )
    db.session.commit()
    return field


def delete_field(field: Field, by: User) -> None:
    """Remove a field from a draft; conditions that pointed at it are dropped."""
    version = field.version
    _editable(version)
    for other in version.fields:
        if other is not field and other.condition and other.condition.get("field") == field.key:
            other.condition = None
    version.fields.remove(field)
    audit.record("template.field_removed", actor=by, subject=version, data={"key": field.key})
    db.session.commit()


def set_roles(version: TemplateVersion, roles: Sequence[Mapping[str, Any]], by: User) -> None:
    """Replace the template's roles (each a signer, approver or cc with a routing order)."""
    _editable(version)
    clean = []
    seen: set[str] = set()
    for entry in roles:
        name = str(entry.get("name") or "").strip()
        if not name:
            continue
        key = str(entry.get("key") or "").strip() or re.sub(r"[^a-z0-9]+", "_", name.lower()).strip(
            "_"
        )
        if not KEY_PATTERN.match(key) or key in seen:
            raise LibraryError(f"Role names must be different from each other ({name}).")
        kind = str(entry.get("kind") or "signer")
        if kind not in ROLE_KINDS:
            raise LibraryError("A role is a signer, an approver or a cc.")
        try:
            order = int(entry.get("order") or 1)
        except (TypeError, ValueError) as exc:
            raise LibraryError(f"The order of {name} must be a number.") from exc
        seen.add(key)
        clean.append({"key": key, "name": name[:80], "kind": kind, "order": max(1, min(order, 20))})
    if not any(r["kind"] == "signer" for r in clean):
        raise LibraryError("A template needs at least one signer role.")
    orphans = sorted({f.role for f in version.fields} - seen)
    if orphans:
        raise LibraryError(
            f"Fields still belong to {', '.join(orphans)}; "
            "move or delete them before removing the role."
        )
    before = version.roles
    version.roles = sorted(clean, key=lambda r: (r["order"], r["name"]))
    audit.record(
        "template.roles_changed",
        actor=by,
        subject=version,
        data={"from": before, "to": version.roles},
    )
    db.session.commit()


def set_settings(version: TemplateVersion, settings: Mapping[str, Any], by: User) -> None:
    """Change the workflow settings (reminders, expiry, routing, folder, attachments, auth)."""
    _editable(version)
    clean = dict(DEFAULT_SETTINGS)
    clean.update({k: v for k, v in settings.items() if k in DEFAULT_SETTINGS})
    try:
        clean["reminder_every_hours"] = int(clean["reminder_every_hours"])
        clean["reminder_max"] = int(clean["reminder_max"])
        clean["expiry_days"] = int(clean["expiry_days"])
    except (TypeError, ValueError) as exc:
        raise LibraryError("Reminders and expiry are whole numbers.") from exc
    if not 1 <= clean["expiry_days"] <= 90:
        raise LibraryError("Expiry is between 1 and 90 days.")
    if not 1 <= clean["reminder_every_hours"] <= 720:
        raise LibraryError("Reminders are sent every 1 to 720 hours.")
    if not 0 <= clean["reminder_max"] <= 10:
        raise LibraryError("Send at most 10 reminders.")
    if clean["routing"] not in ("sequential", "parallel"):
        raise LibraryError("Signing order is sequential or parallel.")
    if clean["attachments"] not in ("optional", "mandatory"):
        raise LibraryError("Attachments are optional or mandatory.")
    if clean["default_auth"] not in AUTH_METHODS:
        raise LibraryError("Choose how signers prove who they are.")
    clean["folder"] = str(clean["folder"]).strip()[:120] or DEFAULT_SETTINGS["folder"]
    before = dict(version.settings or {})
    version.settings = clean
    changed = {k: [before.get(k), v] for k, v in clean.items() if before.get(k) != v}
    audit.record("template.settings_changed", actor=by, subject=version, data={"changes": changed})
    db.session.commit()


# ------------------------------------------------------------------ lifecycle


def submit(version: TemplateVersion, by: User) -> None:
    """Freeze a draft and send it to compliance for review."""
    _editable(version)
    if not version.source_blob_id:
        raise LibraryError("Fix the document's problems before submitting it.")
    signers = [r for r in version.roles or [] if r["kind"] == "signer"]
    for role in signers:
        if not any(f.role == role["key"] and f.type == "signature" for f in version.fields):
            raise LibraryError(f"Place a signature field for {role['name']} before submitting.")
    version.status = VersionStatus.IN_REVIEW.value
    version.submitted_by_id = by.id
    version.submitted_at = clock.utcnow()
    audit.record(
        "template.submitted",
        actor=by,
        subject=version,
        data={"sha256": version.source_sha256, "fields": len(version.fields)},
    )
    db.session.commit()


def _reviewer(version: TemplateVersion, by: User) -> None:
    if not by.has_role(*REVIEWERS):
        raise LibraryError("Only compliance or an admin can review templates.")
    if version.status != VersionStatus.IN_REVIEW.value:
        raise LibraryError("Only a version in review can be approved or rejected.")
    if version.submitted_by_id == by.id:
        raise LibraryError("You submitted this version; someone else in compliance must review it.")


def approve(version: TemplateVersion, by: User, comment: str = "") -> None:
    """Approve a version in review; it becomes the one agents send."""
    _reviewer(version, by)
    for older in version.template.versions:
        if older is not version and older.status == VersionStatus.APPROVED.value:
            older.status = VersionStatus.SUPERSEDED.value
    version.status = VersionStatus.APPROVED.value
    version.reviewed_by_id = by.id
    version.reviewed_at = clock.utcnow()
    version.review_comment = comment.strip() or None
    version.template.last_reviewed_at = version.reviewed_at
    audit.record(
        "template.approved",
        actor=by,
        subject=version,
        data={"sha256": version.source_sha256, "comment": version.review_comment},
    )
    db.session.commit()


def reject(version: TemplateVersion, by: User, comment: str) -> None:
    """Send a version back to draft with the reviewer's reasons."""
    _reviewer(version, by)
    if not comment.strip():
        raise LibraryError("Say what needs to change, so the author can fix it.")
    version.status = VersionStatus.DRAFT.value
    version.reviewed_by_id = by.id
    version.reviewed_at = clock.utcnow()
    version.review_comment = comment.strip()
    audit.record(
        "template.rejected", actor=by, subject=version, data={"comment": version.review_comment}
    )
    db.session.commit()


def confirm_review(template: Template, by: User) -> None:
    """Record this year's review of an approved template without changing it."""
    if not by.has_role(*REVIEWERS):
        raise LibraryError("Only compliance or an admin can review templates.")
    if approved_version(template) is None:
        raise LibraryError("Only a template with an approved version can be reviewed.")
    template.last_reviewed_at = clock.utcnow()
    audit.record("template.review_confirmed", actor=by, subject=template)
    db.session.commit()


def new_draft(template: Template, by: User) -> TemplateVersion:
    """Start the next version from the latest one (or return the open draft)."""
    latest = latest_version(template)
    if latest.status in (VersionStatus.DRAFT.value, VersionStatus.IN_REVIEW.value):
        return latest
    if template.retired_at is not None:
        raise LibraryError("This template has been retired.")
    draft = TemplateVersion(
        template=template,
        number=latest.number + 1,
        source_kind=latest.source_kind,
        source_blob_id=latest.source_blob_id,
        source_filename=latest.source_filename,
        source_sha256=latest.source_sha256,
        page_count=latest.page_count,
        pages=[dict(p) for p in latest.pages],
        authored_body=latest.authored_body,
        merge_keys=[dict(k) for k in latest.merge_keys],
        roles=[dict(r) for r in latest.roles],
        settings=dict(latest.settings),
        images_status=latest.images_status,
        created_by_id=by.id,
    )
    db.session.add(draft)
    for field in latest.fields:
        draft.fields.append(Field(**field.snapshot()))
    db.session.flush()
    audit.record(
        "template.version_created",
        actor=by,
        subject=draft,
        data={"number": draft.number, "from_version": latest.number},
    )
    db.session.commit()
    return draft


def retire(template: Template, by: User, reason: str) -> None:
    """Stop a template from being sent; its versions stay for the envelopes that used them."""
    if not by.has_role(*REVIEWERS):
        raise LibraryError("Only compliance or an admin can retire templates.")
    if template.retired_at is not None:
        return
    if not reason.strip():
        raise LibraryError("Say why the template is retired.")
    template.retired_at = clock.utcnow()
    for version in template.versions:
        if version.status in (
            VersionStatus.APPROVED.value,
            VersionStatus.IN_REVIEW.value,
            VersionStatus.DRAFT.value,
        ):
            version.status = VersionStatus.RETIRED.value
    audit.record("template.retired", actor=by, subject=template, data={"reason": reason.strip()})
    db.session.commit()


def count_templates() -> int:
    """How many templates exist (for the console)."""
    return int(db.session.execute(select(func.count(Template.id))).scalar_one())
