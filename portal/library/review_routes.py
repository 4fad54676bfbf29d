"""Changing a version's roles, workflow settings and document, and its review lifecycle:
submit, approve or reject, new draft, annual review and retirement. Registers on the
library blueprint."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.accounts.access import roles_required
from portal.documents.inspect import PdfProblem
from portal.extensions import db
from portal.library import operations as ops
from portal.library.blueprint import AUTHORS, _author_version, _read, _template_or_404, bp
from portal.library.editor_routes import _editor_context
from portal.library.forms import BodyForm, RetireForm, ReviewForm, SettingsForm, UploadForm
from portal.library.models import TemplateVersion


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
    data = _read(upload)
    try:
        ops.replace_pdf(version, data, upload.filename, by=current_user)
    except (PdfProblem, ops.LibraryError) as exc:
        db.session.rollback()
        if isinstance(exc, PdfProblem):
            ops.upload_refused(data, upload.filename, str(exc), by=current_user, version=version)
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
