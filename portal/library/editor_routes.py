"""The page-and-field editor of a template version: its fragment, and placing, moving,
changing and removing fields. Registers on the library blueprint."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from portal import web
from portal.accounts.access import roles_required
from portal.documents.geometry import Rect
from portal.extensions import db
from portal.library import diff as version_diff
from portal.library import operations as ops
from portal.library import variants
from portal.library.blueprint import (
    AUTHORS,
    _author_version,
    _field_or_404,
    _is_author,
    _version_or_404,
    bp,
)
from portal.library.forms import (
    AddFieldForm,
    BodyForm,
    FieldPropertiesForm,
    PlaceForm,
    RetireForm,
    ReviewForm,
    SettingsForm,
    UploadForm,
)
from portal.library.models import Field, FieldType, TemplateVersion, VersionStatus


def _property_form(
    version: TemplateVersion, field: Field, formdata: Any = None
) -> FieldPropertiesForm:
    validation = field.validation or {}
    condition = field.condition or {}
    form = FieldPropertiesForm(
        formdata=formdata,
        prefix=f"f{field.id}",
        key=field.key,
        label=field.label,
        role=field.role,
        required=field.required,
        merge_key=field.merge_key or "",
        readonly_when_prefilled=field.readonly_when_prefilled,
        options="\n".join(field.options or []),
        pattern=validation.get("pattern", ""),
        pattern_hint=validation.get("pattern_hint", ""),
        min=validation.get("min", ""),
        max=validation.get("max", ""),
        min_length=validation.get("min_length"),
        max_length=validation.get("max_length"),
        condition_field=condition.get("field", ""),
        condition_value=condition.get("equals", ""),
    )
    form.role.choices = [SelectChoice(r["key"], r["name"]) for r in version.roles]
    form.merge_key.choices = [
        SelectChoice("", "None"),
        *[SelectChoice(k["key"], k["label"]) for k in version.merge_keys],
    ]
    form.condition_field.choices = [
        SelectChoice("", "Always shown"),
        *[SelectChoice(f.key, f.label or f.key) for f in version.fields if f.id != field.id],
    ]
    return form


def _place_form(field: Field, formdata: Any = None) -> PlaceForm:
    rect = ops.display_rect(field)
    return PlaceForm(
        formdata=formdata,
        prefix=f"p{field.id}",
        page=field.page,
        x=round(rect.x, 1),
        y=round(rect.y, 1),
        w=round(rect.w, 1),
        h=round(rect.h, 1),
    )


def _variant_place_forms(version: TemplateVersion) -> dict[str, dict[str, PlaceForm]]:
    """The placement form of each field on each uploaded language (for the version page)."""
    out: dict[str, dict[str, PlaceForm]] = {}
    if version.source_kind != "pdf":
        return out
    for variant in version.variants:
        forms: dict[str, PlaceForm] = {}
        for field in version.fields:
            place = variants.display_place(variant, field.key)
            page, rect = place if place else (1, Rect(0, 0, field.w, field.h))
            forms[field.key] = PlaceForm(
                formdata=None,
                prefix=f"v{variant.locale}-{field.key}",
                page=page,
                x=round(rect.x, 1),
                y=round(rect.y, 1),
                w=round(rect.w, 1),
                h=round(rect.h, 1),
            )
        out[variant.locale] = forms
    return out


def _editor_context(version: TemplateVersion, **overrides: Any) -> dict[str, Any]:
    previous = ops.previous_version(version)
    add_form = AddFieldForm()
    add_form.role.choices = [SelectChoice(r["key"], r["name"]) for r in version.roles]
    settings_form = SettingsForm(data=version.settings)
    body_form = BodyForm(
        body=version.authored_body or "",
        merge_keys="\n".join(
            f"{k['key']} | {k['label']} | {k['sample']}" for k in version.merge_keys or []
        ),
    )
    pages = []
    for page in version.pages or []:
        box = ops.page_box(version, int(page["number"]))
        pages.append(
            {
                "number": box.number,
                "width": round(box.display_width, 2),
                "height": round(box.display_height, 2),
                "ready": bool(page.get("image_blob_id")),
            }
        )
    context: dict[str, Any] = {
        "version": version,
        "pages": pages,
        "editable": version.editable and _is_author(),
        "selected": None,
        "template": version.template,
        "is_author": _is_author(),
        "can_review": current_user.has_role(*AUTHORS)
        and version.status == VersionStatus.IN_REVIEW.value
        and version.submitted_by_id != current_user.id,
        "approved": ops.approved_version(version.template),
        "previous": previous,
        "diff": version_diff.compare(previous, version) if previous else None,
        "fields": [
            {
                "field": f,
                "rect": ops.display_rect(f),
                "props": _property_form(version, f),
                "place": _place_form(f),
            }
            for f in version.fields
        ],
        "add_form": add_form,
        "settings_form": settings_form,
        "body_form": body_form,
        "upload_form": UploadForm(),
        "review_form": ReviewForm(),
        "retire_form": RetireForm(),
        "problems": [],
        "field_types": FieldType,
        "review_due": ops.review_due(version.template),
        "languages": variants.states(version),
        "variant_places": _variant_place_forms(version),
        "variant_errors": {},
        "variant_bodies": {},
    }
    context.update(overrides)
    return context


@bp.route("/versions/<int:version_id>/editor")
@roles_required()
def editor(version_id: int) -> str:
    """The pages-and-fields fragment (polled while page images are being rendered)."""
    version = _version_or_404(version_id)
    return render_template("library/_editor.html", **_editor_context(version))


@bp.route("/versions/<int:version_id>/images/retry", methods=["POST"])
@roles_required(*AUTHORS)
def retry_images(version_id: int) -> Any:
    """Ask again for page images that could not be made."""
    version = _version_or_404(version_id)
    try:
        ops.retry_page_images(version, by=current_user)
    except ops.LibraryError as exc:
        return _fail(version, str(exc))
    db.session.refresh(version)
    return _fields_response(version)


def _fields_response(version: TemplateVersion, status: int = 200, **extra: Any) -> Any:
    """After a field change: the editor fragment for htmx, else back to the page."""
    if web.wants_fragment():
        return render_template("library/_editor.html", **_editor_context(version, **extra)), status
    return redirect(url_for("library.version", version_id=version.id) + "#editor")


def _fail(version: TemplateVersion, message: str, **extra: Any) -> Any:
    db.session.rollback()
    flash(message, "error")
    return _fields_response(version, 422, **extra)


@bp.route("/versions/<int:version_id>/fields", methods=["POST"])
@roles_required(*AUTHORS)
def add_field(version_id: int) -> Any:
    """Place a new field (at the tapped point, or centred low on the page)."""
    version = _author_version(version_id)
    form = AddFieldForm()
    form.role.choices = [SelectChoice(r["key"], r["name"]) for r in version.roles]
    if not form.validate_on_submit():
        return _fail(version, "Choose a field type, a page and who fills it in.")
    at = None
    if form.x.data is not None and form.y.data is not None:
        at = Rect(form.x.data, form.y.data, form.w.data or 0, form.h.data or 0)
    try:
        field = ops.add_field(
            version,
            form.type.data or "text",
            form.page.data or 1,
            at,
            form.role.data,
            by=current_user,
        )
    except ops.LibraryError as exc:
        return _fail(version, str(exc))
    return _fields_response(version, selected=field.id)


@bp.route("/versions/<int:version_id>/fields/<int:field_id>/place", methods=["POST"])
@roles_required(*AUTHORS)
def place_field(version_id: int, field_id: int) -> Any:
    """Move or resize a field (display points from the page's top-left corner)."""
    version = _author_version(version_id)
    field = _field_or_404(version, field_id)
    form = _place_form(field, formdata=request.form)
    if not form.validate_on_submit():
        return _fail(
            version, "Enter the page and a position inside it, in points.", selected=field.id
        )
    try:
        ops.move_field(
            field,
            form.page.data or field.page,
            Rect(form.x.data or 0, form.y.data or 0, form.w.data or 0, form.h.data or 0),
            by=current_user,
        )
    except ops.LibraryError as exc:
        return _fail(version, str(exc), selected=field.id)
    return _fields_response(version, selected=field.id)


def _number_or_text(value: str | None) -> Any:
    text = (value or "").strip()
    if not text:
        return None
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text


@bp.route("/versions/<int:version_id>/fields/<int:field_id>", methods=["POST"])
@roles_required(*AUTHORS)
def update_field(version_id: int, field_id: int) -> Any:
    """Change a field's properties."""
    version = _author_version(version_id)
    field = _field_or_404(version, field_id)
    form = _property_form(version, field, formdata=request.form)
    if not form.validate_on_submit():
        return _fail(version, "Check the field's properties.", selected=field.id)
    condition = None
    if form.condition_field.data:
        condition = {"field": form.condition_field.data, "equals": form.condition_value.data or ""}
    changes = {
        "key": form.key.data,
        "label": form.label.data,
        "role": form.role.data,
        "required": form.required.data,
        "merge_key": form.merge_key.data,
        "readonly_when_prefilled": form.readonly_when_prefilled.data,
        "options": (form.options.data or "").splitlines(),
        "validation": {
            "pattern": (form.pattern.data or "").strip(),
            "pattern_hint": (form.pattern_hint.data or "").strip(),
            "min": _number_or_text(form.min.data),
            "max": _number_or_text(form.max.data),
            "min_length": form.min_length.data,
            "max_length": form.max_length.data,
        },
        "condition": condition,
    }
    try:
        ops.update_field(field, changes, by=current_user)
    except ops.LibraryError as exc:
        return _fail(version, str(exc), selected=field.id)
    flash(f"Saved {field.label or field.key}.", "success")
    return _fields_response(version, selected=field.id)


@bp.route("/versions/<int:version_id>/fields/<int:field_id>/delete", methods=["POST"])
@roles_required(*AUTHORS)
def delete_field(version_id: int, field_id: int) -> Any:
    """Remove a field."""
    version = _author_version(version_id)
    field = _field_or_404(version, field_id)
    try:
        ops.delete_field(field, by=current_user)
    except ops.LibraryError as exc:
        return _fail(version, str(exc))
    return _fields_response(version)
