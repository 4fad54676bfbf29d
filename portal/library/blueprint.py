"""The template library's blueprint and the look-ups its route modules share.

The routes themselves live in ``routes`` (list, create, view, page images and PDFs),
``editor_routes`` (the page-and-field editor) and ``review_routes`` (roles, settings,
the document and the review lifecycle); ``routes`` imports the other two, so importing
it registers every route on ``bp``."""

from __future__ import annotations

from flask import Blueprint, abort
from flask_login import current_user
from werkzeug.datastructures import FileStorage

from portal.accounts.access import can_see_team
from portal.accounts.models import Role
from portal.extensions import db
from portal.library import operations as ops
from portal.library.models import Field, Template, TemplateVersion

bp = Blueprint("library", __name__, url_prefix="/library")

AUTHORS = (Role.COMPLIANCE, Role.ADMIN)


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


def sendable_version_or_404(version_id: int) -> TemplateVersion:
    """The approved version a sender may send (single or in bulk): any other is not found."""
    version = db.session.get(TemplateVersion, version_id)
    if version is None or not can_see_team(current_user, version.template.team_id):
        abort(404)
    if ops.approved_version(version.template) is not version:
        abort(404)
    return version


def _field_or_404(version: TemplateVersion, field_id: int) -> Field:
    for field in version.fields:
        if field.id == field_id:
            return field
    abort(404)


def _author_version(version_id: int) -> TemplateVersion:
    if not _is_author():
        abort(403)
    return _version_or_404(version_id)


def _read(upload: FileStorage) -> bytes:
    """The uploaded bytes; the spooled temporary file is closed at once."""
    try:
        return upload.read()
    finally:
        upload.close()
