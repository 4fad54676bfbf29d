"""Admin pages for API keys (create, shown once, revoke, last use)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from portal.accounts.models import Team
from portal.extensions import db, write_lock
from portal.integrations import admins_only, bp, keys
from portal.integrations.models import ApiKey


def _key_or_404(key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id)
    if key is None:
        abort(404)
    return key


def _teams() -> list[Team]:
    return list(db.session.execute(select(Team).order_by(Team.name)).scalars())


def _form(status: int = 200, error: str | None = None) -> tuple[str, int]:
    page = render_template(
        "integrations/keys_new.html",
        teams=_teams(),
        scopes=keys.SCOPES,
        expiries=keys.EXPIRY_DAYS,
        form=request.form,
        chosen=request.form.getlist("scopes") if request.method == "POST" else [],
        error=error,
    )
    return page, status


@bp.get("/keys")
@admins_only
def key_list() -> str:
    """Every team's API keys: prefix, scopes, expiry, last use."""
    return render_template("integrations/keys.html", api_keys=keys.team_keys(None))


@bp.route("/keys/new", methods=["GET", "POST"])
@admins_only
def key_new() -> Any:
    """Create a key; its secret is shown on the answer to this POST and never again."""
    if request.method == "GET":
        return _form()
    write_lock()
    team_id = _int(request.form.get("team"))
    team = db.session.get(Team, team_id) if team_id is not None else None
    if team is None:
        return _form(422, "Choose the team whose envelopes the key may use.")
    try:
        made = keys.create(
            team,
            request.form.get("name", ""),
            request.form.getlist("scopes"),
            request.form.get("expiry", ""),
            by=current_user,
        )
    except keys.KeyError_ as exc:
        db.session.rollback()
        return _form(422, str(exc))
    db.session.commit()
    return render_template("integrations/keys_created.html", key=made.key, secret=made.secret)


@bp.route("/keys/<int:key_id>/revoke", methods=["GET", "POST"])
@admins_only
def key_revoke(key_id: int) -> Any:
    """Ask, then revoke: calls with the key fail at once."""
    key = _key_or_404(key_id)
    if request.method == "GET":
        return render_template("integrations/keys_revoke.html", key=key)
    write_lock()
    key = _key_or_404(key_id)
    if keys.revoke(key, by=current_user):
        db.session.commit()
        flash(f"The key {key.name} ({key.prefix}…) is revoked.", "success")
    return redirect(url_for("integrations.key_list"), code=303)


def _int(value: str | None) -> int | None:
    text = value or ""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None
