"""Checks of every API request before its view: the body's size (``API_MAX_BODY_MB``), its
media type, and control characters in the path, query, form or JSON body."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, current_app, json, request

from portal import text, web
from portal.extensions import SAFE_METHODS
from portal.integrations.problems import ApiProblem, in_api

# Media types a request body may have (415 otherwise).
BODY_TYPES: set[str] = {"application/json", "multipart/form-data", "text/csv"}

REFUSED_CHARACTER = "Contains an invisible control character (such as a NUL byte)."


def take_over_input_check(app: Flask) -> None:
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
        if not in_api():
            return page_check()
        limit_body()  # before anything reads the body
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


def limit_body() -> None:
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


def check_media_type() -> None:
    """A body must be JSON (or what a bulk upload takes): 415 otherwise."""
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
