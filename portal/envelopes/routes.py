"""The staff console: envelopes of the team, sending from approved templates, follow-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import segno
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from portal import clock, exports, storage, web
from portal.accounts.access import can_see_team, roles_required, sees_all_teams
from portal.accounts.models import Role
from portal.documents.pages import image_type
from portal.envelopes import (
    checks,
    console,
    export,
    forms,
    handover,
    idempotency,
    renewal,
    sealing,
    timeline,
    viewing,
)
from portal.envelopes import operations as ops
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db, read_only
from portal.library import operations as library
from portal.library.blueprint import sendable_version_or_404
from portal.library.models import Template, TemplateVersion
from portal.library.operations import sendable_templates
from portal.records import holds

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
            query,
            current_user,
            request.args.get("after", ""),
            request.args.get("before", ""),
            count_later=bool(query.q) and web.wants_fragment(),
        ),
    )


@bp.route("/console/count")
@roles_required()
def count() -> str:
    """How many envelopes the console's filters match, for a list shown without it."""
    query = console.ListQuery.parse(request.args, all_teams=sees_all_teams(current_user))
    shown = request.args.get("shown", "0")
    return render_template(
        "envelopes/_count.html",
        shown=int(shown) if shown.isascii() and shown.isdigit() and len(shown) < 4 else 0,
        total=console.count(query, current_user),
        cap=console.COUNT_CAP,
    )


@bp.route("/console/envelopes.csv")
@roles_required()
def export_list() -> Response:
    """Every envelope the console's filters match, as a CSV file (an audit event)."""
    query = console.ListQuery.parse(request.args, all_teams=sees_all_teams(current_user))
    user = current_user._get_current_object()
    name = f"envelopes-{clock.utcnow():%Y%m%d-%H%M}.csv"
    return exports.csv_response(export.stream(query, user), name)


def _qr(link: str) -> str:
    return str(segno.make(link, error="m").svg_inline(scale=4, border=4, omitsize=True))


@bp.route("/envelopes/preview/<int:version_id>", methods=["POST"])
@read_only
@roles_required()
def preview(version_id: int) -> Any:
    """The merged document with the values typed so far, before sending."""
    version = sendable_version_or_404(version_id)
    try:
        form = forms.SendForm.posted(version, request.form)
        pdf = ops.preview(version, form.merge_values(), form.document_language())
    except ops.EnvelopeError as exc:
        return web.error_response(422, str(exc))
    response = web.pdf_response(pdf, "preview.pdf", download=False)
    response.headers["Cache-Control"] = "no-store"
    return response


def _send_page(
    version: TemplateVersion,
    form: forms.SendForm,
    error: str | None = None,
    earlier: list[idempotency.EarlierSend] | None = None,
    reused: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    default_auth = str(version.settings.get("default_auth") or "link")
    page = render_template(
        "envelopes/new.html",
        version=version,
        form=form,
        keys=library.merge_keys(version),
        choices=checks.choices(version),
        mirrors=forms.partners(version),
        lengths=forms.input_lengths(version),
        ranges=checks.ranges(version),
        allowed=checks.AUTH_ALLOWED.get(default_auth, ("link",)),
        document_languages=forms.document_languages(version),
        error=error,
        earlier=earlier or [],
        reused=reused,
    )
    return page, status


@bp.route("/envelopes/new/<int:version_id>", methods=["GET", "POST"])
@roles_required()
def new(version_id: int) -> Any:
    """Fill in the customer's details and send an approved template (once per form).

    A GET may carry values from a CRM ticket (a deep link, see the README): they only fill
    the form. A POST sends and redirects to the result page; the same form sent again (a
    double submit, a reload, a retry) lands there too, without sending again.
    """
    version = sendable_version_or_404(version_id)
    if request.method == "GET":
        form = forms.SendForm.linked(version, request.args, idempotency.new_key())
        return _send_page(version, form)
    form = forms.SendForm.posted(version, request.form)
    try:
        envelope = idempotency.send_once(
            form.key,
            current_user,
            version,
            form.merge_values(),
            form.recipients(),
            ticket_id=form.get("ticket_id"),
            ticket_url=form.get("ticket_url"),
            options=form.options(),
            confirm_duplicate=form.confirm_duplicate,
        )
    except idempotency.DuplicateWarning as warning:
        return _send_page(version, form, earlier=warning.earlier, status=409)
    except idempotency.FormExpired as exc:
        db.session.rollback()
        form.key = idempotency.new_key()
        reused = getattr(exc, "public_id", None)
        return _send_page(version, form, error=str(exc), reused=reused, status=422)
    except ops.EnvelopeError as exc:
        db.session.rollback()
        return _send_page(version, form, error=str(exc), status=422)
    return redirect(url_for("console.sent", public_id=envelope.public_id), code=303)


@bp.route("/envelopes/new/template/<int:template_id>")
@roles_required()
def new_from_template(template_id: int) -> Response:
    """The send form of the template's current approved version, the query string kept: a
    deep link from a CRM that outlives new versions of the template."""
    template = db.session.get(Template, template_id)
    if template is None or not can_see_team(current_user, template.team_id):
        abort(404)
    version = library.approved_version(template)
    if version is None:
        abort(404)
    target = url_for("console.new", version_id=version.id)
    query = request.query_string.decode()
    return redirect(f"{target}?{query}" if query else target)


def _envelope_or_404(public_id: str) -> Envelope:
    envelope = db.session.execute(
        select(Envelope).where(Envelope.public_id == public_id)
    ).scalar_one_or_none()
    if envelope is None or not can_see_team(current_user, envelope.team_id):
        abort(404)
    return envelope


@bp.route("/envelopes/<public_id>/sent")
@roles_required()
def sent(public_id: str) -> str:
    """The result of a send: the new links and QR codes, shown to this session once."""
    envelope = _envelope_or_404(public_id)
    shown = handover.take(envelope)
    invited = [
        {"recipient": r, "link": shown.links[r.id], "qr": _qr(shown.links[r.id])}
        for r in envelope.recipients
        if shown and r.id in shown.links
    ]
    return render_template(
        "envelopes/sent.html",
        envelope=envelope,
        invited=invited,
        heading=shown.heading if shown else "Sent",
        waiting=ops.active_now(envelope) if envelope.status == "sent" else [],
    )


@bp.route("/envelopes/<public_id>")
@roles_required()
def envelope(public_id: str) -> str:
    """One envelope: its recipients, their status, what they filled in, its timeline, and
    what the agent can do."""
    envelope = _envelope_or_404(public_id)
    events, comments = timeline.story(envelope)
    page = render_template(
        "envelopes/envelope.html",
        envelope=envelope,
        deliveries={r.id: ops.delivery(r) for r in envelope.recipients},
        waiting=ops.active_now(envelope) if envelope.status == "sent" else [],
        events=events,
        comments=comments,
        filled=timeline.filled(envelope),
        remind_every=ops.REMIND_NOW_EVERY,
        sees_access=current_user.has_role(Role.COMPLIANCE, Role.ADMIN),
        legal_holds=holds.covering(envelope.id),
        long_term=renewal.page_facts(envelope, admin=current_user.has_role(Role.ADMIN)),
    )
    viewing.record_view(envelope, "page", current_user)
    return page


@bp.route("/envelopes/<public_id>/document.pdf")
@roles_required()
def original_document(public_id: str) -> Any:
    """The document exactly as sent (its SHA-256 is in the audit trail); each look recorded."""
    envelope = _envelope_or_404(public_id)
    content = storage.get(envelope.document_blob_id)
    name = sealing.download_name(envelope, "as-sent")
    viewing.record_view(envelope, "original", current_user)
    response = web.pdf_response(content, name, download=False)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/envelopes/<public_id>/pages/<int:number>.png")
@roles_required()
def page_image(public_id: str, number: int) -> Response:
    """A page of the document as sent; one staff member's looks at an envelope's pages within
    ``viewing.IMAGE_WINDOW`` are recorded as one view."""
    envelope = _envelope_or_404(public_id)
    pages = envelope.pages or []
    if not 1 <= number <= len(pages) or not pages[number - 1].get("image_blob_id"):
        abort(404)
    page = pages[number - 1]
    content = storage.get(str(page["image_blob_id"]))
    mimetype = image_type(page)
    viewing.record_view(envelope, "page_image", current_user, once_within=viewing.IMAGE_WINDOW)
    response = Response(content, mimetype=mimetype)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/envelopes/<public_id>/filled.pdf")
@roles_required()
def filled_document(public_id: str) -> Any:
    """The document with what the recipients filled in so far stamped on it (not sealed)."""
    envelope = _envelope_or_404(public_id)
    try:
        content = timeline.filled_document(envelope, current_user)
    except ops.EnvelopeError as exc:
        flash(str(exc), "error")
        return redirect(url_for("console.envelope", public_id=public_id))
    response = web.pdf_response(
        content, sealing.download_name(envelope, "filled-so-far"), download=False
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _recipient_or_404(envelope: Envelope, recipient_id: int) -> Recipient:
    for recipient in envelope.recipients:
        if recipient.id == recipient_id:
            return recipient
    abort(404)


def _to_result(envelope: Envelope, recipient: Recipient, link: str, heading: str) -> Response:
    handover.hand_over(envelope, {recipient.id: link}, heading)
    return redirect(url_for("console.sent", public_id=envelope.public_id), code=303)


@bp.route("/envelopes/<public_id>/recipients/<int:recipient_id>/resend", methods=["POST"])
@roles_required()
def resend(public_id: str, recipient_id: int) -> Any:
    """A new link for the recipient (emailed, and shown once for chat or a QR code)."""
    envelope = _envelope_or_404(public_id)
    recipient = _recipient_or_404(envelope, recipient_id)
    try:
        link = ops.resend(recipient, by=current_user)
    except ops.EnvelopeError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("console.envelope", public_id=public_id))
    return _to_result(envelope, recipient, link, "New link sent")


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
        return _to_result(envelope, recipient, link, "Email corrected and new link sent")
    flash("Email corrected. They get their link when it is their turn.", "success")
    return redirect(url_for("console.envelope", public_id=public_id))


@bp.route("/envelopes/<public_id>/recipients/<int:recipient_id>/remind", methods=["POST"])
@roles_required()
def remind(public_id: str, recipient_id: int) -> Response:
    """Email the recipient a reminder now (with a fresh link)."""
    envelope = _envelope_or_404(public_id)
    recipient = _recipient_or_404(envelope, recipient_id)
    name = recipient.name
    try:
        ops.remind_now(recipient, by=current_user)
    except ops.EnvelopeError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(f"Reminder sent to {name}. The link they had before no longer works.", "success")
    return redirect(url_for("console.envelope", public_id=public_id))


@bp.route("/envelopes/<public_id>/void", methods=["GET", "POST"])
@roles_required()
def void(public_id: str) -> Any:
    """Cancel the envelope, after a confirmation page that asks for the reason; recipients
    see the reason and their links stop working."""
    envelope = _envelope_or_404(public_id)
    form = forms.VoidForm()
    if request.method == "POST" and form.validate():
        try:
            ops.void(envelope, form.reason.data or "", by=current_user)
        except ops.EnvelopeError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            flash("Envelope voided. Its links no longer work.", "success")
        return redirect(url_for("console.envelope", public_id=public_id))
    page = render_template("envelopes/void.html", envelope=envelope, form=form)
    return page, 422 if form.errors else 200


def _seal_action(
    public_id: str,
    act: Callable[[Envelope, Any], object],
    refused: type[Exception],
    done: str,
) -> Response:
    """Run a seal action on the envelope; its refusal, or ``done``, is flashed on its page."""
    envelope = _envelope_or_404(public_id)
    try:
        act(envelope, current_user)
    except refused as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(done, "success")
    return redirect(url_for("console.envelope", public_id=public_id))


@bp.route("/envelopes/<public_id>/seal/retry", methods=["POST"])
@roles_required()
def retry_seal(public_id: str) -> Response:
    """Ask for sealing again (after a failure, or when it seems stuck)."""
    return _seal_action(
        public_id, sealing.retry, sealing.SealingProblem, "Sealing asked for again."
    )


@bp.route("/envelopes/<public_id>/seal/renew", methods=["POST"])
@roles_required(Role.ADMIN)
def renew_seal(public_id: str) -> Response:
    """Add a fresh archive timestamp to the sealed document now (admins)."""
    return _seal_action(
        public_id,
        renewal.renew_now,
        renewal.RenewalProblem,
        "Seal renewal asked for: a fresh archive timestamp is being added.",
    )


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
    suffix = "audit-report" if envelope.status == "completed" else "interim-report"
    name = sealing.download_name(envelope, suffix)
    try:
        content = sealing.record_download(
            envelope, "envelope.report_downloaded", current_user, "report"
        )
    except sealing.SealingError as exc:  # the report is sealed: a certificate problem
        db.session.rollback()
        flash(f"The audit report could not be sealed: {exc}", "error")
        return redirect(url_for("console.envelope", public_id=public_id))
    return web.pdf_response(content, name)
