"""The public page an embedded signing link opens (``/s/embedded/<token>``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, session, url_for

from portal.extensions import limiter
from portal.integrations import embedded
from portal.signing import gate
from portal.signing.routes import _stop as stopped_page

# Registered beside the signing pages; the link opens the same session as the emailed one.
public = Blueprint("embedded", __name__)


@public.after_request
def _private(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@public.route("/s/embedded/<token>")
@limiter.limit("30 per minute")
def open_link(token: str) -> Any:
    """Use an embedded signing link once: a signing session and a URL without the token."""
    recipient, reason = embedded.open_link(token)
    if reason or recipient is None:
        return stopped_page(reason or "unknown", recipient)
    session[gate.SIGNER] = {"rid": recipient.id, "th": recipient.token_hash}
    return redirect(url_for("signing.document", public_id=recipient.envelope.public_id))
