"""Routes of the records centre (see portal/records/__init__.py): data-subject requests.

The customer's email travels in POST bodies only (never in a URL, where access logs and
browser history would keep it)."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask_login import current_user

from portal.extensions import db, read_only
from portal.records import bp, holds, officers_only, subjects
from portal.records.hold_routes import send_open


def _page(email: str = "", status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("error", None)
    context.setdefault("found", None)
    context.setdefault("outcomes", None)
    return render_template("records/subject.html", email=email, **context), status


@bp.get("/subject")
@officers_only
def subject() -> tuple[str, int]:
    """The request page: which customer (by email)."""
    return _page()


@bp.post("/subject")
@read_only
@officers_only
def subject_lookup() -> tuple[str, int]:
    """What is held about one customer: envelopes, status, retention, holds."""
    raw = request.form.get("email", "")
    try:
        email = holds.customer_email(raw)
    except holds.HoldError as exc:
        return _page(raw[:254], 422, error=str(exc))
    return _page(email, found=subjects.held(email))


@bp.post("/subject/export")
@read_only
@officers_only
def subject_export() -> Any:
    """Everything held about the customer as a ZIP (recorded as ``subject.exported``)."""
    raw = request.form.get("email", "")
    try:
        handle, _count = subjects.export(raw, current_user)
    except holds.HoldError as exc:
        db.session.rollback()
        return _page(raw[:254], 422, error=str(exc))
    return send_open(handle, "data-subject-export.zip")


@bp.post("/subject/erase")
@officers_only
def subject_erase() -> tuple[str, int]:
    """Erase what no retention period or hold protects; show why the rest is kept."""
    raw = request.form.get("email", "")
    try:
        outcomes = subjects.erase(raw, request.form.get("reference"), current_user)
    except holds.HoldError as exc:
        db.session.rollback()
        email = raw[:254]
        found = None
        try:
            email = holds.customer_email(raw)
            found = subjects.held(email)
        except holds.HoldError:
            pass
        return _page(email, 422, error=str(exc), found=found)
    email = holds.customer_email(raw)
    return _page(email, outcomes=outcomes, found=subjects.held(email))
