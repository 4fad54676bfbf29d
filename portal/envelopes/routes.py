"""The staff console: envelopes of the team, sending from approved templates, follow-up."""

from __future__ import annotations

from typing import Any

import segno
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from portal import clock, exports, web
from portal.accounts.access import can_see_team, roles_required, sees_all_teams
from portal.envelopes import console, export, sealing
from portal.envelopes import operations as ops
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db, read_only
from portal.library import operations as library
from portal.library.models import TemplateVersion
from portal.library.operations import sendable_templates

bp = Blueprint("console", __name__)


@bp.route("/")
def index() -> Response:
    """Send visitors to the console or the sign-in page."""
    target = "console.home" if current_user.is_authenticated else "auth.login"
    return redirect(url_for(target))


@bp.route("/console")
@roles_required()
def home() -> str:
    """The console: the envelopes in scope, filtered, sorted and paged, and what can be sent."""
    query = console.ListQuery.parse(request.args, all_teams=sees_all_teams(current_user))
    return web.page(
        "envelopes/console.html",
        "envelopes/_results.html",
        all_teams=sees_all_teams(current_user),
        templates=sendable_templates(current_user),
        template_choices=console.template_choices(current_user),
        team_choices=console.team_choices(current_user),
        statuses=console.STATUS_LABELS,
        query=query,
        page=console.page(
            query, current_user, request.args.get("after", ""), request.args.get("before", "")
        ),
    )


@bp.route("/console/envelopes.csv")
@roles_required()
def export_list() -> Response:
    """Every envelope the console's filters match, as a CSV file (an audit event)."""
    query = console.ListQuery.parse(request.args, all_teams=sees_all_teams(current_user))
    user = current_user._get_current_object()
    name = f"envelopes-{clock.utcnow():%Y%m%d-%H%M}.csv"
    return exports.csv_response(export.stream(query, user), name)


def _sendable_version_or_404(version_id: int) -> TemplateVersion:
    version = db.session.get(TemplateVersion, version_id)
    if version is None or not can_see_team(current_user, version.template.team_id):
        abort(404)
    if library.approved_version(version.template) is not version:
        abort(404)
    return version


def _recipient_inputs(version: TemplateVersion) -> list[ops.RecipientInput]:
    form = request.form
    return [
        ops.RecipientInput(
            role=str(role["key"]),
            name=form.get(f"r-{role['key']}-name", ""),
            email=form.get(f"r-{role['key']}-email", ""),
            phone=form.get(f"r-{role['key']}-phone", ""),
            locale=form.get(f"r-{role['key']}-locale", "en"),
            auth_method=form.get(f"r-{role['key']}-auth", ""),
            access_code=form.get(f"r-{role['key']}-code", ""),
        )
        for role in version.roles
    ]


def _qr(link: str) -> str:
    return str(segno.make(link, error="m").svg_inline(scale=4, border=4, omitsize=True))


def _links_page(envelope: Envelope, links: dict[int, str], heading: str) -> str:
    invited = [
        {"recipient": r, "link": links[r.id], "qr": _qr(links[r.id])}
        for r in envelope.recipients
        if r.id in links
    ]
    return render_template(
        "envelopes/sent.html", envelope=envelope, invited=invited, heading=heading
    )


@bp.route("/envelopes/preview/<int:version_id>", methods=["POST"])
@read_only
@roles_required()
def preview(version_id: int) -> Any:
    """The merged document with the values typed so far, before sending."""
    version = _sendable_version_or_404(version_id)
    values = {k.key: request.form.get(f"m-{k.key}", "") for k in library.merge_keys(version)}
    try:
        pdf = ops.preview(version, values)
    except ops.EnvelopeError as exc:
        return web.error_response(422, str(exc))
    response = web.pdf_response(pdf, "preview.pdf", download=False)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/envelopes/new/<int:version_id>", methods=["GET", "POST"])
@roles_required()
def new(version_id: int) -> Any:
    """Fill in the customer's details and send an approved template."""
    version = _sendable_version_or_404(version_id)
    error = None
    if request.method == "POST":
        values = {k.key: request.form.get(f"m-{k.key}", "") for k in library.merge_keys(version)}
        try:
            envelope, links = ops.create_and_send(
                version,
                values,
                _recipient_inputs(version),
                by=current_user,
                ticket_id=request.form.get("ticket_id", ""),
                ticket_url=request.form.get("ticket_url", ""),
            )
        except ops.EnvelopeError as exc:
            db.session.rollback()
            error = str(exc)
        else:
            return _links_page(envelope, links, "Sent")
    return (
        render_template(
            "envelopes/new.html",
            version=version,
            keys=library.merge_keys(version),
            form=request.form,
            error=error,
            allowed=ops.AUTH_ALLOWED.get(str(version.settings.get("default_auth")), ("link",)),
        ),
        422 if error else 200,
    )


def _envelope_or_404(public_id: str) -> Envelope:
    envelope = db.session.execute(
        select(Envelope).where(Envelope.public_id == public_id)
    ).scalar_one_or_none()
    if envelope is None or not can_see_team(current_user, envelope.team_id):
        abort(404)
    return envelope


@bp.route("/envelopes/<public_id>")
@roles_required()
def envelope(public_id: str) -> str:
    """One envelope: its recipients, their status, and what the agent can do."""
    envelope = _envelope_or_404(public_id)
    deliveries = {r.id: ops.delivery(r) for r in envelope.recipients}
    return render_template("envelopes/envelope.html", envelope=envelope, deliveries=deliveries)


def _recipient_or_404(envelope: Envelope, recipient_id: int) -> Recipient:
    for recipient in envelope.recipients:
        if recipient.id == recipient_id:
            return recipient
    abort(404)


@bp.route("/envelopes/<public_id>/recipients/<int:recipient_id>/resend", methods=["POST"])
@roles_required()
def resend(public_id: str, recipient_id: int) -> Any:
    """A new link for the recipient (emailed, and shown here for chat or a QR code)."""
    envelope = _envelope_or_404(public_id)
    recipient = _recipient_or_404(envelope, recipient_id)
    try:
        link = ops.resend(recipient, by=current_user)
    except ops.EnvelopeError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("console.envelope", public_id=public_id))
    return _links_page(envelope, {recipient.id: link}, "New link sent")


@bp.route("/envelopes/<public_id>/recipients/<int:recipient_id>/email", methods=["POST"])
@roles_required()
def correct_email(public_id: str, recipient_id: int) -> Any:
    """Fix a recipient's email address; the old link stops working."""
    envelope = _envelope_or_404(public_id)
    recipient = _recipient_or_404(envelope, recipient_id)
    try:
        link = ops.correct_email(recipient, request.form.get("email", ""), by=current_user)
    except ops.EnvelopeError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("console.envelope", public_id=public_id))
    if link:
        return _links_page(envelope, {recipient.id: link}, "Email corrected and new link sent")
    flash("Email corrected. They get their link when it is their turn.", "success")
    return redirect(url_for("console.envelope", public_id=public_id))


@bp.route("/envelopes/<public_id>/void", methods=["POST"])
@roles_required()
def void(public_id: str) -> Response:
    """Cancel the envelope; recipients see the reason and their links stop working."""
    envelope = _envelope_or_404(public_id)
    try:
        ops.void(envelope, request.form.get("reason", ""), by=current_user)
    except ops.EnvelopeError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash("Envelope voided. Its links no longer work.", "success")
    return redirect(url_for("console.envelope", public_id=public_id))


@bp.route("/envelopes/<public_id>/seal/retry", methods=["POST"])
@roles_required()
def retry_seal(public_id: str) -> Response:
    """Ask for sealing again (after a failure, or when it seems stuck)."""
    envelope = _envelope_or_404(public_id)
    try:
        sealing.retry(envelope, current_user)
    except sealing.SealingProblem as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash("Sealing asked for again.", "success")
    return redirect(url_for("console.envelope", public_id=public_id))


@bp.route("/envelopes/<public_id>/sealed.pdf")
@roles_required()
def sealed_document(public_id: str) -> Any:
    """The sealed PDF (stamped pages, certificate of completion, digital seal)."""
    envelope = _envelope_or_404(public_id)
    if envelope.seal_status != "sealed":
        flash("The document is not sealed yet.", "error")
        return redirect(url_for("console.envelope", public_id=public_id))
    content = sealing.record_download(
        envelope, "envelope.document_downloaded", current_user, "document"
    )
    return web.pdf_response(content, sealing.download_name(envelope))


@bp.route("/envelopes/<public_id>/audit-report.pdf")
@roles_required()
def audit_report(public_id: str) -> Any:
    """The certificate of completion alone, naming the sealed file's SHA-256 (interim before)."""
    envelope = _envelope_or_404(public_id)
    content = sealing.record_download(
        envelope, "envelope.report_downloaded", current_user, "report"
    )
    suffix = "audit-report" if envelope.status == "completed" else "interim-report"
    return web.pdf_response(content, sealing.download_name(envelope, suffix))
