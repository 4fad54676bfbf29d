"""The REST API under ``/api/v1``: flask-smorest ``Api``, keys, problems, limits.

Every resource module named in ``API_BLUEPRINTS`` has a module-level ``blp`` (a
``flask_smorest.Blueprint`` with ``url_prefix="/api/v1/..."``); ``init_app`` registers them.
Each view is decorated, right under ``@blp.route``, with ``@requires(scope)``, which:

- authenticates ``Authorization: Bearer <key>`` (401 without saying why), checks the scope
  (403), counts the call against the key's ``API_RATE_LIMIT`` (429);
- on a POST, honours ``Idempotency-Key`` (``portal.integrations.idempotency``).

``send_limited`` (under ``requires``) also counts the call against ``API_SEND_RATE_LIMIT``.
``current_key()`` is the key; ``current_key().actor`` the user the operations take as ``by``.
Every error under ``/api/v1`` is an RFC 9457 problem (``problem(...)`` raises one;
``portal.integrations.problems``); GET answers carry an ETag (``If-None-Match`` -> 304);
``paginate`` makes cursor pages. Rate limits: ``ratelimits``; checks of every request
(body size, media type, control characters): ``guards``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import flask_smorest
from flask import Flask, Response, current_app, g, request
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute
from werkzeug.exceptions import HTTPException, InternalServerError

from portal import web
from portal.envelopes import console
from portal.extensions import csrf, db
from portal.integrations import guards, idempotency, keys, ratelimits
from portal.integrations.problems import (  # noqa: F401  (the resources import them from here)
    PREFIX,
    PROBLEM_JSON,
    PROBLEMS,
    ApiProblem,
    ProblemSchema,
    as_problem,
    in_api,
    kind_of,
    problem,
    problem_response,
    type_uri,
)

log = logging.getLogger(__name__)

# Modules of portal.integrations whose ``blp`` is registered (others append theirs).
API_BLUEPRINTS: list[str] = ["api_templates", "api_envelopes", "api_actions", "api_bulk"]

V = TypeVar("V", bound=Callable[..., Any])

# ---------------------------------------------------------------- keys and scopes


def current_key() -> keys.Caller:
    """The API key of this request (inside a ``requires`` view)."""
    key: keys.Caller = g.api_key
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
            ratelimits.count(key.id, "api", current_app.config["API_RATE_LIMIT"])
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
        ratelimits.count(current_key().id, "send", current_app.config["API_SEND_RATE_LIMIT"])
        return view(*args, **kwargs)

    return limited  # type: ignore[return-value]


def _authenticate() -> keys.Caller:
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
    guards.take_over_input_check(app)
    app.before_request(_before)
    app.after_request(_after)


def _errors(app: Flask) -> None:
    """Problems under /api/v1; everything else keeps the console's error pages."""
    handlers = app.error_handler_spec[None]
    page_for_http = handlers[None][HTTPException]
    page_for_500 = handlers[500][InternalServerError]

    def http_error(exc: HTTPException) -> Any:
        return problem_response(as_problem(exc)) if in_api() else page_for_http(exc)

    def server_error(exc: InternalServerError) -> Any:
        if not in_api():
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


def _before() -> None:
    if in_api():
        guards.limit_body()
        guards.check_media_type()


def _after(response: Response) -> Response:
    if not in_api():
        return response
    if response.status_code >= 400 and response.mimetype != PROBLEM_JSON:
        # an error page made before the API's handlers could see it (e.g. portal.web's check
        # of control characters): the same status, as a problem
        code = response.status_code
        kind = kind_of(code)
        response = problem_response(ApiProblem(code, kind, "Request refused", PROBLEMS[kind][1]))
    ratelimits.add_headers(response)
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
