"""The staff console: the landing page after sign-in."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.accounts.access import roles_required, sees_all_teams
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
    """The console: what the signed-in member of staff works on."""
    return render_template(
        "envelopes/console.html",
        all_teams=sees_all_teams(current_user),
        templates=sendable_templates(current_user),
    )
