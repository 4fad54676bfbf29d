"""Template library pages: list, search, create, view a version, page images and PDFs.

Editing fields lives in ``editor_routes``; roles, settings, the document and review in
``review_routes``. Both register on the same blueprint and are imported here, so
importing this module registers every library route."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response as WerkzeugResponse
from wtforms import SelectChoice

from portal import storage, text, web
from portal.accounts.access import roles_required, team_scope
from portal.accounts.models import Team
from portal.documents.inspect import PdfProblem
from portal.documents.pages import image_type
from portal.extensions import db
from portal.library import operations as ops
from portal.library import (
    review_routes,  # noqa: F401  (registers its routes on bp)
    variant_routes,  # noqa: F401  (registers its routes on bp)
)
from portal.library.blueprint import (
    AUTHORS,
    _is_author,
    _read,
    _template_or_404,
    _version_or_404,
    bp,
)
from portal.library.editor_routes import _editor_context
from portal.library.forms import NewTemplateForm
from portal.library.models import DOCUMENT_TYPE_LABELS, Template

__all__ = ["bp"]

STATUS_FILTERS = {
    "": "Any status",
    "approved": "Approved",
    "draft": "Draft",
    "in_review": "In review",
    "review_due": "Annual review due",
    "retired": "Retired",
}


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
    stmt = (
        select(Template)
        .options(selectinload(Template.versions), selectinload(Template.team))
        .order_by(Template.name)
        .limit(500)
    )
    stmt = team_scope(stmt, Template.team_id, current_user)
    if query.strip():
        stmt = stmt.where(
            or_(text.contains(Template.name, query), text.contains(Template.document_type, query))
        )
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
        data: bytes | None = None  # the uploaded PDF, once read
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
                data = _read(upload)
                version = ops.create_from_pdf(
                    form.name.data or "",
                    form.document_type.data or "other",
                    team,
                    data,
                    upload.filename,
                    by=current_user,
                )
        except (PdfProblem, ops.LibraryError) as exc:
            db.session.rollback()
            if isinstance(exc, PdfProblem) and data is not None:
                filename = form.file.data.filename or ""
                ops.upload_refused(data, filename, str(exc), by=current_user)
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


@bp.route("/versions/<int:version_id>")
@roles_required()
def version(version_id: int) -> str:
    """A version: its pages and fields, roles, settings, changes and review."""
    version = _version_or_404(version_id)
    return render_template("library/version.html", **_editor_context(version))


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
        response = Response(storage.get(blob_id), mimetype=image_type(page))
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
    filename = f"{version.template.name} v{version.number}.pdf"
    response = web.pdf_response(storage.get(version.source_blob_id), filename, download=False)
    response.headers["Cache-Control"] = "private, no-store"
    return response
