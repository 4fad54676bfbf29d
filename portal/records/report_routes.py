"""Routes of the records centre: the sealed PDF compliance report (``portal.records.reports``)."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask_login import current_user

from portal import web
from portal.records import bp, officers_only, reports
from portal.records.periods import QUICK_PICKS


def _form(query: reports.ReportQuery, errors: list[str], status: int = 200) -> tuple[str, int]:
    page = render_template(
        "records/report.html",
        query=query,
        errors=errors,
        picks=QUICK_PICKS,
        scopes=reports.scope_choices(),
        cap=reports.max_envelopes(),
    )
    return page, status


@bp.get("/report")
@officers_only
def report() -> Any:
    """Choose the period and scope of a compliance report."""
    query = reports.ReportQuery.parse(request.args)
    return _form(
        query, query.errors if request.args else [], 422 if request.args and query.errors else 200
    )


@bp.get("/report.pdf")
@officers_only
def report_pdf() -> Any:
    """The sealed compliance report (an audit event); the form again with what was wrong."""
    query = reports.ReportQuery.parse(request.args)
    try:
        content, name = reports.make(query, current_user._get_current_object())
    except reports.ReportError as exc:
        return _form(query, query.errors or [str(exc)], 422)
    response = web.pdf_response(content, name)
    response.headers["Cache-Control"] = "private, no-store"
    return response
