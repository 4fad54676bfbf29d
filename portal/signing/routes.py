"""Public signing pages. The link token is exchanged at once for a recipient-scoped session
and a token-free URL; every page re-checks that the session's link is still the live one."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale, gettext

from portal import storage
from portal.documents.geometry import Rect, pdf_to_display
from portal.documents.inspect import PageBox
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db, limiter
from portal.signing import access, disclosure, operations, values

bp = Blueprint("signing", __name__)

SIGNER = "signer"


@bp.after_request
def _private(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(template: str, recipient: Recipient | None, status: int = 200, **context: Any) -> Any:
    locale = (
        recipient.locale
        if recipient
        else (request.accept_languages.best_match(["en", "es"]) or "en")
    )
    with force_locale(locale):
        return render_template(template, recipient=recipient, locale=locale, **context), status


def _stop(reason: str, recipient: Recipient | None = None) -> Any:
    """The clear page for a link that does nothing (voided, expired, replaced, ...)."""
    return _page("signing/stopped.html", recipient, 410 if reason != "not_your_turn" else 200,
                 reason=reason, envelope=recipient.envelope if recipient else None)  # fmt: skip


@bp.route("/s/<token>")
@limiter.limit("30 per minute")
def link(token: str) -> Any:
    """Exchange the emailed link for a session and a URL without the token."""
    recipient, reason = access.open_link(token)
    if reason or recipient is None:
        return _stop(reason or "unknown", recipient)
    session[SIGNER] = {"rid": recipient.id, "th": recipient.token_hash}
    return redirect(url_for("signing.document", public_id=recipient.envelope.public_id))


def _signer(public_id: str) -> Recipient:
    """The recipient of this browser session, for this envelope only; else 404."""
    held = session.get(SIGNER) or {}
    recipient = db.session.get(Recipient, int(held.get("rid", 0) or 0))
    if recipient is None or recipient.envelope.public_id != public_id:
        abort(404)
    if recipient.token_hash != held.get("th") and not recipient.finished:
        session.pop(SIGNER, None)  # the link was replaced: this session dies with it
        abort(404)
    return recipient


def _context(recipient: Recipient) -> dict[str, Any]:
    envelope = recipient.envelope
    fields = values.my_fields(envelope, recipient)
    boxes = {int(p["number"]): PageBox.from_record(p) for p in envelope.pages or []}
    pages = [
        {"number": n, "width": round(b.display_width, 2), "height": round(b.display_height, 2),
         "ready": bool((envelope.pages[n - 1] or {}).get("image_blob_id"))}
        for n, b in boxes.items()
    ]  # fmt: skip
    markers = [
        {"field": f, "rect": pdf_to_display(boxes[f.page], Rect(f.x, f.y, f.w, f.h))}
        for f in fields
        if f.page in boxes
    ]
    return {
        "page_list": pages,
        "markers": markers,
        "envelope": envelope,
        "fields": fields,
        "prefill": {f.key: values.prefilled(envelope, f) for f in fields},
        "readonly": {f.key: values.is_readonly(envelope, f) for f in fields},
        "needs_signature": any(f.type in ("signature", "initials") for f in fields),
        "pages": envelope.pages,
    }


@bp.route("/sign/<public_id>")
def document(public_id: str) -> Any:
    """The next step for this recipient: disclosure, code, document, or done."""
    recipient = _signer(public_id)
    reason = access.blocked_reason(recipient)
    if recipient.finished:
        return _page("signing/done.html", recipient, envelope=recipient.envelope)
    if reason:
        return _stop(reason, recipient)
    if operations.needs_consent(recipient):
        sender = recipient.envelope.created_by.name
        text = disclosure.paragraphs(recipient.locale, str(current_app.config["ORG_NAME"]), sender)
        return _page(
            "signing/consent.html", recipient, envelope=recipient.envelope, disclosure=text
        )
    if operations.needs_code(recipient):
        sent = bool(session.pop("code_sent", False))
        return _page(
            "signing/code.html", recipient, envelope=recipient.envelope, error=None, sent=sent
        )
    return _page("signing/document.html", recipient, problems={}, form={}, **_context(recipient))


def _act(public_id: str, action: Any) -> Any:
    recipient = _signer(public_id)
    try:
        action(recipient)
    except operations.SigningError as exc:
        db.session.rollback()
        fresh = db.session.get(Recipient, recipient.id)
        if exc.reason == "finished" or (fresh is not None and fresh.finished):
            return redirect(url_for("signing.document", public_id=public_id))
        return _stop(exc.reason, recipient)
    return redirect(url_for("signing.document", public_id=public_id))


@bp.route("/sign/<public_id>/consent", methods=["POST"])
def consent(public_id: str) -> Any:
    """Accept the disclosure, or decline it (which declines the envelope)."""
    if request.form.get("decision") == "decline":
        return _act(
            public_id,
            lambda r: operations.decline(r.id, "Declined the electronic records disclosure."),
        )
    return _act(public_id, lambda r: operations.give_consent(r.id))


@bp.route("/sign/<public_id>/code/send", methods=["POST"])
@limiter.limit("5 per 10 minutes")
def send_code(public_id: str) -> Any:
    """Email a fresh code."""
    recipient = _signer(public_id)
    if recipient.auth_method == "email_otp" and not access.blocked_reason(recipient):
        access.send_code(recipient)
        session["code_sent"] = True
    # Post/redirect/get: reloading the page must not email another code.
    return redirect(url_for("signing.document", public_id=public_id))


@bp.route("/sign/<public_id>/code", methods=["POST"])
@limiter.limit("20 per 10 minutes")
def check_code(public_id: str) -> Any:
    """Check the emailed code or the access code."""
    recipient = _signer(public_id)
    reason = access.blocked_reason(recipient)
    if reason:
        return _stop(reason, recipient)
    failure = access.check_code(recipient, request.form.get("code", ""))
    if failure == "locked":
        return _stop("locked", recipient)
    if failure:
        return _page(
            "signing/code.html", recipient, 422, envelope=recipient.envelope, error=failure
        )
    return redirect(url_for("signing.document", public_id=public_id))


@bp.route("/sign/<public_id>/sign", methods=["POST"])
def sign(public_id: str) -> Any:
    """Validate the fields on the server, then adopt and sign."""
    recipient = _signer(public_id)
    reason = access.blocked_reason(recipient)
    if recipient.finished:  # a second tab or a double tap: the first submit won
        return redirect(url_for("signing.document", public_id=public_id))
    if reason:
        return _stop(reason, recipient)
    adoption = "drawn" if request.form.get("adoption") == "drawn" else "typed"
    uploads = {
        key.removeprefix("f-"): values.Upload(upload.filename or "file", upload.read())
        for key, upload in request.files.items()
        if upload and upload.filename
    }
    with force_locale(recipient.locale):  # problems are worded in the signer's language
        checked = values.check(
            recipient.envelope, recipient, request.form.to_dict(), uploads, adoption,
            request.form.get("typed_name", ""), request.form.get("drawing", ""),
        )  # fmt: skip
        if not request.form.get("agree"):
            checked.problems["agree"] = gettext("Confirm that this is your signature.")
    if checked.problems:
        return _page("signing/document.html", recipient, 422, problems=checked.problems,
                     form=request.form, **_context(recipient))  # fmt: skip
    return _act(public_id, lambda r: operations.sign(r.id, checked, adoption))


@bp.route("/sign/<public_id>/review", methods=["POST"])
def review(public_id: str) -> Any:
    """An approver's decision."""
    approve = request.form.get("decision") == "approve"
    comment = request.form.get("comment", "")
    if not approve and not comment.strip():
        recipient = _signer(public_id)
        with force_locale(recipient.locale):
            problems = {"comment": gettext("Say why you reject it; the sender will see it.")}
        return _page("signing/document.html", recipient, 422, problems=problems,
                     form=request.form, **_context(recipient))  # fmt: skip
    return _act(public_id, lambda r: operations.review(r.id, approve, comment))


@bp.route("/sign/<public_id>/decline", methods=["POST"])
def decline(public_id: str) -> Any:
    """Decline to sign, with a reason."""
    reason = request.form.get("reason", "")
    return _act(public_id, lambda r: operations.decline(r.id, reason))


@bp.route("/sign/<public_id>/pages/<int:number>.png")
def page_image(public_id: str, number: int) -> Response:
    """A page of the document, to this recipient only."""
    recipient = _signer(public_id)
    pages = recipient.envelope.pages or []
    if not 1 <= number <= len(pages) or not pages[number - 1].get("image_blob_id"):
        abort(404)
    response = Response(storage.get(str(pages[number - 1]["image_blob_id"])), mimetype="image/png")
    return response


@bp.route("/sign/<public_id>/document.pdf")
def original(public_id: str) -> Response:
    """The document exactly as sent (its SHA-256 is in the audit trail)."""
    recipient = _signer(public_id)
    envelope: Envelope = recipient.envelope
    response = Response(storage.get(envelope.document_blob_id), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{envelope.public_id}.pdf"'
    return response
