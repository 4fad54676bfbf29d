"""Template library pages: list, create, edit drafts, place fields, review, retire."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import or_, select
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response as WerkzeugResponse
from wtforms import SelectChoice

from portal import storage, web
from portal.accounts.access import can_see_team, roles_required, team_scope
from portal.accounts.models import Role, Team
from portal.documents.geometry import Rect
from portal.documents.inspect import PdfProblem
from portal.extensions import db
from portal.library import diff as version_diff
from portal.library import operations as ops
from portal.library.forms import (
    AddFieldForm,
    BodyForm,
    FieldPropertiesForm,
    NewTemplateForm,
    PlaceForm,
    RetireForm,
    ReviewForm,
    SettingsForm,
    UploadForm,
)
from portal.library.models import (
    DOCUMENT_TYPE_LABELS,
    Field,
    FieldType,
    Template,
    TemplateVersion,
    VersionStatus,
)

bp = Blueprint("library", __name__, url_prefix="/library")

AUTHORS = (Role.COMPLIANCE, Role.ADMIN)
STATUS_FILTERS = {
    "": "Any status",
    "approved": "Approved",
    "draft": "Draft",
    "in_review": "In review",
    "review_due": "Annual review due",
    "retired": "Retired",
}


def _is_author() -> bool:
    return bool(current_user.has_role(*AUTHORS))


def _template_or_404(template_id: int) -> Template:
    template = db.session.get(Template, template_id)
    if template is None or not can_see_team(current_user, template.team_id):
        abort(404)
    if not _is_author() and ops.approved_version(template) is None:
        abort(404)
    return template


def _version_or_404(version_id: int) -> TemplateVersion:
    version = db.session.get(TemplateVersion, version_id)
    if version is None:
        abort(404)
    template = _template_or_404(version.template_id)
    if not _is_author() and ops.approved_version(template) is not version:
        abort(404)
    return version


def _field_or_404(version: TemplateVersion, field_id: int) -> Field:
    for field in version.fields:
        if field.id == field_id:
            return field
    abort(404)


def _summary(template: Template) -> dict[str, Any]:
    latest = ops.latest_version(template)
    approved = ops.approved_version(template)
    return {
        "template": template,
        "latest": latest,
        "approved": approved,
        "review_due": ops.review_due(template),
    }


def _matches(row: dict[str, Any], status: str) -> bool:
    template, latest, approved = row["template"], row["latest"], row["approved"]
    if status == "approved":
        return approved is not None
    if status == "retired":
        return template.retired_at is not None
    if status == "review_due":
        return bool(row["review_due"])
    if status in ("draft", "in_review"):
        return latest.status == status
    return True


def _search(query: str, document_type: str, status: str) -> list[dict[str, Any]]:
    stmt = select(Template).order_by(Template.name).limit(500)
    stmt = team_scope(stmt, Template.team_id, current_user)
    if query:
        like = f"%{query.strip()}%"
        stmt = stmt.where(or_(Template.name.ilike(like), Template.document_type.ilike(like)))
    if document_type in DOCUMENT_TYPE_LABELS:
        stmt = stmt.where(Template.document_type == document_type)
    rows = [_summary(t) for t in db.session.execute(stmt).scalars()]
    if not _is_author():
        rows = [r for r in rows if r["approved"] is not None]
    return [r for r in rows if _matches(r, status)]


@bp.route("/")
@roles_required()
def index() -> str:
    """The library, with active search by name, type and status."""
    query = request.args.get("q", "")
    document_type = request.args.get("type", "")
    status = request.args.get("status", "")
    return web.page(
        "library/index.html",
        "library/_rows.html",
        rows=_search(query, document_type, status),
        q=query,
        type=document_type,
        status=status,
        types=DOCUMENT_TYPE_LABELS,
        statuses=STATUS_FILTERS,
        is_author=_is_author(),
    )


def _read(upload: FileStorage) -> bytes:
    """The uploaded bytes; the spooled temporary file is closed at once."""
    try:
        return upload.read()
    finally:
        upload.close()


def _team_choices() -> list[SelectChoice]:
    teams = db.session.execute(select(Team).order_by(Team.name)).scalars()
    return [SelectChoice(0, "No team"), *[SelectChoice(t.id, t.name) for t in teams]]


@bp.route("/new", methods=["GET", "POST"])
@roles_required(*AUTHORS)
def new() -> Any:
    """Create a template from an uploaded PDF or a document written here."""
    form = NewTemplateForm()
    form.team.choices = _team_choices()
    if request.method == "GET":
        form.team.data = current_user.team_id or 0
    if form.validate_on_submit():
        team = db.session.get(Team, form.team.data) if form.team.data else None
        try:
            if form.source.data == "authored":
                version, _problems = ops.create_authored(
                    form.name.data or "",
                    form.document_type.data or "other",
                    team,
                    ops.STARTER_BODY,
                    ops.STARTER_MERGE_KEYS,
                    by=current_user,
                )
            else:
                upload = form.file.data
                if upload is None or not upload.filename:
                    raise ops.LibraryError("Choose a PDF file to upload.")
                version = ops.create_from_pdf(
                    form.name.data or "",
                    form.document_type.data or "other",
                    team,
                    _read(upload),
                    upload.filename,
                    by=current_user,
                )
        except (PdfProblem, ops.LibraryError) as exc:
            db.session.rollback()
            form.file.errors = [*form.file.errors, str(exc)]
        else:
            flash(f"Template {version.template.name} created as a draft.", "success")
            return redirect(url_for("library.version", version_id=version.id))
    return render_template("library/new.html", form=form), 422 if form.errors else 200


@bp.route("/<int:template_id>")
@roles_required()
def template(template_id: int) -> WerkzeugResponse:
    """A template opens on its newest version (agents: the approved one)."""
    template = _template_or_404(template_id)
    version = ops.latest_version(template) if _is_author() else ops.approved_version(template)
    assert version is not None
    return redirect(url_for("library.version", version_id=version.id))


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
    }
    context.update(overrides)
    return context


@bp.route("/versions/<int:version_id>")
@roles_required()
def version(version_id: int) -> str:
    """A version: its pages and fields, roles, settings, changes and review."""
    version = _version_or_404(version_id)
    return render_template("library/version.html", **_editor_context(version))


@bp.route("/versions/<int:version_id>/editor")
@roles_required()
def editor(version_id: int) -> str:
    """The pages-and-fields fragment (polled while page images are being rendered)."""
    version = _version_or_404(version_id)
    return render_template("library/_editor.html", **_editor_context(version))


def _author_version(version_id: int) -> TemplateVersion:
    if not _is_author():
        abort(403)
    return _version_or_404(version_id)


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


def _roles_from_form() -> list[dict[str, Any]]:
    roles = []
    for index in range(12):
        name = request.form.get(f"role-{index}-name")
        if name is None:
            continue
        roles.append(
            {
                "key": request.form.get(f"role-{index}-key", ""),
                "name": name,
                "kind": request.form.get(f"role-{index}-kind", "signer"),
                "order": request.form.get(f"role-{index}-order", "1"),
            }
        )
    return roles


def _simple_action(version: TemplateVersion, action: Any, success: str) -> Any:
    try:
        action()
    except ops.LibraryError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(success, "success")
    return redirect(url_for("library.version", version_id=version.id))


@bp.route("/versions/<int:version_id>/roles", methods=["POST"])
@roles_required(*AUTHORS)
def roles(version_id: int) -> Any:
    """Replace the roles."""
    version = _author_version(version_id)
    return _simple_action(
        version, lambda: ops.set_roles(version, _roles_from_form(), by=current_user), "Roles saved."
    )


@bp.route("/versions/<int:version_id>/settings", methods=["POST"])
@roles_required(*AUTHORS)
def settings(version_id: int) -> Any:
    """Save the workflow settings."""
    version = _author_version(version_id)
    form = SettingsForm()
    if not form.validate_on_submit():
        db.session.rollback()
        return render_template(
            "library/version.html", **_editor_context(version, settings_form=form)
        ), 422
    return _simple_action(
        version,
        lambda: ops.set_settings(version, form.data, by=current_user),
        "Workflow settings saved.",
    )


def _parse_merge_keys(text: str) -> list[dict[str, str]]:
    keys = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        keys.append(
            {
                "key": parts[0],
                "label": parts[1] if len(parts) > 1 else "",
                "sample": parts[2] if len(parts) > 2 else "",
            }
        )
    return keys


@bp.route("/versions/<int:version_id>/body", methods=["POST"])
@roles_required(*AUTHORS)
def body(version_id: int) -> Any:
    """Save an authored document; problems are shown beside the text."""
    version = _author_version(version_id)
    form = BodyForm()
    if not form.validate_on_submit():
        return render_template(
            "library/version.html", **_editor_context(version, body_form=form)
        ), 422
    try:
        problems = ops.update_body(
            version,
            form.body.data or "",
            _parse_merge_keys(form.merge_keys.data or ""),
            by=current_user,
        )
    except ops.LibraryError as exc:
        db.session.rollback()
        form.merge_keys.errors = [str(exc)]
        return render_template(
            "library/version.html", **_editor_context(version, body_form=form)
        ), 422
    if problems:
        return render_template(
            "library/version.html", **_editor_context(version, body_form=form, problems=problems)
        ), 422
    flash("Document saved and rendered.", "success")
    return redirect(url_for("library.version", version_id=version.id))


@bp.route("/versions/<int:version_id>/source", methods=["POST"])
@roles_required(*AUTHORS)
def replace_source(version_id: int) -> Any:
    """Upload a new PDF into a draft."""
    version = _author_version(version_id)
    form = UploadForm()
    upload = form.file.data if form.validate_on_submit() else None
    if upload is None or not upload.filename:
        flash("Choose a PDF file to upload.", "error")
        return redirect(url_for("library.version", version_id=version.id))
    try:
        ops.replace_pdf(version, _read(upload), upload.filename, by=current_user)
    except (PdfProblem, ops.LibraryError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash("New PDF uploaded.", "success")
    return redirect(url_for("library.version", version_id=version.id))


@bp.route("/versions/<int:version_id>/submit", methods=["POST"])
@roles_required(*AUTHORS)
def submit(version_id: int) -> Any:
    """Send a draft to compliance for review."""
    version = _author_version(version_id)
    return _simple_action(
        version,
        lambda: ops.submit(version, by=current_user),
        "Submitted for review. The version is now frozen.",
    )


@bp.route("/versions/<int:version_id>/<any(approve, reject):decision>", methods=["POST"])
@roles_required(*AUTHORS)
def review(version_id: int, decision: str) -> Any:
    """Approve or reject a version in review."""
    version = _author_version(version_id)
    form = ReviewForm()
    if not form.validate_on_submit():
        abort(400)
    comment = form.comment.data or ""
    if decision == "approve":
        return _simple_action(
            version,
            lambda: ops.approve(version, by=current_user, comment=comment),
            f"Approved. Agents now send version {version.number}.",
        )
    return _simple_action(
        version,
        lambda: ops.reject(version, by=current_user, comment=comment),
        "Sent back to draft with your comments.",
    )


@bp.route("/<int:template_id>/draft", methods=["POST"])
@roles_required(*AUTHORS)
def new_draft(template_id: int) -> Any:
    """Start a new version to edit."""
    template = _template_or_404(template_id)
    try:
        draft = ops.new_draft(template, by=current_user)
    except ops.LibraryError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("library.template", template_id=template.id))
    return redirect(url_for("library.version", version_id=draft.id))


@bp.route("/<int:template_id>/reviewed", methods=["POST"])
@roles_required(*AUTHORS)
def confirm_review(template_id: int) -> Any:
    """Record the annual review of an approved template."""
    template = _template_or_404(template_id)
    version = ops.latest_version(template)
    return _simple_action(
        version,
        lambda: ops.confirm_review(template, by=current_user),
        "Review recorded. The next one is due in 12 months.",
    )


@bp.route("/<int:template_id>/retire", methods=["POST"])
@roles_required(*AUTHORS)
def retire(template_id: int) -> Any:
    """Stop a template from being sent."""
    template = _template_or_404(template_id)
    form = RetireForm()
    reason = form.reason.data if form.validate_on_submit() else ""
    return _simple_action(
        ops.latest_version(template),
        lambda: ops.retire(template, by=current_user, reason=reason or ""),
        "Template retired. Envelopes already sent keep their version.",
    )


@bp.route("/versions/<int:version_id>/pages/<int:number>.png")
@roles_required()
def page_image(version_id: int, number: int) -> Response:
    """A rendered page, for signed-in staff who may see the version (cached privately)."""
    version = _version_or_404(version_id)
    page = version.page(number)
    if page is None or not page.get("image_blob_id"):
        abort(404)
    blob_id = str(page["image_blob_id"])
    if request.if_none_match.contains(blob_id):
        response = Response(status=304)
    else:
        response = Response(storage.get(blob_id), mimetype="image/png")
    response.set_etag(blob_id)
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


@bp.route("/versions/<int:version_id>/source.pdf")
@roles_required()
def source_pdf(version_id: int) -> Response:
    """The version's PDF as uploaded or rendered."""
    version = _version_or_404(version_id)
    if not version.source_blob_id:
        abort(404)
    response = Response(storage.get(version.source_blob_id), mimetype="application/pdf")
    filename = f"{version.template.name} v{version.number}.pdf".replace('"', "")
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
