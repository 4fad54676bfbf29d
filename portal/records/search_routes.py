"""Routes of the audit trail search and the records exports (see ``search`` and ``exports``)."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import audit, clock, exports, web
from portal.extensions import db, read_only, write_lock
from portal.records import bp, officers_only, search
from portal.records import exports as records_exports

DOWNLOADED = "records.export_downloaded"
audit.add_labels({DOWNLOADED: "Records export downloaded"})


def _query() -> search.AuditQuery:
    return search.AuditQuery.parse(request.args)


@bp.get("/audit")
@officers_only
def audit_search() -> str:
    """The audit trail search: filters, newest events first, a hundred at a time."""
    query = _query()
    user = current_user._get_current_object()
    return web.page(
        "records/search.html",
        "records/search_results.html",
        query=query,
        periods=search.PERIODS,
        events=search.event_choices(),
        staff=search.staff_choices(),
        page=search.page(
            query, user, request.args.get("after", ""), count_later=web.wants_fragment()
        ),
        inline_rows=records_exports.inline_limit(),
    )


@bp.get("/audit/count")
@officers_only
def audit_count() -> str:
    """How many events a search matches (asked for once its rows show)."""
    shown = request.args.get("shown", "0")
    return render_template(
        "records/search_count.html",
        shown=int(shown) if shown.isascii() and shown.isdigit() and len(shown) < 4 else 0,
        total=search.count(_query(), current_user._get_current_object()),
        cap=search.COUNT_CAP,
    )


@bp.post("/exports")
@read_only
@officers_only
def export_start() -> Any:
    """Export a search: downloaded at once when small, otherwise made by a job."""
    try:
        kind = records_exports.kind_of(request.form.get("kind", ""))
    except records_exports.ExportProblem as exc:
        return web.error_response(400, str(exc))
    query = search.AuditQuery.parse(request.form)
    if query.problems:
        return web.error_response(400, " ".join(query.problems))
    user = current_user._get_current_object()
    if records_exports.fits_inline(kind, query, user):
        db.session.rollback()
        name = f"{kind.name}-{clock.utcnow():%Y%m%d-%H%M}.csv"
        return exports.csv_response(records_exports.stream(kind, query, user.id), name)
    write_lock()
    export = records_exports.start(kind, query, user)
    public_id = export.public_id
    db.session.commit()
    return redirect(url_for("records.export_status", public_id=public_id), code=303)


def _export_or_404(public_id: str) -> records_exports.RecordsExport:
    export = records_exports.find(public_id)
    if export is None:
        abort(404)
    if not records_exports.may_see(export, current_user._get_current_object()):
        abort(403)
    return export


@bp.get("/exports")
@officers_only
def export_list() -> str:
    """The exports the signed-in person asked for as jobs."""
    return render_template(
        "records/exports.html",
        exports=records_exports.recent(current_user._get_current_object()),
        states=records_exports.STATES,
    )


@bp.get("/exports/<public_id>")
@officers_only
def export_status(public_id: str) -> str:
    """A job's progress (the fragment is polled while it runs), and its download when ready."""
    export = _export_or_404(public_id)
    return web.page(
        "records/export.html",
        "records/export_progress.html",
        export=export,
        kind=records_exports.KINDS[export.kind],
        states=records_exports.STATES,
    )


@bp.get("/exports/<public_id>/download")
@officers_only
def export_download(public_id: str) -> Any:
    """A ready job's file (its requester and admins only); the download is an audit event."""
    export = _export_or_404(public_id)
    if export.state != "ready":
        return web.error_response(409, "This export is not ready to download.")
    user = current_user._get_current_object()
    data = {"export": export.public_id, "kind": export.kind, "sha256": export.sha256}
    filename, export_id = export.filename, export.id
    # A GET that writes: the lock only for the event (the file is read afterwards).
    write_lock()
    audit.record(DOWNLOADED, actor=user, data=data)
    db.session.commit()
    found = db.session.get(records_exports.RecordsExport, export_id)
    assert found is not None
    response: Response = exports.csv_response(records_exports.download(found), filename)
    return response
