"""Routes of the records centre: the access audit (``portal.records.access``)."""

from __future__ import annotations

from typing import Any

from flask import abort, render_template, request
from flask_login import current_user
from sqlalchemy import select

from portal import exports, web
from portal.accounts.models import User
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.records import access, bp, officers_only
from portal.records.periods import QUICK_PICKS, Period


@bp.get("/access")
@officers_only
def access_index() -> str:
    """Every staff member, each linking to their access report."""
    return render_template("records/access_index.html", staff=access.staff_choices())


def _staff_or_404(user_id: int) -> User:
    staff = db.session.get(User, user_id)
    if staff is None:
        abort(404)
    return staff


def _staff_page(staff: User, period: Period, status: int = 200) -> tuple[str, int]:
    before = access.cursor(request.args.get("before"))
    page = render_template(
        "records/access_staff.html",
        staff=staff,
        period=period,
        picks=QUICK_PICKS,
        page=access.staff_access(staff.id, period, before),
        errors=period.errors,
        paged=before is not None,
    )
    return page, status


@bp.get("/access/<int:user_id>")
@officers_only
def access_staff(user_id: int) -> Any:
    """What one staff member viewed, downloaded or exported in a period (paged)."""
    staff = _staff_or_404(user_id)
    period = Period.parse(request.args)
    return _staff_page(staff, period, 422 if period.errors else 200)


@bp.get("/access/<int:user_id>.csv")
@officers_only
def access_staff_csv(user_id: int) -> Any:
    """The same as a CSV file (streamed; recorded as an export)."""
    staff = _staff_or_404(user_id)
    period = Period.parse(request.args)
    if period.errors:
        return _staff_page(staff, period, 422)
    name = f"access-{staff.id}-{period.first:%Y%m%d}-{period.last:%Y%m%d}.csv"
    by = current_user._get_current_object()
    return exports.csv_response(access.staff_csv(staff, period, by), name)


@bp.get("/access/envelope/<public_id>")
@officers_only
def envelope_access(public_id: str) -> str:
    """Who accessed an envelope, newest first (the envelope page loads it into its section)."""
    envelope = db.session.execute(
        select(Envelope).where(Envelope.public_id == public_id)
    ).scalar_one_or_none()
    if envelope is None:
        abort(404)
    before = access.cursor(request.args.get("before"))
    return web.page(
        "records/access_envelope.html",
        "records/_access_envelope.html",
        envelope=envelope,
        page=access.envelope_access(envelope, before),
    )
