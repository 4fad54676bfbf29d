"""RFC 9457 problems: every error under ``/api/v1`` is ``application/problem+json`` with a
stable ``type`` URI per kind (listed in the OpenAPI description and served at
``/api/v1/problems/<kind>``)."""

from __future__ import annotations

from typing import Any, NoReturn

import marshmallow as ma
from flask import Response, current_app, json, request
from werkzeug.exceptions import HTTPException

PREFIX = "/api/v1"
PROBLEM_JSON = "application/problem+json"

# Each kind of problem: its status and what it means (the ``type`` URI ends in the kind; the
# list is in the OpenAPI document's description and at /api/v1/problems/<kind>).
PROBLEMS: dict[str, tuple[int, str]] = {
    "bad-request": (400, "The request could not be read (a header or parameter is malformed)."),
    "unauthorized": (
        401,
        "No valid API key: send `Authorization: Bearer <key>` with a key that exists, has not "
        "expired and was not revoked (the answer does not say which).",
    ),
    "forbidden": (403, "The key lacks the scope this operation needs."),
    "not-found": (404, "No such resource for this key's team (or no such URL)."),
    "method-not-allowed": (405, "The URL exists but not with this method."),
    "request-in-flight": (
        409,
        "A request with the same Idempotency-Key is still being processed; retry later.",
    ),
    "conflict": (409, "The resource is not in a state that allows this operation."),
    "body-too-large": (413, "The request body is larger than the API accepts (API_MAX_BODY_MB)."),
    "unsupported-media-type": (415, "Send the body as application/json."),
    "invalid-json": (422, "The body is not valid JSON."),
    "validation-failed": (
        422,
        "Fields are missing, of the wrong type, not allowed or unknown; `errors` names each.",
    ),
    "idempotency-key-reused": (
        422,
        "The Idempotency-Key was used before with a different request (method, path or body).",
    ),
    "refused": (422, "The request is well-formed but the portal refuses it; `detail` says why."),
    "rate-limited": (429, "Too many calls for this key; wait for `Retry-After` seconds."),
    "server-error": (500, "Something went wrong on our side; nothing was changed."),
}
_KIND_OF_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    429: "rate-limited",
}


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem."""

    type = ma.fields.String(required=True, metadata={"description": "The kind of problem (URI)"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.Dict(
        metadata={"description": "Field -> messages (nested for nested fields)"}
    )


class ApiProblem(HTTPException):
    """An error answered as ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str | None = None,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description=detail)
        self.code = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.errors = errors
        self.extra_headers = headers or {}

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        return problem_response(self)


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str | None = None,
    errors: dict[str, Any] | None = None,
) -> NoReturn:
    """Stop the request with an RFC 9457 problem."""
    raise ApiProblem(status, kind, title, detail, errors)


def type_uri(kind: str) -> str:
    """The stable URI of a kind of problem."""
    base = current_app.config.get("PUBLIC_BASE_URL") or request.host_url.rstrip("/")
    return f"{base}{PREFIX}/problems/{kind}"


def problem_response(exc: ApiProblem) -> Response:
    body: dict[str, Any] = {
        "type": type_uri(exc.kind),
        "title": exc.title,
        "status": exc.code,
    }
    if exc.detail:
        body["detail"] = exc.detail
    body["instance"] = request.path
    if exc.errors:
        body["errors"] = exc.errors
    response = Response(json.dumps(body), status=exc.code, mimetype=PROBLEM_JSON)
    for name, value in exc.extra_headers.items():
        response.headers[name] = value
    return response


def as_problem(exc: HTTPException) -> ApiProblem:
    """Any HTTP error as a problem (webargs' validation errors name their fields)."""
    if isinstance(exc, ApiProblem):
        return exc
    code = exc.code or 500
    kind = kind_of(code)
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    errors: dict[str, Any] | None = None
    if code == 422 and isinstance(messages, dict):
        # webargs: {location: {field: [messages]}}; the body's fields are what callers send
        errors = messages.get("json", messages) if len(messages) == 1 else messages
    if code == 400 and isinstance(messages, dict) and "json" in messages:
        return ApiProblem(422, "invalid-json", "The body is not valid JSON", _json_detail(messages))
    if code == 413:
        limit = current_app.config["API_MAX_BODY_MB"]
        return ApiProblem(413, kind, "Request body too large", f"The limit is {limit:g} MB.")
    title = PROBLEMS[kind][1].split(";")[0].rstrip(".") if code >= 500 else exc.name
    detail = None if code >= 500 else _detail(exc)
    # a 405 names the methods the URL has (RFC 9110), as werkzeug's own answer does
    allow = dict(exc.get_headers()).get("Allow") if code == 405 else None
    return ApiProblem(code, kind, title, detail, errors, {"Allow": allow} if allow else None)


def _json_detail(messages: dict[str, Any]) -> str:
    found = messages.get("json")
    if isinstance(found, dict):
        found = found.get("_schema", found)
    if isinstance(found, list) and found:
        return str(found[0])
    return "The body is not valid JSON."


def _detail(exc: HTTPException) -> str | None:
    description = exc.description or ""
    return description if description and "<" not in description else None


def kind_of(code: int) -> str:
    """The kind of problem an HTTP status is, when nothing more is known."""
    return _KIND_OF_STATUS.get(code, "server-error" if code >= 500 else "bad-request")


def in_api() -> bool:
    """Whether this request is one of the API's."""
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")
