"""Admin pages: staff accounts and teams (htmx, works without JS), and the sealing certificate."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import or_, select
from wtforms import SelectChoice

from portal import audit, text, web
from portal.accounts import admin, sessions, signin, throttle
from portal.accounts.access import check_roles
from portal.accounts.forms import RoleTeamForm, TeamForm, UserForm
from portal.accounts.models import Role, Team, User
from portal.documents import keystore
from portal.documents.seal import SealingError
from portal.envelopes import renewal
from portal.extensions import db, write_lock

bp = Blueprint("admin", __name__, url_prefix="/admin")

ACTIONS = {
    "deactivate": (admin.deactivate, "{name} can no longer sign in; their sessions ended."),
    "reactivate": (admin.reactivate, "{name} can sign in again."),
    "unlock": (admin.unlock, "{name}'s account is unlocked."),
    "reset-mfa": (admin.reset_mfa, "{name} will set up a new authenticator at next sign-in."),
    "end-sessions": (admin.end_sessions, "All of {name}'s sessions have ended."),
}


@bp.before_request
def _admins_only() -> None:
    check_roles(Role.ADMIN)


def _teams() -> list[Team]:
    return list(db.session.execute(select(Team).order_by(Team.name)).scalars())


def _team_choices() -> list[SelectChoice]:
    return [SelectChoice(0, "No team"), *[SelectChoice(team.id, team.name) for team in _teams()]]


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or user.service:  # an API key's user: see Integrations
        abort(404)
    return user


def _search(query: str) -> list[User]:
    stmt = select(User).where(User.service.is_(False)).order_by(User.active.desc(), User.name)
    if query.strip():
        stmt = stmt.outerjoin(Team).where(
            or_(*(text.contains(column, query) for column in (User.email, User.name, Team.name)))
        )
    return list(db.session.execute(stmt.limit(200)).unique().scalars())


@bp.route("/users")
def users() -> str:
    """All staff accounts, with active search."""
    query = request.args.get("q", "")
    return web.page(
        "accounts/admin/users.html",
        "accounts/admin/_user_rows.html",
        users=_search(query),
        locked_ids=throttle.locked_user_ids(),
        q=query,
        team_form=TeamForm(),
        teams=_teams(),
    )


@bp.route("/users/new", methods=["GET", "POST"])
def new_user() -> Any:
    """Create an account; shows its one-time password once."""
    form = UserForm()
    form.team.choices = _team_choices()
    if form.validate_on_submit():
        team = db.session.get(Team, form.team.data) if form.team.data else None
        try:
            user, one_time = admin.create_user(
                form.email.data or "",
                form.name.data or "",
                form.role.data or "agent",
                team,
                by=current_user,
            )
        except admin.AccountError as exc:
            form.email.errors = [str(exc)]
        else:
            return render_template("accounts/admin/created.html", user=user, password=one_time)
    return render_template("accounts/admin/new_user.html", form=form)


def _detail_context(user: User, form: RoleTeamForm | None = None) -> dict[str, Any]:
    if form is None:
        form = RoleTeamForm(role=user.role, team=user.team_id or 0)
    form.team.choices = _team_choices()
    return {
        "user": user,
        "form": form,
        "live": sessions.live_sessions(user),
        "locks": throttle.locks(user),
        "locked": throttle.is_locked(user),
        "remaining": signin.remaining_recovery_codes(user),
        "events": audit.history(user, limit=25),
    }


@bp.route("/users/<int:user_id>")
def user_detail(user_id: int) -> str:
    """One account: role, team, state, sessions and its recent audit events."""
    user = _user_or_404(user_id)
    return web.page(
        "accounts/admin/user.html", "accounts/admin/_user_panel.html", **_detail_context(user)
    )


@bp.route("/users/<int:user_id>/access", methods=["POST"])
def change_access(user_id: int) -> Any:
    """Change role and team."""
    user = _user_or_404(user_id)
    form = RoleTeamForm()
    form.team.choices = _team_choices()
    status = 200
    if form.validate_on_submit():
        team = db.session.get(Team, form.team.data) if form.team.data else None
        try:
            admin.set_role(user, form.role.data or user.role, by=current_user)
            admin.set_team(user, team, by=current_user)
        except admin.AccountError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            status = 422
        else:
            flash(f"Saved {user.name}'s role and team.", "success")
    else:
        status = 422
    if not web.wants_fragment() and status == 200:
        return redirect(url_for("admin.user_detail", user_id=user.id))
    return (
        web.page(
            "accounts/admin/user.html",
            "accounts/admin/_user_panel.html",
            **_detail_context(user, form if status != 200 else None),
        ),
        status,
    )


ACTION_RULE = "<any(deactivate, reactivate, unlock, 'reset-mfa', 'end-sessions'):action>"


@bp.route(f"/users/<int:user_id>/{ACTION_RULE}", methods=["POST"])
def user_action(user_id: int, action: str) -> Any:
    """Deactivate, reactivate, unlock, reset MFA or end sessions."""
    user = _user_or_404(user_id)
    operation, message = ACTIONS[action]
    status = 200
    try:
        operation(user, by=current_user)
    except admin.AccountError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        status = 422
    else:
        flash(message.format(name=user.name), "success")
    if not web.wants_fragment():
        return redirect(url_for("admin.user_detail", user_id=user.id))
    return web.page(
        "accounts/admin/user.html", "accounts/admin/_user_panel.html", **_detail_context(user)
    ), status


@bp.route("/users/<int:user_id>/reset-password", methods=["POST"])
def reset_password(user_id: int) -> str:
    """Give the user a new one-time password (shown once)."""
    user = _user_or_404(user_id)
    one_time = admin.reset_password(user, by=current_user)
    return render_template("accounts/admin/created.html", user=user, password=one_time, reset=True)


@bp.route("/teams", methods=["POST"])
def new_team() -> Any:
    """Create a team."""
    form = TeamForm()
    if form.validate_on_submit():
        team = admin.create_team(form.name.data or "", by=current_user)
        flash(f"Team {team.name} created.", "success")
        return redirect(url_for("admin.users"))
    for error in form.name.errors:
        flash(str(error), "error")
    return redirect(url_for("admin.users"))


@bp.route("/sealing")
def sealing() -> str:
    """The sealing certificate: subject, expiry, self-signed or from a CA, and warnings."""
    write_lock()  # it may register the certificate, or make the development one
    try:
        status = keystore.status()
        problem = None
    except SealingError as exc:
        db.session.rollback()
        status, problem = None, str(exc)
    return render_template("accounts/admin/sealing.html", status=status, problem=problem,
                           configured=bool(keystore.configured_path()),
                           long_term=renewal.summary())  # fmt: skip
