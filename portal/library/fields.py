"""Editing a draft's form: placing fields and changing their properties, and the roles
and workflow settings they belong to. Each verb records an audit event and commits; a
``LibraryError`` means nothing was changed and says why."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from portal import audit
from portal.accounts.models import User
from portal.documents.geometry import Rect, clamp_display, display_to_pdf
from portal.extensions import db
from portal.library import rules
from portal.library.drafts import _editable
from portal.library.errors import LibraryError
from portal.library.models import (
    DEFAULT_SETTINGS,
    FIELD_DEFAULT_SIZE,
    Field,
    FieldType,
    TemplateVersion,
)
from portal.library.queries import merge_keys, page_box

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
ROLE_KINDS = ("signer", "approver", "cc")
AUTH_METHODS = ("link", "email_otp", "access_code")


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
