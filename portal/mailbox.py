"""The development mailbox: every outgoing message, readable without an SMTP server.

Only in development (404 in production) and only for signed-in staff, scoped like the
console: agents read the messages about their team's envelopes and those addressed to
themselves; compliance and admins read them all. A message page shows
the text part and the links found in it (so signing links can be followed), and the HTML part
in a sandboxed frame whose document is served with its own strict Content-Security-Policy.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template
from flask_login import current_user
from sqlalchemy import Select, func, or_, select

from portal.accounts.access import roles_required, sees_all_teams, team_scope
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.mail import NO_SERVER, Message

bp = Blueprint("mailbox", __name__, url_prefix="/dev/mailbox")

LIMIT = 100
# The HTML part is ours but may carry merged customer data: no scripts, no requests, no
# forms, sandboxed even when opened on its own, and framed only by our own pages.
HTML_CSP = "; ".join(
    (
        "default-src 'none'",
        "img-src data:",
        "style-src 'unsafe-inline'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "sandbox",
    )
)
_LINK = re.compile(r"https?://[^\s<>\"'()\[\]{}]+")


def links(text: str) -> list[str]:
    """The http(s) links in a text, in order, once each, without trailing punctuation."""
    found: list[str] = []
    for match in _LINK.finditer(text):
        url = match.group(0).rstrip(".,;:!?")
        if url not in found:
            found.append(url)
    return found


@bp.before_request
def _development_only() -> None:
    if current_app.config.get("PRODUCTION"):
        abort(404)


def _visible(stmt: Select[Any]) -> Select[Any]:
    """Only the messages the signed-in user may read (see the module's note)."""
    if sees_all_teams(current_user):
        return stmt
    team_envelopes = team_scope(select(Envelope.id), Envelope.team_id, current_user)
    return stmt.where(
        or_(
            Message.envelope_id.in_(team_envelopes),
            func.lower(Message.to_address) == current_user.email.lower(),
        )
    )


def _message_or_404(message_id: int) -> Message:
    message = db.session.execute(
        _visible(select(Message).where(Message.id == message_id))
    ).scalar_one_or_none()
    if message is None:
        abort(404)
    return message


@bp.route("")
@roles_required()
def index() -> str:
    """The newest messages first."""
    messages = db.session.execute(
        _visible(select(Message)).order_by(Message.id.desc()).limit(LIMIT)
    ).scalars()
    total = db.session.scalar(_visible(select(func.count(Message.id)))) or 0
    return render_template(
        "mailbox/index.html",
        messages=list(messages),
        all_teams=sees_all_teams(current_user),
        total=total,
        limit=LIMIT,
        server=current_app.config.get("MAIL_SERVER"),
        port=current_app.config.get("MAIL_PORT"),
    )


@bp.route("/<int:message_id>")
@roles_required()
def show(message_id: int) -> str:
    """One message: its facts, the links in it, the text part and the HTML part."""
    message = _message_or_404(message_id)
    return render_template(
        "mailbox/message.html",
        message=message,
        links=links(message.text_body),
        held=message.last_error == NO_SERVER,
        sender=current_app.config["MAIL_FROM"],
    )


@bp.route("/<int:message_id>/html")
@roles_required()
def html(message_id: int) -> Response:
    """The HTML part alone, for the sandboxed frame on the message page."""
    message = _message_or_404(message_id)
    response = Response(message.html_body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = HTML_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
