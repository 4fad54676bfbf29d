"""Web plumbing shared by every blueprint: fragment-or-page, headers, error pages."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from portal.extensions import htmx

log = logging.getLogger(__name__)

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)

ERRORS: dict[int, tuple[str, str]] = {
    400: ("Something in that request was not right", "Go back, check the form and try again."),
    403: ("You do not have access to this page", "Ask an admin if you need access."),
    404: ("We could not find that page", "The link may be old, or the item was removed."),
    405: ("That action is not available here", "Go back and use the buttons on the page."),
    413: ("That upload is too large", "Choose a smaller file and try again."),
    429: (
        "Too many attempts",
        "Wait a minute before trying again. Repeated attempts are limited to keep accounts safe.",
    ),
    500: (
        "Something went wrong on our side",
        "Nothing you entered was lost. Try again in a moment; "
        "if it keeps happening, tell your admin.",
    ),
}


def wants_fragment() -> bool:
    """An htmx request that is not a boosted navigation gets just the fragment."""
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def page(template: str, fragment: str | None = None, **context: Any) -> str:
    """Render the fragment for htmx requests and the full page otherwise."""
    if fragment is not None and wants_fragment():
        return render_template(fragment, **context)
    return render_template(template, **context)


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    response.vary.add("HX-Request")
    if request.endpoint != "static":
        headers.setdefault("Cache-Control", "no-store")
    return response


def _hsts(response: Response) -> Response:
    response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def error_response(code: int, detail: str | None = None) -> tuple[str, int]:
    """A friendly page (or fragment for htmx) for an HTTP error code."""
    title, advice = ERRORS.get(code, ERRORS[500] if code >= 500 else ERRORS[400])
    template = "errors/_error.html" if wants_fragment() else "errors/error.html"
    return render_template(template, code=code, title=title, advice=detail or advice), code


def _http_error(exc: HTTPException) -> Any:
    if exc.response is not None:  # e.g. a redirect passed to abort()
        return exc.response
    code = exc.code or 500
    if code == 429:
        return error_response(429)
    return error_response(code)


def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    return error_response(
        400,
        "This form had expired or did not come from this portal. Reload the page and try again; "
        "nothing was changed.",
    )


def _server_error(exc: InternalServerError) -> tuple[str, int]:
    log.error(
        "Unhandled error on %s %s", request.method, request.path, exc_info=exc.original_exception
    )
    return error_response(500)


def install(app: Flask) -> None:
    """Register headers and error pages on the app."""
    app.after_request(_security_headers)
    if app.config.get("PRODUCTION"):
        app.after_request(_hsts)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(HTTPException, _http_error)
