"""``/api/v1/bulk``: bulk batches from JSON rows or an uploaded CSV, their status and rows.

A batch is the console's (``portal.bulk``): JSON rows are written as the CSV file an upload
would be (``drafts.from_rows``) and from there read, checked, kept and sent by the same code as
a file uploaded on the bulk page (``drafts.upload``, ``drafts.start``, the batch job). Nothing
is sent when a row has a problem, unless ``skip_invalid`` leaves those rows out; the draft is
then discarded (``bulk.discarded``) and the answer names every problem by row and field.
"""

from __future__ import annotations

from typing import Any, NoReturn

import flask_smorest
import marshmallow as ma
from flask import g, request, url_for
from sqlalchemy import select

from portal.bulk import drafts, report
from portal.bulk.models import BulkBatch, BulkRow
from portal.bulk.reading import MAX_BYTES, MAX_ROWS
from portal.envelopes.checks import MAX_LENGTH
from portal.extensions import db, write_lock
from portal.integrations.api import current_key, problem, requires, send_limited
from portal.integrations.api_envelopes import _sendable as sendable_version
from portal.integrations.schemas import MAX_ID, PageArgs, Strict, UtcDateTime

blp = flask_smorest.Blueprint(
    "api_bulk",
    __name__,
    url_prefix="/api/v1/bulk",
    description="Bulk batches: one template to many customers, from JSON rows or a CSV file.",
)


class BulkRecipientSchema(Strict):
    role = ma.fields.String(required=True, validate=ma.validate.Length(1, 40))
    name = ma.fields.String(validate=ma.validate.Length(max=MAX_LENGTH["name"]))
    email = ma.fields.String(validate=ma.validate.Length(max=MAX_LENGTH["email"]))
    phone = ma.fields.String(validate=ma.validate.Length(max=MAX_LENGTH["phone"]))
    locale = ma.fields.String(validate=ma.validate.Length(max=10))
    auth_method = ma.fields.String(validate=ma.validate.OneOf(["link", "email_otp", "access_code"]))
    access_code = ma.fields.String(load_only=True, validate=ma.validate.Length(max=100))


class BulkRowSchema(Strict):
    merge_data = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.Length(1, 80)),
        values=ma.fields.String(validate=ma.validate.Length(max=MAX_LENGTH["merge"])),
        load_default=dict,
    )
    recipients = ma.fields.List(
        ma.fields.Nested(BulkRecipientSchema),
        load_default=list,
        validate=ma.validate.Length(max=20),
        metadata={"description": "By role; a name or email may come from a merge key"},
    )
    ticket_id = ma.fields.String(validate=ma.validate.Length(max=MAX_LENGTH["ticket_id"]))
    ticket_url = ma.fields.String(validate=ma.validate.Length(max=MAX_LENGTH["ticket_url"]))


class BulkCreateSchema(Strict):
    template_id = ma.fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(1, MAX_ID)
    )
    rows = ma.fields.List(
        ma.fields.Nested(BulkRowSchema), required=True, validate=ma.validate.Length(1, MAX_ROWS)
    )
    skip_invalid = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Send the good rows and leave out those with problems"},
    )


class BulkUploadSchema(ma.Schema):
    """The multipart form of a CSV (or XLSX) upload."""

    template_id = ma.fields.Integer(required=True, validate=ma.validate.Range(1, MAX_ID))
    file = ma.fields.Raw(
        required=True,
        metadata={"type": "string", "format": "binary", "description": "CSV or XLSX, 10 MB"},
    )
    skip_invalid = ma.fields.Boolean(load_default=False)


class CountsSchema(Strict):
    total = ma.fields.Integer()
    ready = ma.fields.Integer(metadata={"description": "Checked and waiting to be sent"})
    invalid = ma.fields.Integer()
    excluded = ma.fields.Integer()
    pending = ma.fields.Integer()
    created = ma.fields.Integer(metadata={"description": "Envelopes created and sent"})
    failed = ma.fields.Integer()
    cancelled = ma.fields.Integer()


class BatchSchema(Strict):
    id = ma.fields.String()
    state = ma.fields.String(metadata={"description": "sending, finished, cancelled, ..."})
    template_id = ma.fields.Integer()
    file_name = ma.fields.String()
    created_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    counts = ma.fields.Nested(CountsSchema)
    error = ma.fields.String(allow_none=True)
    links = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())


class RowSchema(Strict):
    number = ma.fields.Integer(metadata={"description": "The file's row (JSON: index + 2)"})
    index = ma.fields.Integer(
        allow_none=True, metadata={"description": "Position in the JSON rows (null: a file)"}
    )
    state = ma.fields.String()
    problems = ma.fields.List(ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String()))
    name = ma.fields.String(allow_none=True)
    email = ma.fields.String(allow_none=True)
    ticket_id = ma.fields.String(allow_none=True)
    envelope_id = ma.fields.String(allow_none=True, metadata={"description": "Once created"})
    envelope_status = ma.fields.String(allow_none=True)
    error = ma.fields.String(allow_none=True)


class RowPageSchema(Strict):
    items = ma.fields.List(ma.fields.Nested(RowSchema))
    next_cursor = ma.fields.String(allow_none=True)


def _batch(public_id: str) -> BulkBatch:
    batch = db.session.execute(
        select(BulkBatch).where(BulkBatch.public_id == public_id[:32])
    ).scalar_one_or_none()
    if batch is None or batch.team_id != current_key().team_id:
        problem(404, "not-found", "No such batch", "No bulk batch with this id.")
    return batch


def _shown(batch: BulkBatch) -> dict[str, Any]:
    counts = drafts.row_counts(batch)
    base = url_for("api_bulk.get_batch", batch_id=batch.public_id)
    return {
        "id": batch.public_id,
        "state": batch.state,
        "template_id": batch.version.template_id,
        "file_name": batch.file_name,
        "created_at": batch.created_at,
        "started_at": batch.started_at,
        "finished_at": batch.finished_at,
        "counts": {"total": batch.total_rows, **counts},
        "error": batch.error,
        "links": {"self": base, "rows": f"{base}/rows"},
    }


def _refused(detail: str, errors: dict[str, Any] | None = None) -> NoReturn:
    db.session.rollback()
    kind = "validation-failed" if errors else "refused"
    problem(422, kind, "Batch not sent", detail, errors)


def _json_rows(batch: BulkBatch) -> bool:
    return batch.file_name == drafts.JSON_ROWS_FILE


def _row_problems(batch: BulkBatch) -> dict[str, Any]:
    """Every problem by row: the JSON rows' index, or the file's row number."""
    found: dict[str, Any] = {}
    rows = db.session.execute(
        select(BulkRow.number, BulkRow.problems)
        .where(BulkRow.batch_id == batch.id, BulkRow.state == "invalid")
        .order_by(BulkRow.number)
    )
    for number, problems in rows:
        where = str(number - 2) if _json_rows(batch) else f"row {number}"
        messages = found.setdefault(where, {})
        for item in problems:
            messages.setdefault(item["column"], []).append(item["message"])
    return found


def _upload_args() -> tuple[int, bool, str, bytes]:
    loaded = BulkUploadSchema().load(
        {
            **{k: v for k, v in request.form.items() if k in ("template_id", "skip_invalid")},
            "file": request.files.get("file"),
        }
    )
    upload = loaded["file"]
    if upload is None or not getattr(upload, "filename", None):
        problem(422, "validation-failed", "Invalid request", errors={"file": ["Attach the file."]})
    try:
        data = upload.stream.read(MAX_BYTES + 1)
    finally:
        upload.close()
    return int(loaded["template_id"]), bool(loaded["skip_invalid"]), str(upload.filename), data


@blp.route("", methods=["POST"])
@requires("bulk:write")
@send_limited
@blp.doc(
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": BulkCreateSchema},
            "multipart/form-data": {"schema": BulkUploadSchema},
        },
    }
)
@blp.response(201, BatchSchema)
def create_batch() -> Any:
    """Send one template to many customers.

    JSON `rows`, or a CSV/XLSX `file` (multipart: the console's bulk upload, with its columns,
    limits and checks). Every row is checked before anything is sent: a row with a problem
    stops the batch (422, `errors` by row) unless `skip_invalid` leaves it out. Envelopes are
    then created by the batch job, paced like the console's.
    """
    actor = current_key().actor
    try:
        if request.mimetype == "multipart/form-data":
            template_id, skip, file_name, data = _upload_args()
            write_lock()
            version = sendable_version(template_id)
            batch = drafts.upload(version, file_name, data, by=actor)
        else:
            body = BulkCreateSchema().load(request.get_json(silent=True) or {})
            skip = body["skip_invalid"]
            write_lock()
            version = sendable_version(body["template_id"])
            batch = drafts.from_rows(version, body["rows"], by=actor)
    except ma.ValidationError as exc:
        _refused("Fields are missing, of the wrong type or unknown.", _messages(exc))
    except drafts.BulkError as exc:
        _refused(f"{exc} Nothing was sent.")
    if batch.invalid_rows and not skip:
        errors = {"rows": _row_problems(batch)}
        drafts.discard(batch, by=actor)
        problem(
            422,
            "validation-failed",
            "Batch not sent",
            f"{batch.invalid_rows:,} of {batch.total_rows:,} rows have problems; nothing was "
            "sent. Fix them, or send with skip_invalid to leave them out.",
            errors,
        )
    try:
        drafts.start(batch, by=actor, exclude_problems=skip)
    except drafts.BulkError as exc:
        db.session.rollback()
        drafts.discard(batch, by=actor)
        problem(422, "refused", "Batch not sent", f"{exc} Nothing was sent.")
    batch = _batch(batch.public_id)
    return _shown(batch), 201, {"Location": url_for("api_bulk.get_batch", batch_id=batch.public_id)}


def _messages(exc: ma.ValidationError) -> dict[str, Any]:
    messages = exc.messages
    return messages if isinstance(messages, dict) else {"_schema": messages}


@blp.route("/<batch_id>")
@requires("bulk:write")
@blp.response(200, BatchSchema)
def get_batch(batch_id: str) -> dict[str, Any]:
    """A batch's state and its rows counted by state."""
    return _shown(_batch(batch_id))


@blp.route("/<batch_id>/rows")
@requires("bulk:write")
@blp.arguments(PageArgs, location="query")
@blp.response(200, RowPageSchema)
def batch_rows(args: dict[str, Any], batch_id: str) -> dict[str, Any]:
    """Each row's outcome and its envelope's status, in row order, in cursor pages."""
    batch = _batch(batch_id)
    cursor = args.get("cursor") or "0"
    if not cursor.isdigit() or len(cursor) > 6:
        problem(
            422,
            "validation-failed",
            "Invalid cursor",
            errors={"query": {"cursor": ["Use the next_cursor of a previous page."]}},
        )
    limit = args["limit"]
    views = report.rows_page(batch, after=int(cursor), limit=limit + 1)
    next_cursor = str(views[limit - 1].row.number) if len(views) > limit else None
    g.api_next_cursor = next_cursor  # (the Link header)
    offset = 2 if _json_rows(batch) else None
    items = [
        {
            "number": view.row.number,
            "index": view.row.number - offset if offset else None,
            "state": view.row.state,
            "problems": view.row.problems or [],
            "name": view.row.name,
            "email": view.row.email,
            "ticket_id": view.row.ticket_id,
            "envelope_id": view.envelope,
            "envelope_status": view.envelope_status or None,
            "error": view.row.error,
        }
        for view in views[:limit]
    ]
    return {"items": items, "next_cursor": next_cursor}
