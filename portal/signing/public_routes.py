"""Public pages that need no link session: the verify page and the emailed copy link."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from flask_babel import force_locale

from portal import web
from portal.envelopes import sealing
from portal.envelopes.verify import MAX_UPLOAD, verify_pdf
from portal.extensions import db, limiter, read_only

bp = Blueprint("public", __name__)


def _locale() -> str:
    return request.accept_languages.best_match(["en", "es"]) or "en"


@bp.route("/verify", methods=["GET", "POST"])
@read_only  # the check takes a while and writes nothing: writers must not wait for it
@limiter.limit("30 per minute", methods=["POST"])
def verify() -> Any:
    """Upload a PDF and learn whether it is a document sealed here, unchanged."""
    verdict = None
    problem = None
    if request.method == "POST":
        upload = request.files.get("document")
        if upload is None or not upload.filename:
            problem = "Choose the PDF file to check."
        else:
            data = upload.stream.read(MAX_UPLOAD + 1)
            verdict = verify_pdf(data)
    status = 200 if problem is None else 400
    with force_locale(_locale()):
        page = render_template(
            "signing/verify.html", verdict=verdict, problem=problem, envelope=None,
            locale=_locale(),
        )  # fmt: skip
    return page, status


@bp.route("/copy/<token>")
@limiter.limit("30 per minute")
def copy(token: str) -> Any:
    """The signed copy behind an emailed download link (valid COPY_LINK_DAYS days)."""
    recipient = sealing.recipient_for_copy_link(token)
    if recipient is None or recipient.envelope.sealed_blob_id is None:
        with force_locale(recipient.locale if recipient else _locale()):
            page = render_template(
                "signing/stopped.html", reason="copy_link", recipient=recipient, envelope=None,
                locale=recipient.locale if recipient else _locale(),
            )  # fmt: skip
        db.session.rollback()
        return page, 410
    envelope = recipient.envelope
    content = sealing.record_download(envelope, "recipient.copy_downloaded", recipient, "document")
    response = web.pdf_response(content, sealing.download_name(envelope))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _rate_limited_subject(args: dict[str, Any]) -> tuple[str, str, str] | None:
    """The envelope behind a rate-limited copy link (see ``web.RATE_LIMITED_SUBJECTS``);
    none for the verify page, which is about no envelope."""
    recipient = sealing.recipient_for_copy_link(str(args["token"])) if "token" in args else None
    return recipient.envelope.audit_ref if recipient is not None else None


web.RATE_LIMITED_SUBJECTS[bp.name] = _rate_limited_subject
