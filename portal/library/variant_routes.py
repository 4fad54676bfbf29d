"""A version's document in other languages: write or upload each language, place the fields
of an uploaded one, remove one, open its PDF. Registers on the library blueprint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response as WerkzeugResponse

from portal import storage, web
from portal.accounts.access import roles_required
from portal.documents.geometry import Rect
from portal.documents.inspect import PdfProblem
from portal.extensions import db
from portal.library import languages, variants
from portal.library import operations as ops
from portal.library.blueprint import AUTHORS, _author_version, _read, _version_or_404, bp
from portal.library.editor_routes import _editor_context
from portal.library.forms import PlaceForm
from portal.library.models import TemplateVersion

MAX_TEXT = 100_000


def _back(version: TemplateVersion, locale: str) -> WerkzeugResponse:
    return redirect(url_for("library.version", version_id=version.id) + f"#language-{locale}")


def _act(version: TemplateVersion, locale: str, action: Callable[[], Any], done: str) -> Any:
    """Carry out one change and go back to the language, saying how it went."""
    try:
        action()
    except ops.LibraryError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(done, "success")
    return _back(version, locale)


def _known(locale: str) -> str:
    if locale not in languages.NAMES or locale == languages.BASE:
        abort(404)
    return locale


@bp.route("/versions/<int:version_id>/languages/<locale>/text", methods=["POST"])
@roles_required(*AUTHORS)
def variant_text(version_id: int, locale: str) -> Any:
    """Save an authored document's text in another language (refused when it does not match)."""
    version = _author_version(version_id)
    locale = _known(locale)
    body = request.form.get("body", "")
    try:
        if len(body) > MAX_TEXT:
            raise ops.LibraryError(f"The text is longer than {MAX_TEXT:,} characters.")
        variants.save_text(version, locale, body, by=current_user)
    except ops.LibraryError as exc:
        db.session.rollback()
        context = _editor_context(version, variant_errors={locale: str(exc)},
                                  variant_bodies={locale: body})  # fmt: skip
        return render_template("library/version.html", **context), 422
    flash(f"{languages.label(locale)} text saved and rendered.", "success")
    return _back(version, locale)


@bp.route("/versions/<int:version_id>/languages/<locale>/pdf", methods=["POST"])
@roles_required(*AUTHORS)
def variant_pdf(version_id: int, locale: str) -> Any:
    """Upload the PDF of the document in another language (checked like any upload)."""
    version = _author_version(version_id)
    locale = _known(locale)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a PDF file to upload.", "error")
        return _back(version, locale)
    data = _read(upload)
    try:
        variants.save_pdf(version, locale, data, upload.filename, by=current_user)
    except (PdfProblem, ops.LibraryError) as exc:
        db.session.rollback()
        if isinstance(exc, PdfProblem):
            ops.upload_refused(data, upload.filename, str(exc), by=current_user, version=version)
        flash(str(exc), "error")
    else:
        flash(f"{languages.label(locale)} PDF uploaded. Check where its fields sit.", "success")
    return _back(version, locale)


@bp.route("/versions/<int:version_id>/languages/<locale>/fields/<key>", methods=["POST"])
@roles_required(*AUTHORS)
def variant_place(version_id: int, locale: str, key: str) -> Any:
    """Move a field on the PDF of another language."""
    version = _author_version(version_id)
    locale = _known(locale)
    form = PlaceForm(formdata=request.form, prefix=f"v{locale}-{key}")
    if not form.validate_on_submit():
        flash("Enter the page and a position inside it, in points.", "error")
        return _back(version, locale)
    at = Rect(form.x.data or 0, form.y.data or 0, form.w.data or 0, form.h.data or 0)
    return _act(
        version,
        locale,
        lambda: variants.place(version, locale, key, form.page.data or 1, at, by=current_user),
        f"Placed {key} on the {languages.label(locale)} PDF.",
    )


@bp.route("/versions/<int:version_id>/languages/<locale>/labels", methods=["POST"])
@roles_required(*AUTHORS)
def variant_labels(version_id: int, locale: str) -> Any:
    """Save the fields' labels in another language."""
    version = _author_version(version_id)
    locale = _known(locale)
    given = {f.key: request.form.get(f"label-{f.key}", "") for f in version.fields}
    return _act(
        version,
        locale,
        lambda: variants.save_labels(version, locale, given, by=current_user),
        f"{languages.label(locale)} field labels saved.",
    )


@bp.route("/versions/<int:version_id>/languages/<locale>/remove", methods=["POST"])
@roles_required(*AUTHORS)
def variant_remove(version_id: int, locale: str) -> Any:
    """Remove a language from a draft."""
    version = _author_version(version_id)
    locale = _known(locale)
    return _act(
        version,
        locale,
        lambda: variants.remove(version, locale, by=current_user),
        f"{languages.label(locale)} removed.",
    )


@bp.route("/versions/<int:version_id>/languages/<locale>.pdf")
@roles_required()
def variant_source(version_id: int, locale: str) -> WerkzeugResponse:
    """The document in another language, as uploaded or rendered with sample values."""
    version = _version_or_404(version_id)
    variant = version.variant(_known(locale))
    if variant is None or not variant.source_blob_id:
        abort(404)
    filename = f"{version.template.name} v{version.number} ({locale}).pdf"
    response = web.pdf_response(storage.get(variant.source_blob_id), filename, download=False)
    response.headers["Cache-Control"] = "private, no-store"
    return response
