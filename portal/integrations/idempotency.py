"""``Idempotency-Key`` on every API POST: one answer per key and request, kept 24 hours.

The first request with a key stores an in-flight row (committed at once, so that another
process sees it), runs, then stores its answer. A repeat with the same method, path and body
gets that answer again with ``Idempotent-Replayed: true``; with another request, a 422; while
the first still runs, a 409. Answers of 5xx, 409 and 429 are not kept (the row is removed):
trying again may succeed. Rows expire after 24 hours and are pruned by a periodic job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Response, current_app, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from portal import clock, jobs
from portal.extensions import db, write_lock
from portal.integrations.keys import Caller
from portal.integrations.models import IdempotentRequest
from portal.integrations.problems import ApiProblem, as_problem, problem, problem_response

KEEP = timedelta(hours=24)
HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII
_NOT_KEPT = {409, 429}


def request_hash() -> str:
    """SHA-256 of the method, the path with its query and the body."""
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.full_path.encode(), request.get_data()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def answer(key: Caller, run: Callable[[], Any]) -> Any:
    """The view's answer, given once per ``Idempotency-Key`` (none: just run it)."""
    given = request.headers.get(HEADER)
    if given is None:
        return run()
    if not _KEY.match(given):
        problem(
            400,
            "bad-request",
            "Invalid Idempotency-Key",
            "Use 1 to 255 visible ASCII characters (a UUID is a good choice).",
        )
    key_id, asked, now = key.id, request_hash(), clock.utcnow()
    write_lock()
    row = db.session.execute(
        select(IdempotentRequest)
        .where(IdempotentRequest.api_key_id == key_id, IdempotentRequest.key == given)
        .with_for_update()
    ).scalar_one_or_none()
    if row is not None and clock.as_utc(row.expires_at) <= now:
        db.session.delete(row)
        db.session.flush()
        row = None
    if row is not None:
        db.session.rollback()
        if row.request_hash != asked:
            problem(
                422,
                "idempotency-key-reused",
                "Idempotency-Key used for another request",
                "This Idempotency-Key was used with a different method, path or body.",
            )
        if row.status is None:
            problem(
                409,
                "request-in-flight",
                "Request still in flight",
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            )
        return _replay(row)
    db.session.add(
        IdempotentRequest(
            api_key_id=key_id, key=given, request_hash=asked, created_at=now, expires_at=now + KEEP
        )
    )
    try:
        db.session.commit()
    except IntegrityError:  # another request with the key got there first
        db.session.rollback()
        problem(409, "request-in-flight", "Request still in flight", "Retry shortly.")
    try:
        response = current_app.make_response(run())
    except ApiProblem as exc:
        response = problem_response(exc)
    except HTTPException as exc:
        response = problem_response(as_problem(exc))
    except BaseException:
        db.session.rollback()
        _forget(key_id, given)
        raise
    _keep(key_id, given, response)
    return response


def _replay(row: IdempotentRequest) -> Response:
    response = Response(row.body or b"", status=row.status, content_type=row.content_type)
    if row.location:
        response.headers["Location"] = row.location
    response.headers[REPLAYED] = "true"
    return response


def _keep(key_id: int, given: str, response: Response) -> None:
    if response.status_code >= 500 or response.status_code in _NOT_KEPT:
        db.session.rollback()
        _forget(key_id, given)
        return
    write_lock()
    row = db.session.execute(
        select(IdempotentRequest).where(
            IdempotentRequest.api_key_id == key_id, IdempotentRequest.key == given
        )
    ).scalar_one()
    row.status = response.status_code
    row.content_type = response.content_type
    row.location = response.headers.get("Location")
    row.body = response.get_data()
    db.session.commit()


def _forget(key_id: int, given: str) -> None:
    write_lock()
    db.session.execute(
        delete(IdempotentRequest).where(
            IdempotentRequest.api_key_id == key_id, IdempotentRequest.key == given
        )
    )
    db.session.commit()


@jobs.periodic(every=3600)
def prune_idempotency_keys() -> str:
    """Remove stored answers older than 24 hours."""
    deleted = db.session.execute(
        delete(IdempotentRequest).where(IdempotentRequest.expires_at <= clock.utcnow())
    )
    db.session.commit()
    return f"{deleted.rowcount} idempotency keys pruned"  # type: ignore[attr-defined]
