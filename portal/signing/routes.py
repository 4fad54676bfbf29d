"""Public signing pages. The link token is exchanged at once for a recipient-scoped session
and a token-free URL; every page re-checks that the session's link is still the live one."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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
from sqlalchemy import select

from portal import storage, web
from portal.accounts import contacts
from portal.documents.geometry import Rect, pdf_to_display
from portal.documents.inspect import PageBox
from portal.documents.pages import image_type, reading_rendition
from portal.envelopes import disclosure, links, sealing, timeline
from portal.envelopes.checks import EnvelopeError
from portal.envelopes.models import TERMINAL, Envelope, Recipient
from portal.extensions import db, limiter, reads_first
from portal.library import queries
from portal.library.models import Field
from portal.signing import (
    access,
    disclosure_summary,
    gate,
    operations,
    reading,
    translated,
    values,
)
from portal.signing.gate import EnvelopeView, SignerView

bp = Blueprint("signing", __name__)

# The steps the document page itself shows (done, disclosure, code); the PDF leads there.
_STEPS = frozenset({"finished", "consent", "code"})


@bp.before_request
def _reads_first() -> None:
    # The signer's pages mostly read: they read without locking (see extensions.reads_first);
    # the few writes they make (first open, lazy expiry) take the lock first (write_lock).
    if request.method in ("GET", "HEAD"):
        reads_first()


@bp.after_request
def _private(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")  # page images: private, cached
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
        context.setdefault("sender", contacts.shown_name(recipient.envelope.created_by))
    elif isinstance(context.get("envelope"), Envelope):  # the footer's "Contact ..."
        context.setdefault("sender", contacts.shown_name(context["envelope"].created_by))
    with force_locale(_babel_locale(locale)):
        page = translated.template(template, locale)  # its texts translated when compiled
        return render_template(page, recipient=recipient, locale=locale, **context), status


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
    session[gate.SIGNER] = {"rid": recipient.id, "th": recipient.token_hash}
    return redirect(url_for("signing.document", public_id=recipient.envelope.public_id))


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
        page = _document_url(public_id)
        return cls(f"{page}/document.pdf", f"{page}/sign", f"{page}/review", f"{page}/decline",
                   f"{page}/pages/")  # fmt: skip


def _document_url(public_id: str) -> str:
    """``url_for("signing.document", public_id=public_id)``. Up to the id it is the same URL for
    every envelope (given the script root), so url_for runs once per script root."""
    if not (public_id.isascii() and public_id.isalnum()):  # ours are hex: anything else quoted
        return url_for("signing.document", public_id=public_id)
    prefixes: dict[str, str] = current_app.extensions.setdefault("portal_document_url", {})
    prefix = prefixes.get(request.script_root)
    if prefix is None:
        prefix = prefixes[request.script_root] = url_for(
            "signing.document", public_id="0"
        ).removesuffix("0")
    return prefix + public_id


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
        queries.sent_fields(envelope.template_version_id, envelope.document_locale),
        recipient.role,
        tuple(boxes.values()),
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
        "reading": reading.view(envelope, fields),  # an authored text: HTML, not page images
        # an approver sees what the others entered (signing.values.entered_before)
        "entered": values.entered_before(
            envelope.id, envelope.template_version_id, recipient.id, envelope.document_locale
        )
        if recipient.kind == "approver"
        else [],
    }


@bp.route("/sign/<public_id>")
def document(public_id: str) -> Any:
    """The next step for this recipient: disclosure, code, document, or done."""
    seen = gate.document_gate(public_id, "page")
    if seen.step is None:  # the document, from the views
        return _page(
            "signing/document.html", seen.recipient, problems={}, form={}, sender=seen.sender,
            **_context(seen.recipient, seen.envelope),
        )  # fmt: skip
    return _in_the_way(seen.recipient, seen.sender)


def _in_the_way(view: gate.SignerView, sender: str) -> Any:
    """The page that explains what stands between the recipient and the document, decided
    again on the recipient itself (it may have moved on since the gate read it)."""
    recipient = gate.loaded(view)
    envelope = recipient.envelope
    step = operations.next_step(recipient, access.blocked_reason(recipient))
    if step == "finished":
        return _page(
            "signing/done.html", recipient, envelope=envelope,
            copy_ready=sealing.signer_copy_available(recipient),
            copy_until=sealing.copy_until(envelope),
            copy_mail=operations.copy_mail(recipient),
        )  # fmt: skip
    if step == "consent":
        text = disclosure.paragraphs(recipient.locale, str(current_app.config["ORG_NAME"]), sender)
        return _page(
            "signing/consent.html", recipient, envelope=envelope, disclosure=text, sender=sender,
            summary=disclosure_summary.lines(recipient.locale, sender),
        )  # fmt: skip
    if step == "code":
        sent = bool(session.pop("code_sent", False))
        return _page(
            "signing/code.html", recipient, envelope=envelope, error=None, sent=sent,
            sender=sender,
        )  # fmt: skip
    if step:
        return _stop(step, recipient)
    # It became ready in the meantime: through the gate again, which records the view.
    return redirect(url_for("signing.document", public_id=envelope.public_id))


def _act(public_id: str, action: Any) -> Any:
    recipient = gate.signer(public_id)
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
    recipient = gate.signer(public_id)
    if recipient.auth_method == "email_otp" and not access.blocked_reason(recipient):
        access.send_code(recipient)
        session["code_sent"] = True
    # Post/redirect/get: reloading the page must not email another code.
    return redirect(url_for("signing.document", public_id=public_id))


@bp.route("/sign/<public_id>/code", methods=["POST"])
@limiter.limit("20 per 10 minutes")
def check_code(public_id: str) -> Any:
    """Check the emailed code or the access code."""
    recipient = gate.signer(public_id)
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
    recipient = gate.signer(public_id)
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
    if checked.refused_files:
        operations.attachments_refused(recipient.id, checked.refused_files)
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
        recipient = gate.signer(public_id)
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
    """A page of the document, to this recipient only, once past the gate."""
    seen = gate.document_gate(public_id, "image")
    if seen.step is not None:  # no image: 410 once the envelope ended, else 403
        return Response(status=410 if seen.step in TERMINAL else 403)
    pages = seen.envelope.pages or []
    if not 1 <= number <= len(pages) or not pages[number - 1].get("image_blob_id"):
        abort(404)
    page = pages[number - 1]
    return _image(str(page["image_blob_id"]), image_type(page))


@bp.route("/sign/<public_id>/pages/<int:number>-<int:width>w")
def page_rendition(public_id: str, number: int, width: int) -> Response:
    """A page drawn for reading at one of ``pages.READING_WIDTHS`` (the srcset's images)."""
    seen = gate.document_gate(public_id, "image")
    if seen.step is not None:
        return Response(status=410 if seen.step in TERMINAL else 403)
    pages = seen.envelope.pages or []
    page = pages[number - 1] if 1 <= number <= len(pages) else None
    rendition = reading_rendition(page, width) if page and page.get("image_blob_id") else None
    if rendition is None:
        abort(404)
    return _image(str(rendition["blob"]), str(rendition["type"]))


def _image(blob_id: str, mimetype: str) -> Response:
    """A page image, cached by this browser only (its blob never changes: the id is its tag)."""
    if request.if_none_match.contains(blob_id):
        response = Response(status=304)
    else:
        response = Response(storage.get(blob_id), mimetype=mimetype)
    response.set_etag(blob_id)
    response.headers["Cache-Control"] = "private, max-age=3600"
    # Opened alone (full screen, to zoom), the browser shows the image in a page of its own
    # that it styles inline: an image has nothing else to allow.
    response.headers["Content-Security-Policy"] = _IMAGE_CSP
    return response


_IMAGE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"


@bp.route("/sign/<public_id>/document.pdf")
def original(public_id: str) -> Any:
    """The document exactly as sent (its SHA-256 is in the audit trail), once past the gate;
    else the page that explains why not."""
    seen = gate.document_gate(public_id, "pdf")
    if seen.step is not None:
        if seen.step in _STEPS:  # the document page shows that step
            return redirect(url_for("signing.document", public_id=public_id), 303)
        return _stop(seen.step, gate.loaded(seen.recipient))
    envelope = seen.envelope
    return web.pdf_response(
        storage.get(envelope.document_blob_id), f"{envelope.public_id}.pdf", download=False
    )


@bp.route("/sign/<public_id>/filled.pdf")
def filled_copy(public_id: str) -> Any:
    """For an approver: the document with every value entered so far stamped in place."""
    seen = gate.document_gate(public_id, "filled")
    if seen.step is not None:
        if seen.step in _STEPS:
            return redirect(url_for("signing.document", public_id=public_id), 303)
        return _stop(seen.step, gate.loaded(seen.recipient))
    if seen.recipient.kind != "approver":
        abort(404)
    recipient = gate.loaded(seen.recipient)
    try:
        content = timeline.filled_document(recipient.envelope, recipient)
    except EnvelopeError:
        db.session.rollback()
        return _stop("busy", recipient)
    return web.pdf_response(
        content, sealing.download_name(recipient.envelope, "filled-in"), download=False
    )


@bp.route("/sign/<public_id>/signed.pdf")
def signed_copy(public_id: str) -> Any:
    """The sealed copy, for signers, approvers and cc recipients, for SIGNER_COPY_DAYS after
    completion."""
    recipient = gate.signer(public_id)
    envelope: Envelope = recipient.envelope
    if not sealing.signer_copy_available(recipient):
        if envelope.seal_status == "sealed" and recipient.kind in sealing.COPY_KINDS:
            return _stop("copy_expired", recipient)
        abort(404)
    content = sealing.record_download(envelope, "recipient.copy_downloaded", recipient, "document")
    return web.pdf_response(content, sealing.download_name(envelope))


def _rate_limited_subject(args: dict[str, Any]) -> tuple[str, str, str] | None:
    """The envelope a rate-limited signing request is about (see ``web.RATE_LIMITED_SUBJECTS``)."""
    envelope: Envelope | None = None
    if "public_id" in args:
        envelope = db.session.execute(
            select(Envelope).where(Envelope.public_id == str(args["public_id"]))
        ).scalar_one_or_none()
    elif "token" in args:
        recipient = db.session.execute(
            select(Recipient).where(Recipient.token_hash == links.token_digest(str(args["token"])))
        ).scalar_one_or_none()
        envelope = recipient.envelope if recipient is not None else None
    return envelope.audit_ref if envelope is not None else None


web.RATE_LIMITED_SUBJECTS[bp.name] = _rate_limited_subject
