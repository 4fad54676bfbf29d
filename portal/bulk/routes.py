"""Bulk send pages: pick a template, upload, check and map, send, watch, stop, report."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_htmx.responses import HTMXResponseStopPolling
from flask_login import current_user
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from portal import audit, exports, web
from portal.accounts.access import can_see_team, roles_required
from portal.bulk import columns as cols
from portal.bulk import drafts, forms, report, stopping
from portal.bulk.models import BatchState, BulkBatch, BulkRow, RowState
from portal.bulk.reading import MAX_BYTES, MAX_ROWS
from portal.envelopes import operations as envelopes
from portal.extensions import db, write_lock
from portal.library import operations as library
from portal.library.blueprint import sendable_version_or_404

bp = Blueprint("bulk", __name__, url_prefix="/bulk")
PREVIEW_ROWS = 5


@bp.record_once
def _console_summary(state: BlueprintSetupState) -> None:
    """The console shows the latest batches (``bulk/_console.html``), read only when it does."""
    state.app.jinja_env.globals["recent_bulk_batches"] = lambda: report.recent_batches(current_user)


def _batch_or_404(public_id: str) -> BulkBatch:
    batch = db.session.execute(
        select(BulkBatch).where(BulkBatch.public_id == public_id)
    ).scalar_one_or_none()
    if batch is None or not can_see_team(current_user, batch.team_id):
        abort(404)
    return batch


def _index(error: str | None = None, version_id: int | None = None) -> tuple[str, int]:
    page = render_template(
        "bulk/index.html",
        templates=library.sendable_templates(current_user),
        batches=report.recent_batches(current_user, 20),
        error=error,
        chosen=version_id,
        max_rows=MAX_ROWS,
        max_mb=MAX_BYTES // 1_048_576,
    )
    return page, 422 if error else 200


@bp.route("/")
@roles_required()
def index() -> tuple[str, int]:
    """Choose a template, get its CSV template, upload the filled file; recent batches."""
    return _index()


@bp.route("/templates/<int:version_id>.csv")
@roles_required()
def template_csv(version_id: int) -> Response:
    """The CSV template for one approved template version."""
    version = sendable_version_or_404(version_id)
    name = f"bulk-{version.template.name.lower().replace(' ', '-')}-v{version.number}.csv"
    response = Response(cols.template_csv(version), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Any:
    size = (request.content_length or 0) / 1_048_576
    return _index(
        f"The file is {size:.0f} MB; bulk send takes files of up to {MAX_BYTES // 1_048_576} MB "
        f"({MAX_ROWS:,} rows). Split it and upload each part; nothing was sent."
    )[0], 413


@bp.route("/upload/<int:version_id>", methods=["POST"])
@roles_required()
def upload(version_id: int) -> Any:
    """Read and check an uploaded file; its page shows what will be sent."""
    version = sendable_version_or_404(version_id)
    try:
        file_name, data = forms.upload(request.files)
        batch = drafts.upload(version, file_name, data, by=current_user)
    except (forms.FormProblem, drafts.BulkError) as exc:
        db.session.rollback()
        return _index(f"{exc} Nothing was sent.", version_id)
    return redirect(url_for("bulk.batch", public_id=batch.public_id))


def _draft_context(batch: BulkBatch) -> dict[str, Any]:
    columns = cols.columns_for(batch.version)
    return {
        "columns": columns,
        "missing": cols.missing(columns, batch.mapping),
        "unused": cols.unused(batch.headers, batch.mapping),
        "problems": report.problem_rows(batch),
        "preview": report.rows_page(batch, outcome=RowState.READY.value, limit=PREVIEW_ROWS),
        "counts": drafts.row_counts(batch),
        "keys": library.merge_keys(batch.version),
    }


@bp.route("/<public_id>")
@roles_required()
def batch(public_id: str) -> str:
    """A batch: before sending, what will be sent and every problem; then its progress."""
    batch = _batch_or_404(public_id)
    context: dict[str, Any] = {}
    if batch.state == BatchState.DRAFT.value:
        context = _draft_context(batch)
    else:
        context = {
            "progress": report.progress(batch),
            "rows": report.rows_page(batch, *_filters()),
            "counts": drafts.row_counts(batch),
        }
    return render_template(
        "bulk/batch.html",
        batch=batch,
        outcomes=report.OUTCOMES,
        statuses=report.STATUSES,
        filters=_filters(),
        **context,
    )


def _filters() -> tuple[str, str]:
    return request.args.get("outcome", ""), request.args.get("status", "")


@bp.route("/<public_id>/rows")
@roles_required()
def rows(public_id: str) -> str:
    """The batch's rows, filtered, a page at a time (the table's fragment for htmx)."""
    batch = _batch_or_404(public_id)
    after = request.args.get("after", "0")
    page = report.rows_page(batch, *_filters(), after=int(after) if after.isdigit() else 0)
    return web.page("bulk/rows.html", "bulk/_rows.html", batch=batch, rows=page, filters=_filters())


@bp.route("/<public_id>/progress")
@roles_required()
def progress(public_id: str) -> Any:
    """The progress bar (htmx polls it; 286 stops the polling once the batch has ended)."""
    batch = _batch_or_404(public_id)
    html = render_template("bulk/_progress.html", batch=batch, progress=report.progress(batch))
    if batch.state != BatchState.SENDING.value:
        return HTMXResponseStopPolling(html)
    response = Response(html)
    response.headers["HX-Trigger"] = "bulk-progress"
    return response


def _back(batch: BulkBatch) -> Response:
    return redirect(url_for("bulk.batch", public_id=batch.public_id))


def _run(batch: BulkBatch, verb: Any, done: str) -> Response:
    try:
        outcome = verb()
    except (drafts.BulkError, forms.FormProblem) as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(done.format(n=outcome), "success")
    return _back(batch)


@bp.route("/<public_id>/mapping", methods=["POST"])
@roles_required()
def mapping(public_id: str) -> Response:
    """Match the file's columns by hand; every row is checked again."""
    batch = _batch_or_404(public_id)
    chosen = forms.mapping(request.form)
    return _run(
        batch,
        lambda: drafts.remap(batch, chosen, by=current_user),
        "Columns matched; every row was checked again.",
    )


@bp.route("/<public_id>/exclude", methods=["POST"])
@roles_required()
def exclude(public_id: str) -> Response:
    """Leave rows out of the sending (or take them back)."""
    batch = _batch_or_404(public_id)
    leave_out = request.form.get("action") != "include"
    return _run(
        batch,
        lambda: drafts.exclude(
            batch, forms.row_numbers(request.form.get("rows", "")), leave_out, by=current_user
        ),
        "{n} rows " + ("left out." if leave_out else "taken back."),
    )


@bp.route("/<public_id>/send", methods=["POST"])
@roles_required()
def send(public_id: str) -> Response:
    """Send the batch's ready rows (a job creates the envelopes at the mail pace)."""
    batch = _batch_or_404(public_id)
    leave_out = request.form.get("exclude_problems") == "yes"
    return _run(
        batch,
        lambda: drafts.start(batch, by=current_user, exclude_problems=leave_out),
        "Sending {n} envelopes. You can leave this page; you get an email when it is done.",
    )


@bp.route("/<public_id>/discard", methods=["POST"])
@roles_required()
def discard(public_id: str) -> Response:
    """Throw a draft away."""
    batch = _batch_or_404(public_id)
    try:
        drafts.discard(batch, by=current_user)
    except drafts.BulkError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _back(batch)
    flash("The upload was discarded; nothing was sent.", "success")
    return redirect(url_for("bulk.index"))


@bp.route("/<public_id>/cancel", methods=["POST"])
@roles_required()
def cancel(public_id: str) -> Response:
    """Stop sending: rows not created yet are not created."""
    batch = _batch_or_404(public_id)
    return _run(
        batch,
        lambda: stopping.cancel(batch, by=current_user),
        "Cancelled: {n} rows were not sent. Envelopes already sent can be voided below.",
    )


@bp.route("/<public_id>/void", methods=["POST"])
@roles_required()
def void(public_id: str) -> Response:
    """Void every envelope of the batch still out for signature, with one reason."""
    batch = _batch_or_404(public_id)
    return _run(
        batch,
        lambda: stopping.void_created(batch, request.form.get("reason", ""), by=current_user),
        "Voiding {n} envelopes; their links stop working.",
    )


@bp.route("/<public_id>/rows/<int:number>/preview.pdf")
@roles_required()
def preview(public_id: str, number: int) -> Any:
    """One row's document exactly as its customer would get it (nothing stored)."""
    batch = _batch_or_404(public_id)
    row = db.session.execute(
        select(BulkRow).where(BulkRow.batch_id == batch.id, BulkRow.number == number)
    ).scalar_one_or_none()
    if row is None:
        abort(404)
    try:
        pdf = envelopes.preview(batch.version, row.merge_data)
    except envelopes.EnvelopeError as exc:
        return web.error_response(422, str(exc))
    return web.pdf_response(pdf, f"row-{number}-preview.pdf", download=False)


@bp.route("/<public_id>/report.csv")
@roles_required()
def report_csv(public_id: str) -> Response:
    """Every row's outcome and envelope status as CSV (at any time; recorded)."""
    batch = _batch_or_404(public_id)
    write_lock()
    batch = _batch_or_404(public_id)
    audit.record("bulk.report_downloaded", actor=current_user, subject=batch)
    db.session.commit()
    return exports.csv_response(
        exports.csv_stream(report.REPORT_HEADER, report.report_rows(batch)),
        f"bulk-{batch.public_id[:8]}-report.csv",
    )
