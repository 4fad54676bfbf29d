"""Web plumbing shared by every blueprint: fragment-or-page, headers, error pages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from flask import (
    Flask,
    Response,
    current_app,
    has_request_context,
    render_template,
    request,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_babel import get_translations
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from itsdangerous import URLSafeTimedSerializer
from jinja2 import pass_eval_context
from jinja2.nodes import EvalContext
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

from portal import audit
from portal.extensions import db, htmx, limiter, write_lock
from portal.text import first_refused

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


# The same errors told to someone who is not signed in (a signer, or anyone on /verify): they
# have no admin to ask; the organisation that sent them a document is who can help.
PUBLIC_ADVICE: dict[int, str] = {
    403: "This page is not open to you. If you were sent a document, open the link in the "
    "most recent email about it.",
    500: "Nothing you entered was lost. Try again in a moment; if it keeps happening, contact "
    "the organisation that sent you the document.",
}


def pdf_response(content: bytes, filename: str, *, download: bool = True) -> Response:
    """A PDF to save (``attachment``) or to show in the browser (``inline``)."""
    response = Response(content, mimetype="application/pdf")
    safe = filename.replace('"', "").replace("\\", "")
    disposition = "attachment" if download else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{safe}"'
    return response


def wants_fragment() -> bool:
    """An htmx request that is not a boosted navigation gets just the fragment."""
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def page(template: str, fragment: str | None = None, **context: Any) -> str:
    """Render the fragment for htmx requests and the full page otherwise."""
    if fragment is not None and wants_fragment():
        return render_template(fragment, **context)
    return render_template(template, **context)


class _TemplateGettext:
    """Jinja's new-style ``gettext`` (autoescape, %-formatting) over one catalogue's lookup.

    A callable object whose ``__call__`` takes the evaluation context: Jinja finds that out
    directly, without first probing a plain function's ``__call__`` (an AttributeError
    raised and caught for every string of every page).
    """

    __slots__ = ("lookup", "markup")

    def __init__(self, lookup: Callable[[str], str]) -> None:
        self.lookup = lookup
        self.markup: dict[str, Markup] = {}  # this catalogue's messages, as Markup

    @pass_eval_context
    def __call__(self, __eval_ctx: EvalContext, __string: str, **variables: Any) -> str:
        text: str
        if __eval_ctx.autoescape:
            made = self.markup.get(__string)
            if made is None:  # catalogue text is trusted; variables are escaped below
                made = self.markup[__string] = Markup(self.lookup(__string))  # noqa: S704
            text = made
        else:
            text = self.lookup(__string)
        if not variables and "%" not in text:
            return text  # what the formatting below would give
        return text % variables  # always a format string, as Jinja does


def _template_ngettext(lookup: Callable[[str, str, int], str]) -> Callable[..., str]:
    """Jinja's new-style ``ngettext`` over one catalogue's lookup."""

    @pass_eval_context
    def ngettext(
        __eval_ctx: EvalContext, __singular: str, __plural: str, __num: int, **variables: Any
    ) -> str:
        variables.setdefault("num", __num)
        text = lookup(__singular, __plural, __num)
        if __eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704 - as in gettext above
        return text % variables

    return ngettext


# Each catalogue's template functions, made once (a catalogue does not change while it lives).
_BOUND: WeakKeyDictionary[Any, dict[str, Any]] = WeakKeyDictionary()


def _translations() -> dict[str, Any]:
    """Bind the templates' ``_``, ``gettext`` and ``ngettext`` to the catalogue of this render.

    Flask-Babel's template functions look the locale and catalogue up again for every string
    (a page has dozens), and Jinja's ``_`` takes the whole template context, which it copies
    for every call made inside a loop or after a ``set``. These take only the evaluation
    context (for autoescaping), and the catalogue is looked up once, when a template first
    calls one of them: inside ``render_template``, so inside any ``force_locale`` around it,
    the catalogue those would use. A page that calls none (the signer's pages are translated
    when they are compiled, ``portal.signing.translated``) looks none up.
    """
    found: list[dict[str, Any]] = []  # this render's catalogue functions, once looked up
    return {name: _Deferred(found, name) for name in ("_", "gettext", "ngettext")}


class _Deferred:
    """One of a render's template functions, bound to the catalogue when first called."""

    __slots__ = ("found", "name")

    def __init__(self, found: list[dict[str, Any]], name: str) -> None:
        self.found = found
        self.name = name

    @pass_eval_context
    def __call__(self, __eval_ctx: EvalContext, *args: Any, **variables: Any) -> str:
        if not self.found:
            self.found.append(_bound(get_translations()))
        function: Callable[..., str] = self.found[0][self.name]
        return function(__eval_ctx, *args, **variables)


def _bound(translations: Any) -> dict[str, Any]:
    """The catalogue's template functions, made once (a catalogue does not change)."""
    bound = _BOUND.get(translations)
    if bound is None:
        gettext = _TemplateGettext(translations.ugettext)
        ngettext = _template_ngettext(translations.ungettext)
        bound = _BOUND[translations] = {"_": gettext, "gettext": gettext, "ngettext": ngettext}
    return bound


def static_url(filename: str) -> str:
    """``url_for("static", filename=...)``, remembered: a static file's URL does not change."""
    if not has_request_context():
        return url_for("static", filename=filename)
    urls: dict[tuple[str, str], str] = current_app.extensions.setdefault("portal_static_urls", {})
    key = (request.script_root, filename)
    url = urls.get(key)
    if url is None:
        url = urls[key] = url_for("static", filename=filename)
    return url


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer made once per set of keys
    instead of for every request (making it costs about what checking the signature does)."""

    _made: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._made
        if made is None or made[0] != keys:
            made = self._made = (keys, super().get_signing_serializer(app))
        return made[1]


SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)


_SECURITY_HEADERS_LOWER = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS)


def _security_headers(response: Response) -> Response:
    # Every response passes here: one pass over the headers, not one per header we set.
    headers = response.headers
    present = {name.lower() for name, _value in headers.items()}
    for lower, name, value in _SECURITY_HEADERS_LOWER:
        if lower not in present:
            headers.add(name, value)
    vary = headers.get("Vary")
    if not vary:
        headers.add("Vary", "HX-Request")
    elif "hx-request" not in vary.lower():
        response.vary.add("HX-Request")
    if request.endpoint != "static" and "cache-control" not in present:
        headers.add("Cache-Control", "no-store")
    return response


def _hsts(response: Response) -> Response:
    response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def error_response(code: int, detail: str | None = None) -> tuple[str, int]:
    """A friendly page (or fragment for htmx) for an HTTP error code."""
    title, advice = ERRORS.get(code, ERRORS[500] if code >= 500 else ERRORS[400])
    if not current_user.is_authenticated:
        advice = PUBLIC_ADVICE.get(500 if code >= 500 else code, advice)
    template = "errors/_error.html" if wants_fragment() else "errors/error.html"
    return render_template(template, code=code, title=title, advice=detail or advice), code


def _http_error(exc: HTTPException) -> Any:
    if exc.response is not None:  # e.g. a redirect passed to abort()
        return exc.response
    code = exc.code or 500
    if code == 429:
        return _rate_limited(exc)
    return error_response(code)


def _rate_limited(exc: HTTPException) -> tuple[str, int]:
    """The 429 page, and ``security.rate_limited`` in the audit chain: once per endpoint,
    client address and limit window (counted in the limiter's own storage), so that
    hammering cannot flood the chain."""
    item = getattr(getattr(exc, "limit", None), "limit", None)  # Flask-Limiter's RateLimitItem
    if item is not None:
        ip = request.remote_addr or ""
        key = f"portal/audited-429/{request.endpoint}/{ip}/{item}"
        if limiter.storage.incr(key, item.get_expiry()) == 1:
            _record_rate_limited(str(item), ip)
    return error_response(429)


# What a rate-limited request of a blueprint is about, from its URL's values (registered by the
# blueprint's package): an envelope's signing pages name the envelope, so the client's address
# is kept with that envelope's personal data (encrypted, and erased when it is purged).
RATE_LIMITED_SUBJECTS: dict[str, Callable[[dict[str, Any]], audit.Ref]] = {}


def _record_rate_limited(limit: str, ip: str) -> None:
    """``security.rate_limited`` in a transaction of its own (the request's may only read)."""
    actor: audit.Ref = ("anonymous", None, None)
    if current_user.is_authenticated:
        actor = current_user._get_current_object()
    try:
        db.session.rollback()
        write_lock()
        find = RATE_LIMITED_SUBJECTS.get(request.blueprint or "")
        subject = find(dict(request.view_args or {})) if find is not None else None
        audit.record(
            "security.rate_limited",
            actor=actor,
            subject=subject,
            data={"endpoint": request.endpoint, "limit": limit, "ip": ip},
        )
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()  # the 429 page matters more than its audit event
        log.exception("Could not record a rate-limited request")


def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    return error_response(
        400,
        "This form had expired or did not come from this portal. Reload the page and try again; "
        "nothing was changed.",
    )


# Where a refused character was found, and what the person can do about it.
REFUSED_INPUT = {
    "form": "Something typed into the form contains an invisible control character (such as "
    "a NUL byte) that the portal does not accept. Retype the text and try again; "
    "nothing was changed.",
    "address": "The page address contains an invisible control character (such as a NUL "
    "byte) that the portal does not accept. Check the link or the search and try again; "
    "nothing was changed.",
    "file": "The name of the file you chose contains an invisible control character (such "
    "as a NUL byte) that the portal does not accept. Rename the file and upload it again; "
    "nothing was changed.",
}


def _refused_input() -> str | None:
    """Which part of the request carries a character no request may carry (``portal.text``)."""
    parts: tuple[tuple[str, Any], ...] = (
        ("address", request.view_args.values() if request.view_args else ()),
        ("address", request.args.items(multi=True)),
    )
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        files = ((key, upload.filename or "") for key, upload in request.files.items(multi=True))
        parts += (("form", request.form.items(multi=True)), ("file", files))
    for where, values in parts:
        for value in values:
            pieces = value if isinstance(value, tuple) else (value,)
            if any(isinstance(p, str) and first_refused(p) for p in pieces):
                return REFUSED_INPUT[where]
    return None


def _refuse_control_characters() -> tuple[str, int] | None:
    """One check for every form, query string, path value and file name (see ``portal.text``)."""
    problem = _refused_input()
    return error_response(400, problem) if problem else None


def _server_error(exc: InternalServerError) -> tuple[str, int]:
    log.error(
        "Unhandled error on %s %s", request.method, request.path, exc_info=exc.original_exception
    )
    return error_response(500)


def install(app: Flask) -> None:
    """Register headers and error pages on the app."""
    app.session_interface = SessionInterface()
    app.context_processor(_translations)
    app.jinja_env.globals["static_url"] = static_url
    app.before_request(_refuse_control_characters)
    app.after_request(_security_headers)
    if app.config.get("PRODUCTION"):
        app.after_request(_hsts)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(HTTPException, _http_error)
