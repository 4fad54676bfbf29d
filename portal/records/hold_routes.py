"""Routes of the records centre (see portal/records/__init__.py): legal holds and their ZIP."""

from __future__ import annotations

from typing import IO, Any

from flask import (
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import web
from portal.envelopes import console
from portal.extensions import db, read_only
from portal.records import bp, holds, officers_only

SCOPES = {
    holds.HoldScope.EMAIL.value: "Everything of one customer email (including later envelopes)",
    holds.HoldScope.TEMPLATE.value: "Every envelope of one template (all its versions)",
    holds.HoldScope.ENVELOPES.value: "Envelopes chosen from a search",
}


def _hold_or_404(hold_id: int) -> holds.LegalHold:
    hold = db.session.get(holds.LegalHold, hold_id)
    if hold is None:
        abort(404)
    return hold


def _search(args: Any) -> tuple[console.ListQuery, console.Page | None]:
    query = console.ListQuery.parse(args, all_teams=True)
    if not query.filtered:
        return query, None
    return query, console.page(query, current_user, args.get("after", ""), count_later=False)


@bp.get("/holds")
@officers_only
def holds_list() -> str:
    """Every legal hold, active ones first."""
    return render_template("records/holds.html", holds=holds.all_holds())


def _ticked(values: list[str]) -> list[int]:
    """Envelope ids ticked so far (kept across searches), the nonsense left out."""
    return sorted({int(v) for v in values[: holds.MAX_CHOSEN] if v.isascii() and v.isdigit()
                   and len(v) < 12})  # fmt: skip


def _new_page(form: Any, error: str | None = None, status: int = 200) -> tuple[str, int]:
    query, found = _search(request.args)
    page = web.page(
        "records/hold_new.html",
        "records/_hold_search.html",
        form=form,
        error=error,
        scopes=SCOPES,
        templates=console.template_choices(current_user),
        statuses=console.STATUS_LABELS,
        query=query,
        found=found,
        chosen=_ticked(form.getlist("envelope")),
    )
    return page, status


@bp.route("/holds/new", methods=["GET", "POST"])
@officers_only
def hold_new() -> Any:
    """Place a hold: name, case reference, reason and scope (an email, a template, or
    envelopes ticked in a search)."""
    if request.method == "GET":
        return _new_page(request.args)
    form = request.form
    try:
        hold = holds.place(
            name=form.get("name"),
            case_ref=form.get("case_ref"),
            reason=form.get("reason"),
            scope=form.get("scope"),
            email=form.get("email"),
            template_id=form.get("template"),
            chosen=form.getlist("envelope"),
            by=current_user,
        )
        db.session.commit()
    except holds.HoldError as exc:
        db.session.rollback()
        return _new_page(form, str(exc), 422)
    flash(f"Hold “{hold.name}” placed. Nothing it covers can be purged until it is released.",
          "success")  # fmt: skip
    return redirect(url_for("records.hold_page", hold_id=hold.id), code=303)


@bp.get("/holds/<int:hold_id>")
@officers_only
def hold_page(hold_id: int) -> str:
    """One hold: what it covers (count and pages), its export, and releasing it."""
    hold = _hold_or_404(hold_id)
    after = request.args.get("after", "")
    cursor = int(after) if after.isascii() and after.isdigit() and len(after) < 12 else None
    envelopes, next_cursor = holds.covered_page(hold, cursor)
    return render_template(
        "records/hold.html",
        hold=hold,
        count=holds.covered_count(hold),
        envelopes=envelopes,
        next_cursor=next_cursor,
        paged=cursor is not None,
        export=holds.latest_export(hold),
        inline=holds.INLINE_ENVELOPES,
        error=None,
    )


@bp.post("/holds/<int:hold_id>/release")
@officers_only
def hold_release(hold_id: int) -> Any:
    """Release a hold (needs a reason)."""
    hold = _hold_or_404(hold_id)
    try:
        holds.release(hold, request.form.get("reason"), by=current_user)
        db.session.commit()
    except holds.HoldError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(f"Hold “{hold.name}” released.", "success")
    return redirect(url_for("records.hold_page", hold_id=hold_id), code=303)


def send_open(handle: IO[bytes], name: str) -> Response:
    """Send an anonymous temporary file (closed, and so gone, once sent)."""
    response = send_file(handle, mimetype="application/zip", as_attachment=True,
                         download_name=name)  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/holds/<int:hold_id>/export")
@read_only
@officers_only
def hold_export(hold_id: int) -> Any:
    """The hold's ZIP: at once for a few envelopes, else built by a job (progress below)."""
    hold = _hold_or_404(hold_id)
    count = holds.covered_count(hold)
    if count == 0:
        flash("The hold covers no envelopes: there is nothing to export.", "error")
        return redirect(url_for("records.hold_page", hold_id=hold_id), code=303)
    if count <= holds.INLINE_ENVELOPES:
        handle, _rows = holds.build_now(hold, current_user)
        return send_open(handle, holds.zip_name(hold))
    holds.request_export(hold, current_user, count)
    db.session.commit()
    flash("The ZIP is being built; it downloads from this page when ready.", "success")
    return redirect(url_for("records.hold_page", hold_id=hold_id), code=303)


def _export_or_404(hold_id: int, export_id: int) -> holds.HoldExport:
    export = db.session.get(holds.HoldExport, export_id)
    if export is None or export.hold_id != hold_id:
        abort(404)
    return export


@bp.get("/holds/<int:hold_id>/exports/<int:export_id>")
@officers_only
def hold_export_progress(hold_id: int, export_id: int) -> str:
    """The job's progress (htmx polls it until the ZIP is ready)."""
    return render_template(
        "records/_hold_export.html",
        hold=_hold_or_404(hold_id),
        export=_export_or_404(hold_id, export_id),
    )


@bp.get("/holds/<int:hold_id>/exports/<int:export_id>.zip")
@officers_only
def hold_export_download(hold_id: int, export_id: int) -> Any:
    """A ZIP the job built (kept a day, stored encrypted): decrypted a part at a time."""
    hold = _hold_or_404(hold_id)
    export = _export_or_404(hold_id, export_id)
    if export.state != "done":
        flash("That ZIP is not available (any more); export it again.", "error")
        return redirect(url_for("records.hold_page", hold_id=hold_id), code=303)
    export_id, name = export.id, holds.zip_name(hold)
    # A GET that writes: the lock only for the access event (the parts are read afterwards).
    holds.record_download(export, current_user._get_current_object())
    db.session.commit()
    export = _export_or_404(hold_id, export_id)
    response = Response(stream_with_context(holds.download(export)), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    if export.size is not None:
        response.headers["Content-Length"] = str(export.size)
    response.headers["Cache-Control"] = "no-store"
    return response
