"""Staff accounts: sign-in with mandatory TOTP, sessions, roles, teams and their admin."""

from __future__ import annotations

from typing import Any

from flask import Flask, flash, g, redirect, request, session, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.accounts import sessions
from portal.accounts.models import User
from portal.extensions import htmx, login_manager

TIMEOUT_MESSAGES = {
    "idle_timeout": "You were signed out after {idle} minutes without activity. Sign in again.",
    "absolute_timeout": "Your session reached its {hours}-hour limit. Sign in again.",
    "ended_by_admin": "An admin ended your session. Sign in again.",
    "mfa_reset": "Your authenticator was reset by an admin. Sign in to set it up again.",
    "deactivated": "Your account has been deactivated.",
    "password_reset": "Your password was reset by an admin. Sign in with the new one.",
}

# Pages a user who must choose a new password may still open.
PASSWORD_CHANGE_ALLOWED = {"account.password", "auth.logout", "static", "health.healthz"}


def _load_user(user_id: str) -> User | None:
    user, reason = sessions.resume(session.get("sid"), int(user_id))
    if user is None:
        g.session_end_reason = reason
        session.pop("sid", None)
        session.pop("_user_id", None)
    return user


def _unauthorized() -> Response:
    from flask import current_app

    reason = g.get("session_end_reason")
    if reason in TIMEOUT_MESSAGES:
        flash(
            TIMEOUT_MESSAGES[reason].format(
                idle=current_app.config["SESSION_IDLE_MINUTES"],
                hours=current_app.config["SESSION_ABSOLUTE_HOURS"],
            ),
            "info",
        )
    else:
        flash("Sign in to continue.", "info")
    target = url_for("auth.login", next=request.full_path if request.method == "GET" else None)
    if htmx:
        response = Response("", status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def _require_own_password() -> Any:
    if "_user_id" not in session or request.endpoint in PASSWORD_CHANGE_ALLOWED:
        # Nobody signed in here (a customer signing, say), or a page open anyway: it loads
        # the user itself if it needs one (static files and /healthz need none, so they
        # never wait for the session's once-a-minute write).
        return None
    if current_user.is_authenticated and current_user.must_change_password:
        return redirect(url_for("account.password"))
    return None


def init_app(app: Flask) -> None:
    """Register the blueprints and the session loader."""
    from portal.accounts.admin_routes import bp as admin_bp
    from portal.accounts.routes import account_bp, bp

    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_unauthorized)
    login_manager.session_protection = None  # our server-side sessions do this job
    # Templates get the proxy, not Flask-Login's context processor, which loads the user for
    # every template rendered: a page that never names the user (a signer's) loads nobody.
    app.jinja_env.globals["current_user"] = current_user
    app.before_request(_require_own_password)
    app.register_blueprint(bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(admin_bp)
