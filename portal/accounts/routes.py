"""Sign-in pages (password, code, enrolment), sign-out and the user's own account page."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from portal.accounts import credentials, sessions, signin
from portal.accounts.access import roles_required
from portal.accounts.forms import ChangePasswordForm, CodeForm, LoginForm, PasswordConfirmForm
from portal.accounts.models import User
from portal.extensions import db, limiter

bp = Blueprint("auth", __name__, url_prefix="/auth")
account_bp = Blueprint("account", __name__, url_prefix="/account")

PENDING_SECONDS = 600


def _login_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _pending_user() -> User | None:
    pending = session.get("pending")
    if not pending or time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
        session.pop("pending", None)
        return None
    return db.session.get(User, int(pending["uid"]))


def _begin_session(user: User, raw_sid: str) -> None:
    """A fresh cookie session for the signed-in user (nothing carried over from before)."""
    next_url = (session.get("pending") or {}).get("next")
    session.clear()
    g.pop("csrf_token", None)  # the page rendered next must carry a token of the new session
    session["sid"] = raw_sid
    login_user(user)
    if next_url:
        session["after_login"] = next_url


def _after_login() -> Response:
    """Where a signed-in user belongs: their own password first if they must change it, else
    where they were going, else the console."""
    if current_user.must_change_password:
        flash("Choose your own password before you continue.", "info")
        return redirect(url_for("account.password"))
    return redirect(_safe_next(session.pop("after_login", None)) or url_for("console.home"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> Any:
    """Step one: email and password."""
    if current_user.is_authenticated:  # e.g. Back after signing in: no step to repeat
        return _after_login()
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        outcome = signin.check_password(form.email.data or "", form.password.data or "")
        if outcome.ok and outcome.user is not None:
            session.clear()
            session["pending"] = {
                "uid": outcome.user.id,
                "at": time.time(),
                "next": _safe_next(request.args.get("next")),
            }
            target = "auth.code" if outcome.user.mfa_enrolled else "auth.enrol"
            return redirect(url_for(target))
        error = outcome.message
    return render_template("accounts/login.html", form=form, error=error)


@bp.route("/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def code() -> Any:
    """Step two: the authenticator code (or a recovery code)."""
    if current_user.is_authenticated:
        return _after_login()
    user = _pending_user()
    if user is None:
        flash("Sign in again: that step took too long.", "info")
        return redirect(url_for("auth.login"))
    if not user.mfa_enrolled:
        return redirect(url_for("auth.enrol"))
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        outcome, raw_sid = signin.check_code(user, form.code.data or "")
        if raw_sid:
            _begin_session(user, raw_sid)
            left = signin.remaining_recovery_codes(user)
            if left <= 3:
                flash(
                    f"You have {left} recovery codes left. Make new ones on your account page.",
                    "warning",
                )
            return _after_login()
        error = outcome.message
        if outcome.locked:
            session.pop("pending", None)
    return render_template("accounts/code.html", form=form, error=error, user=user)


@bp.route("/enrol", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def enrol() -> Any:
    """First sign-in: connect an authenticator app and receive recovery codes."""
    if current_user.is_authenticated:
        return _after_login()
    user = _pending_user()
    if user is None:
        flash("Sign in again: that step took too long.", "info")
        return redirect(url_for("auth.login"))
    if user.mfa_enrolled:
        return redirect(url_for("auth.code"))
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        outcome, raw_sid = signin.confirm_enrolment(user, form.code.data or "")
        if raw_sid:
            _begin_session(user, raw_sid)
            return render_template(
                "accounts/recovery_codes.html",
                codes=outcome.recovery_codes,
                continue_url=url_for("account.password")
                if user.must_change_password
                else url_for("console.home"),
                first_time=True,
            )
        error = outcome.message
        if outcome.locked:
            session.pop("pending", None)
            flash(error, "error")
            return redirect(url_for("auth.login"))
    secret = signin.enrolment_secret(user)
    uri = credentials.provisioning_uri(secret, user.email, str(current_app.config["ORG_NAME"]))
    return render_template(
        "accounts/enrol.html",
        form=form,
        error=error,
        qr=credentials.qr_svg(uri),
        secret=credentials.format_secret(secret),
        user=user,
    )


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """End the session on the server and forget the cookie."""
    user = current_user._get_current_object() if current_user.is_authenticated else None
    signin.logout(user, session.get("sid"))
    logout_user()
    session.clear()
    flash("You have signed out.", "success")
    return redirect(url_for("auth.login"))


@account_bp.route("/")
@roles_required()
def overview() -> str:
    """The signed-in user's own account: details, recovery codes, sessions."""
    return render_template(
        "accounts/account.html",
        remaining=signin.remaining_recovery_codes(current_user),
        live=sessions.live_sessions(current_user),
        confirm_form=PasswordConfirmForm(),
    )


@account_bp.route("/recovery-codes", methods=["POST"])
@roles_required()
@limiter.limit(_login_limit)
def recovery_codes() -> Any:
    """Make new recovery codes after entering the password again."""
    form = PasswordConfirmForm()
    if form.validate_on_submit():
        outcome = signin.regenerate_recovery_codes(current_user, form.password.data or "")
        if outcome.ok:
            return render_template(
                "accounts/recovery_codes.html",
                codes=outcome.recovery_codes,
                continue_url=url_for("account.overview"),
                first_time=False,
            )
        form.password.errors = [outcome.message]
    return (
        render_template(
            "accounts/account.html",
            remaining=signin.remaining_recovery_codes(current_user),
            live=sessions.live_sessions(current_user),
            confirm_form=form,
        ),
        422,
    )


@account_bp.route("/password", methods=["GET", "POST"])
@roles_required()
@limiter.limit(_login_limit, methods=["POST"])
def password() -> Any:
    """Change one's own password (required after a one-time password)."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        outcome = signin.change_password(current_user, form.current.data or "", form.new.data or "")
        if outcome.ok:
            flash(outcome.message, "success")
            return redirect(url_for("console.home"))
        target = form.current if outcome.target == "current" else form.new
        target.errors = [*target.errors, outcome.message]
    return render_template("accounts/password.html", form=form)
