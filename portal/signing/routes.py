"""Public signing pages. The link token is exchanged at once for a recipient-scoped session
and a token-free URL; every page re-checks that the session's link is still the live one."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

from babel import Locale
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale, gettext
from markupsafe import Markup
from sqlalchemy import bindparam, select
from sqlalchemy.orm import contains_eager, load_only

from portal import storage, web
from portal.accounts.models import User
from portal.documents.geometry import Rect, pdf_to_display
from portal.documents.inspect import PageBox
from portal.envelopes import disclosure, sealing
from portal.envelopes.models import FINISHED, Envelope, Recipient
from portal.extensions import db, limiter, read_row, reads_first
from portal.library import queries
from portal.library.models import Field
from portal.signing import access, operations, values

bp = Blueprint("signing", __name__)

SIGNER = "signer"
_R = TypeVar("_R", "Recipient", "SignerView")


@bp.before_request
def _reads_first() -> None:
    # The signer's pages mostly read: they read without locking (see extensions.reads_first);
    # the few writes they make (first open, lazy expiry) take the lock first (write_lock).
    if request.method in ("GET", "HEAD"):
        reads_first()


@bp.after_request
def _private(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@lru_cache(maxsize=32)
def _babel_locale(code: str) -> Locale:
    return Locale.parse(code)  # parsed once: parsing looks for the locale's data file each time


# Pages that name the sender ("Alex sent you ..."), given as ``sender`` (else looked up).
_NAME_THE_SENDER = frozenset({"signing/consent.html", "signing/code.html", "signing/document.html"})


def _page(
    template: str, recipient: Recipient | SignerView | None, status: int = 200, **context: Any
) -> Any:
    locale = (
        recipient.locale
        if recipient
        else (request.accept_languages.best_match(["en", "es"]) or "en")
    )
    if isinstance(recipient, Recipient) and template in _NAME_THE_SENDER:
        context.setdefault("sender", recipient.envelope.created_by.name)
    with force_locale(_babel_locale(locale)):
        return render_template(template, recipient=recipient, locale=locale, **context), status


def _stop(reason: str, recipient: Recipient | None = None) -> Any:
    """The clear page for a link that does nothing (voided, expired, replaced, ...)."""
    return _page("signing/stopped.html", recipient, 410 if reason != "not_your_turn" else 200,
                 reason=reason, envelope=recipient.envelope if recipient else None)  # fmt: skip


@bp.route("/s/<token>")
@limiter.limit("30 per minute")
def link(token: str) -> Any:
    """Exchange the emailed link for a session and a URL without the token."""
    recipient, reason = access.open_link(token)
    copy_waits = (
        reason == "completed"
        and recipient is not None
        and recipient.finished
        and sealing.signer_copy_available(recipient)
    )
    if (reason and not copy_waits) or recipient is None:
        return _stop(reason or "unknown", recipient)
    session[SIGNER] = {"rid": recipient.id, "th": recipient.token_hash}
    return redirect(url_for("signing.document", public_id=recipient.envelope.public_id))


# The columns of the recipient the signer's pages read (any other one loads when first used).
_RECIPIENT_COLUMNS = load_only(
    Recipient.id, Recipient.envelope_id, Recipient.role, Recipient.kind, Recipient.name,
    Recipient.email, Recipient.locale, Recipient.auth_method, Recipient.status,
    Recipient.token_hash, Recipient.consent_version, Recipient.authenticated_at,
    Recipient.locked_at, Recipient.auth_attempts,
)  # fmt: skip
_WHERE = (Recipient.id == bindparam("rid"), Envelope.public_id == bindparam("public_id"))

# The signer's pages and actions: the recipient with its envelope. (Statements are built once:
# building an ORM statement costs more than running these.)
_SIGNER_QUERY = (
    select(Recipient)
    .join(Recipient.envelope)
    .where(*_WHERE)
    .options(
        _RECIPIENT_COLUMNS,
        contains_eager(Recipient.envelope).load_only(
            Envelope.id, Envelope.public_id, Envelope.template_version_id,
            Envelope.created_by_id, Envelope.title, Envelope.status, Envelope.merge_data,
            Envelope.pages, Envelope.expires_at, Envelope.void_reason, Envelope.document_blob_id,
        ),
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SignerView:
    """The recipient as the document page reads it: this request's values, not the ORM object.

    That page is the one a signer spends their time on, and loading an entity costs more than
    the rest of its query. Steps that change the recipient, or need more of it, load the
    recipient itself (``_loaded``).
    """

    id: int
    role: str
    kind: str
    name: str
    locale: str
    auth_method: str
    status: str
    token_hash: str | None
    consent_version: str | None
    authenticated_at: datetime | None
    locked_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, slots=True)
class EnvelopeView:
    """The envelope as the document page reads it (see ``SignerView``)."""

    id: int
    public_id: str
    template_version_id: int
    title: str
    status: str
    expires_at: datetime | None
    merge_data: dict[str, str]
    pages: list[dict[str, Any]]


def _columns(table: Any, view: type) -> list[Any]:
    return [table.c[f.name] for f in fields(view)]


# The document page's one query: the views' columns and the sender's name.
_RECIPIENTS, _ENVELOPES, _USERS = Recipient.__table__, Envelope.__table__, User.__table__
_PAGE_QUERY = (
    select(*_columns(_RECIPIENTS, SignerView), *_columns(_ENVELOPES, EnvelopeView), _USERS.c.name)
    .select_from(
        _RECIPIENTS.join(_ENVELOPES, _RECIPIENTS.c.envelope_id == _ENVELOPES.c.id).join(
            _USERS, _USERS.c.id == _ENVELOPES.c.created_by_id
        )
    )
    .where(_RECIPIENTS.c.id == bindparam("rid"), _ENVELOPES.c.public_id == bindparam("public_id"))
)
_SPLIT = len(fields(SignerView))


def _held() -> dict[str, Any]:
    """Which recipient this browser session is for: ``rid`` and the link's hash ``th``."""
    held = session.get(SIGNER) or {}
    return {"rid": int(held.get("rid", 0) or 0), "th": held.get("th")}


def _checked(recipient: _R | None, held: dict[str, Any]) -> _R:
    if recipient is None:
        abort(404)
    if recipient.token_hash != held["th"] and not recipient.finished:
        session.pop(SIGNER, None)  # the link was replaced: this session dies with it
        abort(404)
    return recipient


def _signer(public_id: str) -> Recipient:
    """The recipient of this browser session, for this envelope only; else 404."""
    held = _held()
    recipient = db.session.execute(
        _SIGNER_QUERY, {"rid": held["rid"], "public_id": public_id}
    ).scalar_one_or_none()
    return _checked(recipient, held)


def _page_signer(public_id: str) -> tuple[SignerView, EnvelopeView, str]:
    """As ``_signer``, for the document page: the recipient and its envelope as that page reads
    them, and the sender's name, in one plain query."""
    held = _held()
    row = read_row(_PAGE_QUERY, {"rid": held["rid"], "public_id": public_id})
    if row is None:
        abort(404)
    recipient = _checked(SignerView(*row[:_SPLIT]), held)
    return recipient, EnvelopeView(*row[_SPLIT:-1]), str(row[-1])


def _loaded(view: SignerView) -> Recipient:
    """The recipient itself, for steps that need more than the document page's view."""
    recipient = db.session.get(Recipient, view.id)
    if recipient is None:
        abort(404)
    return recipient


@dataclass(frozen=True, slots=True)
class Marker:
    """A field's place on a page in display points, and where it leads (for guided filling)."""

    key: str
    type: str
    label: str
    required: bool
    target: str  # the id of the element that fills the field
    x: float
    y: float
    w: float
    h: float

    @classmethod
    def of(cls, item: Field, at: Rect) -> Marker:
        if item.type in ("signature", "initials"):
            target = "adopt-heading"
        elif item.type == "date_signed":
            target = "sign-heading"
        else:
            target = f"f-{item.key}"
        return cls(item.key, item.type, item.label or item.key, bool(item.required), target,
                   round(at.x, 2), round(at.y, 2), round(at.w, 2), round(at.h, 2))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Input:
    """A field the recipient types, picks or attaches: what the page reads of it."""

    key: str
    name: str  # of the form field
    type: str
    label: str
    required: bool
    options: list[str]
    validation: dict[str, Any]
    condition: dict[str, Any] | None

    @classmethod
    def of(cls, item: Field) -> Input:
        return cls(item.key, f"f-{item.key}", item.type, item.label, item.required,
                   item.options, item.validation, item.condition)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Page:
    """A page of the document as the signer's page shows it, with the markers on it."""

    number: int
    width: float
    height: float
    ready: bool
    markers_html: Markup  # signing/_markers.html for this page's markers

    @property
    def width_px(self) -> int:
        return round(self.width)

    @property
    def height_px(self) -> int:
        return round(self.height)


@dataclass(frozen=True, slots=True)
class Links:
    """The document page's links. They all extend the page's own URL: one url_for, not five
    (tests check that each equals what url_for gives)."""

    original: str
    sign: str
    review: str
    decline: str
    pages: str  # + "<number>.png"

    @classmethod
    def of(cls, public_id: str) -> Links:
        page = url_for("signing.document", public_id=public_id)
        return cls(f"{page}/document.pdf", f"{page}/sign", f"{page}/review", f"{page}/decline",
                   f"{page}/pages/")  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """The recipient's fields and where they sit on the pages: a function of fixed inputs."""

    fields: tuple[Field, ...]  # values.my_fields: the role's fields, in the template's order
    inputs: tuple[Input, ...]  # those the recipient types, picks or attaches
    markers: tuple[Marker, ...]
    markers_html: dict[int, Markup]  # each page's markers, rendered
    sizes: dict[int, tuple[float, float]]  # display width and height of each page


@lru_cache(maxsize=256)
def _layout(fields: tuple[Field, ...], role: str, boxes: tuple[PageBox, ...]) -> Layout:
    """Computed once per (version's fields, role, page boxes): none of them ever change."""
    mine = tuple(f for f in fields if f.role == role)
    by_number = {b.number: b for b in boxes}
    on_page: dict[int, list[Marker]] = {n: [] for n in by_number}
    markers = []
    for f in mine:
        if f.page in by_number:
            marker = Marker.of(f, pdf_to_display(by_number[f.page], Rect(f.x, f.y, f.w, f.h)))
            markers.append(marker)
            on_page[f.page].append(marker)
    template = current_app.jinja_env.get_template("signing/_markers.html")
    rendered = {n: template.render(markers=found) for n, found in on_page.items()}
    return Layout(
        fields=mine,
        inputs=tuple(
            Input.of(f) for f in mine if f.type not in ("signature", "initials", "date_signed")
        ),
        markers=tuple(markers),
        # our template's output, autoescaped: safe to insert as it is
        markers_html={n: Markup(html) for n, html in rendered.items()},  # noqa: S704
        sizes={
            n: (round(b.display_width, 2), round(b.display_height, 2)) for n, b in by_number.items()
        },
    )


def _context(
    recipient: Recipient | SignerView, envelope: Envelope | EnvelopeView | None = None
) -> dict[str, Any]:
    if envelope is None:
        assert isinstance(recipient, Recipient)
        envelope = recipient.envelope
    records = envelope.pages or []
    boxes = {int(p["number"]): PageBox.from_record(p) for p in records}
    # The fields come from the per-process copy of the (approved, so unchanging) version.
    layout = _layout(
        queries.sent_fields(envelope.template_version_id), recipient.role, tuple(boxes.values())
    )
    fields = layout.fields
    pages = [
        Page(n, *layout.sizes[n], bool((records[n - 1] or {}).get("image_blob_id")),
             layout.markers_html[n])
        for n in boxes
    ]  # fmt: skip
    return {
        "page_list": pages,
        "markers": layout.markers,
        "envelope": envelope,
        "links": Links.of(envelope.public_id),
        "fields": fields,
        "inputs": layout.inputs,
        "prefill": {f.key: values.prefilled(envelope.merge_data, f) for f in fields},
        "readonly": {f.key: values.is_readonly(envelope.merge_data, f) for f in fields},
        "needs_signature": any(f.type in ("signature", "initials") for f in fields),
        "pages": records,
    }


@bp.route("/sign/<public_id>")
def document(public_id: str) -> Any:
    """The next step for this recipient: disclosure, code, document, or done."""
    view, envelope, sender = _page_signer(public_id)
    reason = access.blocked_state(view, envelope)
    consent = operations.needs_consent(view)
    code = operations.needs_code(view)
    if not (reason or view.finished or consent or code):  # the document, from the views
        return _page(
            "signing/document.html", view, problems={}, form={}, sender=sender,
            **_context(view, envelope),
        )  # fmt: skip
    recipient = _loaded(view)
    if recipient.finished:
        finished_envelope = recipient.envelope
        return _page(
            "signing/done.html", recipient, envelope=finished_envelope,
            copy_ready=sealing.signer_copy_available(recipient),
            copy_until=sealing.copy_until(finished_envelope),
        )  # fmt: skip
    if reason:
        return _stop(reason, recipient)
    if operations.needs_consent(recipient):
        text = disclosure.paragraphs(recipient.locale, str(current_app.config["ORG_NAME"]), sender)
        return _page(
            "signing/consent.html", recipient, envelope=recipient.envelope, disclosure=text,
            sender=sender,
        )  # fmt: skip
    if operations.needs_code(recipient):
        sent = bool(session.pop("code_sent", False))
        return _page(
            "signing/code.html", recipient, envelope=recipient.envelope, error=None, sent=sent,
            sender=sender,
        )  # fmt: skip
    return _page(  # it became ready in the meantime
        "signing/document.html", recipient, problems={}, form={}, sender=sender,
        **_context(recipient),
    )  # fmt: skip


def _act(public_id: str, action: Any) -> Any:
    recipient = _signer(public_id)
    try:
        action(recipient)
    except operations.SigningError as exc:
        db.session.rollback()
        fresh = db.session.get(Recipient, recipient.id)
        if exc.reason == "finished" or (fresh is not None and fresh.finished):
            return redirect(url_for("signing.document", public_id=public_id))
        return _stop(exc.reason, recipient)
    return redirect(url_for("signing.document", public_id=public_id))


@bp.route("/sign/<public_id>/consent", methods=["POST"])
def consent(public_id: str) -> Any:
    """Accept the disclosure, or decline it (which declines the envelope)."""
    if request.form.get("decision") == "decline":
        return _act(
            public_id,
            lambda r: operations.decline(r.id, "Declined the electronic records disclosure."),
        )
    return _act(public_id, lambda r: operations.give_consent(r.id))


@bp.route("/sign/<public_id>/code/send", methods=["POST"])
@limiter.limit("5 per 10 minutes")
def send_code(public_id: str) -> Any:
    """Email a fresh code."""
    recipient = _signer(public_id)
    if recipient.auth_method == "email_otp" and not access.blocked_reason(recipient):
        access.send_code(recipient)
        session["code_sent"] = True
    # Post/redirect/get: reloading the page must not email another code.
    return redirect(url_for("signing.document", public_id=public_id))


@bp.route("/sign/<public_id>/code", methods=["POST"])
@limiter.limit("20 per 10 minutes")
def check_code(public_id: str) -> Any:
    """Check the emailed code or the access code."""
    recipient = _signer(public_id)
    reason = access.blocked_reason(recipient)
    if reason:
        return _stop(reason, recipient)
    failure = access.check_code(recipient, request.form.get("code", ""))
    if failure == "locked":
        return _stop("locked", recipient)
    if failure:
        return _page(
            "signing/code.html", recipient, 422, envelope=recipient.envelope, error=failure
        )
    return redirect(url_for("signing.document", public_id=public_id))


@bp.route("/sign/<public_id>/sign", methods=["POST"])
def sign(public_id: str) -> Any:
    """Validate the fields on the server, then adopt and sign."""
    recipient = _signer(public_id)
    reason = access.blocked_reason(recipient)
    if recipient.finished:  # a second tab or a double tap: the first submit won
        return redirect(url_for("signing.document", public_id=public_id))
    if reason:
        return _stop(reason, recipient)
    adoption = "drawn" if request.form.get("adoption") == "drawn" else "typed"
    uploads = {
        key.removeprefix("f-"): values.Upload(upload.filename or "file", upload.read())
        for key, upload in request.files.items()
        if upload and upload.filename
    }
    with force_locale(recipient.locale):  # problems are worded in the signer's language
        checked = values.check(
            recipient.envelope, recipient, request.form.to_dict(), uploads, adoption,
            request.form.get("typed_name", ""), request.form.get("drawing", ""),
        )  # fmt: skip
        if not request.form.get("agree"):
            checked.problems["agree"] = gettext("Confirm that this is your signature.")
    if checked.problems:
        return _page("signing/document.html", recipient, 422, problems=checked.problems,
                     form=request.form, **_context(recipient))  # fmt: skip
    return _act(public_id, lambda r: operations.sign(r.id, checked, adoption))


@bp.route("/sign/<public_id>/review", methods=["POST"])
def review(public_id: str) -> Any:
    """An approver's decision."""
    approve = request.form.get("decision") == "approve"
    comment = request.form.get("comment", "")
    if not approve and not comment.strip():
        recipient = _signer(public_id)
        with force_locale(recipient.locale):
            problems = {"comment": gettext("Say why you reject it; the sender will see it.")}
        return _page("signing/document.html", recipient, 422, problems=problems,
                     form=request.form, **_context(recipient))  # fmt: skip
    return _act(public_id, lambda r: operations.review(r.id, approve, comment))


@bp.route("/sign/<public_id>/decline", methods=["POST"])
def decline(public_id: str) -> Any:
    """Decline to sign, with a reason."""
    reason = request.form.get("reason", "")
    return _act(public_id, lambda r: operations.decline(r.id, reason))


@bp.route("/sign/<public_id>/pages/<int:number>.png")
def page_image(public_id: str, number: int) -> Response:
    """A page of the document, to this recipient only."""
    recipient = _signer(public_id)
    pages = recipient.envelope.pages or []
    if not 1 <= number <= len(pages) or not pages[number - 1].get("image_blob_id"):
        abort(404)
    response = Response(storage.get(str(pages[number - 1]["image_blob_id"])), mimetype="image/png")
    return response


@bp.route("/sign/<public_id>/document.pdf")
def original(public_id: str) -> Response:
    """The document exactly as sent (its SHA-256 is in the audit trail)."""
    recipient = _signer(public_id)
    envelope: Envelope = recipient.envelope
    return web.pdf_response(
        storage.get(envelope.document_blob_id), f"{envelope.public_id}.pdf", download=False
    )


@bp.route("/sign/<public_id>/signed.pdf")
def signed_copy(public_id: str) -> Any:
    """The sealed copy, for signers and cc recipients, for SIGNER_COPY_DAYS after completion."""
    recipient = _signer(public_id)
    envelope: Envelope = recipient.envelope
    if not sealing.signer_copy_available(recipient):
        if envelope.seal_status == "sealed" and recipient.kind in ("signer", "cc"):
            return _stop("copy_expired", recipient)
        abort(404)
    content = sealing.record_download(envelope, "recipient.copy_downloaded", recipient, "document")
    return web.pdf_response(content, sealing.download_name(envelope))
