"""Admin pages for webhook endpoints, their secrets and the delivery log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from portal import clock, web
from portal.accounts.models import Team
from portal.extensions import db, write_lock
from portal.integrations import admins_only, bp, delivery, webhooks  # noqa: F401
from portal.integrations.webhooks import WebhookEndpoint, WebhookMessage

MESSAGES_SHOWN = 50


def _endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        abort(404)
    return endpoint


def _teams() -> list[Team]:
    return list(db.session.execute(select(Team).order_by(Team.name)).scalars())


def _form_page(
    template: str, status: int = 200, error: str | None = None, **context: Any
) -> tuple[str, int]:
    page = render_template(
        template,
        types=webhooks.TYPES,
        all_types=webhooks.ALL,
        teams=_teams(),
        form=request.form,
        error=error,
        **context,
    )
    return page, status


@bp.get("/webhooks")
@admins_only
def webhook_list() -> str:
    """Every team's webhook endpoints."""
    teams = {team.id: team.name for team in _teams()}
    return render_template(
        "integrations/webhooks.html", endpoints=webhooks.team_endpoints(), teams=teams
    )


@bp.route("/webhooks/new", methods=["GET", "POST"])
@admins_only
def webhook_new() -> Any:
    """Add an endpoint: team, URL, description, event types."""
    if request.method == "GET":
        return _form_page("integrations/webhook_new.html")
    write_lock()
    team = db.session.get(Team, _int(request.form.get("team")))
    if team is None:
        return _form_page("integrations/webhook_new.html", 422, "Choose the team.")
    try:
        endpoint, _secret = webhooks.create_endpoint(
            team,
            request.form.get("url", ""),
            request.form.get("description", ""),
            request.form.getlist("events"),
            by=current_user,
        )
    except webhooks.EndpointError as exc:
        db.session.rollback()
        return _form_page("integrations/webhook_new.html", 422, str(exc))
    db.session.commit()
    flash("Endpoint added. Show its secret to set up your receiver.", "success")
    return redirect(url_for("integrations.webhook_page", endpoint_id=endpoint.id))


def _int(value: str | None) -> int:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 10 else 0


def _endpoint_page(
    endpoint: WebhookEndpoint, status: int = 200, error: str | None = None
) -> tuple[str, int]:
    return _form_page(
        "integrations/webhook.html",
        status,
        error,
        endpoint=endpoint,
        team=db.session.get(Team, endpoint.team_id),
        messages=webhooks.messages_of(endpoint, MESSAGES_SHOWN),
        now=clock.utcnow(),
    )


@bp.get("/webhooks/<int:endpoint_id>")
@admins_only
def webhook_page(endpoint_id: int) -> tuple[str, int]:
    """One endpoint: settings, secret, test event, replay, and its latest messages."""
    return _endpoint_page(_endpoint_or_404(endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>")
@admins_only
def webhook_change(endpoint_id: int) -> Any:
    """Save an endpoint's URL, description, event types and enabled flag."""
    write_lock()
    endpoint = _endpoint_or_404(endpoint_id)
    try:
        webhooks.change_endpoint(
            endpoint,
            request.form.get("url", ""),
            request.form.get("description", ""),
            request.form.getlist("events"),
            request.form.get("enabled") == "yes",
            by=current_user,
        )
    except webhooks.EndpointError as exc:
        db.session.rollback()
        return _endpoint_page(_endpoint_or_404(endpoint_id), 422, str(exc))
    db.session.commit()
    flash("Endpoint saved.", "success")
    return redirect(url_for("integrations.webhook_page", endpoint_id=endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>/delete")
@admins_only
def webhook_delete(endpoint_id: int) -> Response:
    """Delete an endpoint and its log."""
    write_lock()
    webhooks.delete_endpoint(_endpoint_or_404(endpoint_id), by=current_user)
    db.session.commit()
    flash("Endpoint deleted.", "success")
    return redirect(url_for("integrations.webhook_list"))


@bp.post("/webhooks/<int:endpoint_id>/secret")
@admins_only
def webhook_secret(endpoint_id: int) -> str:
    """Show the endpoint's secret (audited)."""
    return _secret(endpoint_id, webhooks.reveal_secret, rotated=False)


@bp.post("/webhooks/<int:endpoint_id>/rotate")
@admins_only
def webhook_rotate(endpoint_id: int) -> str:
    """A new secret; the old one keeps working for 24 hours."""
    return _secret(endpoint_id, webhooks.rotate_secret, rotated=True)


def _secret(endpoint_id: int, verb: Callable[..., str], *, rotated: bool) -> str:
    write_lock()
    endpoint = _endpoint_or_404(endpoint_id)
    shown = verb(endpoint, by=current_user)
    db.session.commit()
    return web.page(
        "integrations/webhook_secret.html",
        "integrations/_webhook_secret.html",
        endpoint=endpoint,
        secret=shown,
        rotated=rotated,
    )


@bp.post("/webhooks/<int:endpoint_id>/test")
@admins_only
def webhook_test(endpoint_id: int) -> Response:
    """Send a ``webhook.test`` event now."""
    return _if_enabled(
        endpoint_id,
        lambda endpoint: webhooks.send_test(endpoint, by=current_user),
        "Test event sent; its outcome is in the log below.",
    )


def _if_enabled(endpoint_id: int, act: Callable[[WebhookEndpoint], object], done: str) -> Response:
    """Do ``act`` to an enabled endpoint and say ``done`` (or ask to enable it first)."""
    write_lock()
    endpoint = _endpoint_or_404(endpoint_id)
    if not endpoint.enabled:
        flash("Enable the endpoint first.", "error")
    else:
        act(endpoint)
        db.session.commit()
        flash(done, "success")
    return redirect(url_for("integrations.webhook_page", endpoint_id=endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>/replay")
@admins_only
def webhook_replay(endpoint_id: int) -> Any:
    """Send again every message since a moment (at most ``REPLAY_LIMIT``)."""
    write_lock()
    endpoint = _endpoint_or_404(endpoint_id)
    try:
        since = clock.parse_moment(request.form.get("since", "")[:40])
    except clock.ClockError as exc:
        db.session.rollback()
        return _endpoint_page(endpoint, 422, str(exc))
    count = webhooks.replay_since(endpoint, since, by=current_user)
    db.session.commit()
    flash(f"{count} message{'' if count == 1 else 's'} queued again.", "success")
    return redirect(url_for("integrations.webhook_page", endpoint_id=endpoint_id))


def _message_or_404(endpoint_id: int, message_id: int) -> WebhookMessage:
    message = db.session.get(WebhookMessage, message_id)
    if message is None or message.endpoint_id != endpoint_id:
        abort(404)
    return message


@bp.get("/webhooks/<int:endpoint_id>/messages/<int:message_id>")
@admins_only
def webhook_message(endpoint_id: int, message_id: int) -> str:
    """One message: its body and attempts (a fragment for htmx)."""
    message = _message_or_404(endpoint_id, message_id)
    return web.page(
        "integrations/webhook_message.html",
        "integrations/_webhook_attempts.html",
        endpoint=_endpoint_or_404(endpoint_id),
        message=message,
        attempts=webhooks.attempts_of(message),
    )


@bp.post("/webhooks/<int:endpoint_id>/messages/<int:message_id>/redeliver")
@admins_only
def webhook_redeliver(endpoint_id: int, message_id: int) -> Response:
    """Send one message again now."""
    return _if_enabled(
        endpoint_id,
        lambda _: webhooks.redeliver(_message_or_404(endpoint_id, message_id), by=current_user),
        "Message queued again.",
    )
