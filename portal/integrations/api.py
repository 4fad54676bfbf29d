"""The REST API under ``/api/v1``: flask-smorest ``Api``, keys, problems, limits.

Every resource module named in ``API_BLUEPRINTS`` has a module-level ``blp`` (a
``flask_smorest.Blueprint`` with ``url_prefix="/api/v1/..."``); ``init_app`` registers them.
Each view is decorated, right under ``@blp.route``, with ``@requires(scope)``, which:

- authenticates ``Authorization: Bearer <key>`` (401 without saying why), checks the scope
  (403), counts the call against the key's ``API_RATE_LIMIT`` (429);
- on a POST, honours ``Idempotency-Key`` (``portal.integrations.idempotency``).

``send_limited`` (under ``requires``) also counts the call against ``API_SEND_RATE_LIMIT``.
``current_key()`` is the key; ``current_key().actor`` the user the operations take as ``by``.
Every error under ``/api/v1`` is an RFC 9457 problem (``problem(...)`` raises one); GET
answers carry an ETag (``If-None-Match`` -> 304); ``paginate`` makes cursor pages.
"""

from __future__ import annotations

import importlib
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, NoReturn, TypeVar

import flask_smorest
import marshmallow as ma
from flask import Flask, Response, current_app, g, json, request
from limits import RateLimitItem, parse
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute
from werkzeug.exceptions import HTTPException, InternalServerError

from portal import text, web
from portal.envelopes import console
from portal.extensions import SAFE_METHODS, csrf, db, limiter
from portal.integrations import idempotency, keys
from portal.integrations.models import ApiKey

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
PROBLEM_JSON = "application/problem+json"
# Modules of portal.integrations whose ``blp`` is registered (others append theirs).
API_BLUEPRINTS: list[str] = ["api_templates", "api_envelopes", "api_actions", "api_bulk"]
# Media types a request body may have (415 otherwise).
BODY_TYPES: set[str] = {"application/json", "multipart/form-data", "text/csv"}

V = TypeVar("V", bound=Callable[..., Any])

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


# ---------------------------------------------------------------- problems (RFC 9457)


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
    kind = _KIND_OF_STATUS.get(code, "server-error" if code >= 500 else "bad-request")
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


def _in_api() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


# ---------------------------------------------------------------- keys and scopes


def current_key() -> ApiKey:
    """The API key of this request (inside a ``requires`` view)."""
    key: ApiKey = g.api_key
    return key


def requires(scope: str) -> Callable[[V], V]:
    """View decorator (right under ``@blp.route``): a valid key with ``scope``, within its
    rate limit; a POST honours ``Idempotency-Key``."""
    if scope not in keys.SCOPES:
        raise ValueError(f"Unknown scope {scope!r}")

    def decorate(view: V) -> V:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            key = _authenticate()
            if not key.has_scope(scope):
                problem(403, "forbidden", "Missing scope", f"This call needs the {scope} scope.")
            _count("api", current_app.config["API_RATE_LIMIT"])
            if request.method == "POST":
                return idempotency.answer(key, lambda: view(*args, **kwargs))
            return view(*args, **kwargs)

        doc = guarded.__dict__.setdefault("_apidoc", {})
        manual = doc.setdefault("manual_doc", {})
        manual["security"] = [{"ApiKey": [scope]}]
        manual.setdefault("description", "")
        manual["description"] = (f"Scope: `{scope}`. " + manual["description"]).strip()
        return guarded  # type: ignore[return-value]

    return decorate


def send_limited(view: V) -> V:
    """Under ``requires``: also count the call against the key's ``API_SEND_RATE_LIMIT``."""

    @wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        _count("send", current_app.config["API_SEND_RATE_LIMIT"])
        return view(*args, **kwargs)

    return limited  # type: ignore[return-value]


def _authenticate() -> ApiKey:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    key = keys.find(token.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        raise ApiProblem(
            401,
            "unauthorized",
            "Invalid API key",
            "Send a valid, unexpired, unrevoked API key as `Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    g.api_key = key
    keys.note_use(key, request.remote_addr or "")
    return key


# ---------------------------------------------------------------- rate limits


@dataclass(frozen=True)
class Quota:
    """One limit's state after this call (for the RateLimit headers)."""

    name: str
    item: RateLimitItem
    remaining: int
    reset: int  # seconds until a call is free again


def _strategy() -> MovingWindowRateLimiter:
    made = current_app.extensions.get("portal_api_limiter")
    if made is None or made.storage is not limiter.storage:
        made = current_app.extensions["portal_api_limiter"] = MovingWindowRateLimiter(
            limiter.storage
        )
    return made


def _count(name: str, setting: str) -> None:
    """Count one call of the current key against the limit ``name``; 429 past it."""
    item = parse(setting)
    strategy = _strategy()
    ident = (f"portal-api-{name}", str(current_key().id))
    try:
        allowed = strategy.hit(item, *ident)
        stats = strategy.get_window_stats(item, *ident)
    except (RedisError, OSError):
        # Redis is down: serve the call uncounted rather than fail it (the database, not
        # Redis, holds what matters); it is logged, and the answer has no RateLimit headers
        log.warning("API rate limit %s not counted: the limiter's storage is unavailable", name)
        return
    reset = max(0, int(stats.reset_time - time.time()) + (0 if allowed else 1))
    quota = Quota(name, item, max(0, stats.remaining), reset)
    g.setdefault("api_quotas", []).append(quota)
    if not allowed:
        raise ApiProblem(
            429,
            "rate-limited",
            "Too many requests",
            f"This key may make {item.amount} such calls per {_window(item)}; "
            f"retry in {reset} seconds.",
            headers={"Retry-After": str(max(1, reset))},
        )


def _window(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return f"{item.multiples} {unit}s" if item.multiples > 1 else unit


def _rate_headers(response: Response, quotas: Sequence[Quota]) -> None:
    # draft-ietf-httpapi-ratelimit-headers-08 and later: structured-field lists of named policies
    response.headers["RateLimit-Policy"] = ", ".join(
        f'"{q.name}";q={q.item.amount};w={q.item.get_expiry()}' for q in quotas
    )
    response.headers["RateLimit"] = ", ".join(
        f'"{q.name}";r={q.remaining};t={q.reset}' for q in quotas
    )


# ---------------------------------------------------------------- cursor pages


@dataclass
class CursorPage:
    items: list[Any]
    next_cursor: str | None


def paginate(
    stmt: Select[Any],
    columns: tuple[InstrumentedAttribute[Any], InstrumentedAttribute[Any]],
    limit: int,
    cursor: str | None,
) -> CursorPage:
    """Newest first, keyset on (created_at, id): rows never repeat or go missing."""
    if cursor:
        after = console._decode(cursor, columns)
        if after is None:
            problem(
                422,
                "validation-failed",
                "Invalid cursor",
                errors={"query": {"cursor": ["Use the next_cursor of a previous page."]}},
            )
        created, ident = columns
        stmt = stmt.where(or_(created < after[0], and_(created == after[0], ident < after[1])))
    stmt = stmt.order_by(columns[0].desc(), columns[1].desc()).limit(limit + 1)
    rows = list(db.session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        next_cursor = console.cursor_of(console._row_key(rows[-1], columns))
    g.api_next_cursor = next_cursor
    return CursorPage(rows, next_cursor)


# ---------------------------------------------------------------- the Api


class PortalApi(flask_smorest.Api):
    """flask-smorest's Api, documenting errors as problems; errors are ours (``_errors``)."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        pass  # an app-wide handler would take over the console's error pages: see _errors

    def _register_responses(self) -> None:
        import http

        from flask_smorest.utils import prepare_response

        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "An RFC 9457 problem", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


api = PortalApi()


def _description() -> str:
    rows = "\n".join(f"| `{kind}` | {code} | {text} |" for kind, (code, text) in PROBLEMS.items())
    return (
        "The portal's REST API. Authenticate with an API key created by an admin under "
        "Integrations > API keys: `Authorization: Bearer <key>`.\n\n"
        "Every POST accepts an `Idempotency-Key` header (kept 24 hours): a repeat returns the "
        "first answer with `Idempotent-Replayed: true`; the same key with another body is a "
        '422. Lists are cursor pages (`limit` 1-100, `next_cursor`, `Link: rel="next"`). '
        "GET answers carry an `ETag` (`If-None-Match` gives 304). Times are ISO 8601 UTC. "
        "Every answer carries `RateLimit` and `RateLimit-Policy` headers "
        "(draft-ietf-httpapi-ratelimit-headers-08 and later).\n\n"
        "## Problems\n\nErrors are RFC 9457 `application/problem+json`; `type` ends in one of:\n\n"
        "| kind | status | meaning |\n| --- | --- | --- |\n" + rows
    )


def init_app(app: Flask) -> None:
    """Configure flask-smorest and register the API's blueprints, errors and hooks."""
    app.config.update(
        API_TITLE=f"{app.config.get('ORG_NAME') or 'Signing portal'} API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX=PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": _description()},
            "servers": [{"url": "/"}],
        },
    )
    api.init_app(app)
    api.spec.components.security_scheme(
        "ApiKey", {"type": "http", "scheme": "bearer", "description": "An API key"}
    )
    for name in API_BLUEPRINTS:
        module = importlib.import_module(f"portal.integrations.{name}")
        blp: flask_smorest.Blueprint = module.blp
        csrf.exempt(blp)
        api.register_blueprint(blp)
    from portal.integrations import docs

    app.register_blueprint(docs.bp)
    _errors(app)
    app.session_interface = _ApiSessions.wrapping(app.session_interface)
    _take_over_input_check(app)
    app.before_request(_before)
    app.after_request(_after)


REFUSED_CHARACTER = "Contains an invisible control character (such as a NUL byte)."


def _take_over_input_check(app: Flask) -> None:
    """``portal.web`` refuses control characters with an error page (which cannot even be
    rendered here: the API has no session for its CSRF token); under /api/v1 the same rule
    answers a 422 problem naming each place, and looks into JSON bodies too."""
    hooks = app.before_request_funcs[None]
    for n, hook in enumerate(hooks):
        if getattr(hook, "__name__", None) == "_refuse_control_characters":
            hooks[n] = _refuse_control_characters(hook)


def _refuse_control_characters(page_check: Callable[[], Any]) -> Callable[[], Any]:
    @wraps(page_check)
    def check() -> Any:
        if not _in_api():
            return page_check()
        _limit_body()  # before anything reads the body
        errors: dict[str, Any] = {}
        for name, value in (request.view_args or {}).items():
            if isinstance(value, str) and text.first_refused(value):
                errors.setdefault("path", {})[name] = [REFUSED_CHARACTER]
        for name, value in request.args.items(multi=True):
            if text.first_refused(name) or text.first_refused(value):
                errors.setdefault("query", {})[text.printable(name)] = [REFUSED_CHARACTER]
        if request.method not in SAFE_METHODS:
            if request.is_json:
                errors.update(_refused_in_json())
            elif web._refused_input():  # a form or an upload's file name
                errors["form"] = [REFUSED_CHARACTER]
        if errors:
            raise ApiProblem(422, "validation-failed", "Control characters refused", errors=errors)
        return None

    return check


def _refused_in_json() -> dict[str, Any]:
    """Where a JSON body carries a control character (its own parse, bounded in depth:
    Python's parser would overflow the stack on deep nesting)."""
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        raise ApiProblem(
            422, "invalid-json", "The body is not valid JSON", "The body is not valid JSON."
        ) from None
    found: list[str] = []
    stack: list[tuple[str, Any, int]] = [("", body, 0)]
    while stack and len(found) < 20:
        where, value, depth = stack.pop()
        if depth > 32:
            raise ApiProblem(
                422, "invalid-json", "The body is not valid JSON", "The body is nested too deeply."
            )
        if isinstance(value, str):
            if text.first_refused(value):
                found.append(where or "body")
        elif isinstance(value, dict):
            for key, item in value.items():
                if text.first_refused(key):
                    found.append(where or "body")
                stack.append((f"{where}.{text.printable(key)}".lstrip("."), item, depth + 1))
        elif isinstance(value, list):
            stack.extend(
                (f"{where}.{n}".lstrip("."), item, depth + 1) for n, item in enumerate(value)
            )
    return {place: [REFUSED_CHARACTER] for place in found}


def _errors(app: Flask) -> None:
    """Problems under /api/v1; everything else keeps the console's error pages."""
    handlers = app.error_handler_spec[None]
    page_for_http = handlers[None][HTTPException]
    page_for_500 = handlers[500][InternalServerError]

    def http_error(exc: HTTPException) -> Any:
        return problem_response(as_problem(exc)) if _in_api() else page_for_http(exc)

    def server_error(exc: InternalServerError) -> Any:
        if not _in_api():
            return page_for_500(exc)
        log.error(
            "Unhandled API error on %s %s",
            request.method,
            request.path,
            exc_info=exc.original_exception,
        )
        return problem_response(as_problem(exc))

    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(InternalServerError, server_error)


class _ApiSessions(web.SessionInterface):
    """The API ignores session cookies (keys only) and sets none."""

    inner: Any = None

    @classmethod
    def wrapping(cls, inner: Any) -> _ApiSessions:
        made = cls()
        made.inner = inner
        return made

    def open_session(self, app: Flask, request_: Any) -> Any:
        if request_.path.startswith(PREFIX + "/"):
            return self.make_null_session(app)
        return self.inner.open_session(app, request_)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if self.is_null_session(session):
            return None
        return self.inner.save_session(app, session, response)


def _limit_body() -> None:
    """``API_MAX_BODY_MB``: a larger declared body is refused unread; a chunked one (no
    length given) is read up to the limit, and refused past it. (werkzeug would cut it off
    at the limit without a word, and the truncated body would be read as if it were all.)"""
    largest = int(current_app.config["API_MAX_BODY_MB"] * 1024 * 1024)
    request.max_content_length = largest
    environ = request.environ
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if chunked and request.content_length is None and environ.get("wsgi.input_terminated"):
        data = environ["wsgi.input"].read(largest + 1)
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        request.__dict__.pop("stream", None)  # (not read yet: made again from the above)
    if request.content_length is not None and request.content_length > largest:
        raise ApiProblem(
            413,
            "body-too-large",
            "Request body too large",
            f"The limit is {current_app.config['API_MAX_BODY_MB']:g} MB.",
        )


def _before() -> Any:
    if not _in_api():
        return None
    _limit_body()
    has_body = request.content_length or request.headers.get("Transfer-Encoding")
    if (
        request.method in ("POST", "PUT", "PATCH")
        and has_body
        and request.mimetype not in BODY_TYPES
    ):
        raise ApiProblem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as application/json.",
        )
    return None


def _after(response: Response) -> Response:
    if not _in_api():
        return response
    if response.status_code >= 400 and response.mimetype != PROBLEM_JSON:
        # an error page made before the API's handlers could see it (e.g. portal.web's check
        # of control characters): the same status, as a problem
        code = response.status_code
        kind = _KIND_OF_STATUS.get(code, "server-error" if code >= 500 else "bad-request")
        response = problem_response(ApiProblem(code, kind, "Request refused", PROBLEMS[kind][1]))
    quotas = g.get("api_quotas")
    if quotas:
        _rate_headers(response, quotas)
    next_cursor = g.get("api_next_cursor")
    if next_cursor and response.status_code == 200:
        url = request.base_url + "?" + _query_with(cursor=next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
    if (
        request.method in ("GET", "HEAD")
        and response.status_code == 200
        and not (response.is_streamed or response.direct_passthrough)
    ):
        response.headers.setdefault("Cache-Control", "private, no-cache")
        if "ETag" not in response.headers:
            response.add_etag()
        response.make_conditional(request)
    return response


def _query_with(**values: str) -> str:
    from urllib.parse import urlencode

    args = request.args.to_dict()
    args.update(values)
    return urlencode(args)
