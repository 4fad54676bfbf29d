"""``GET /healthz``: database and queue state for load balancers and monitoring."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portal import jobs
from portal.extensions import db

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    """200 when the database and queues answer, 503 otherwise."""
    try:
        db.session.execute(text("SELECT 1"))
        database: dict[str, Any] = {"ok": True, "dialect": db.engine.dialect.name}
    except SQLAlchemyError as exc:
        db.session.rollback()
        database = {"ok": False, "error": type(exc).__name__}
    queue_ok, queue_state = jobs.queue_health(current_app._get_current_object())  # type: ignore[attr-defined]
    healthy = bool(database["ok"]) and queue_ok
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": database,
        "queue": queue_state,
    }
    return body, 200 if healthy else 503
