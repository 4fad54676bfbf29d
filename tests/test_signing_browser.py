"""Browser tests of the customer's signing pages on a phone (static/js/signing.js).

The customer opens the link from the email the SMTP server received, consents, asks for a code
by email, draws a signature with real touch events and signs; the same with a typed name and a
double tap on the sign button; a field shown only when a box is ticked (on an authored text's
reading view and on an uploaded PDF's page images); a cancelled document's link; page images
and field boxes on a desktop (an uploaded PDF). Every page is checked with axe-core, for CSP
refusals and script errors, and for sideways scrolling. Viewport screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Browser, CDPSession, Locator, Page, expect
from sqlalchemy import select

from portal import storage
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope, FieldValue, Recipient
from portal.envelopes.operations import RecipientInput
from portal.extensions import db
from portal.library import operations as library
from tests.browser import (
    PHONE,
    Tab,
    describe_violations,
    no_sideways_scroll,
    open_tab,
    overlays_line_up,
    serious_violations,
)
from tests.conftest import ARTIFACTS, audit_events, demo_agent, demo_template
from tests.smtp import SmtpServer
from tests.test_envelopes import REFUND_VALUES
from tests.test_reading import uploaded_refund

pytestmark = pytest.mark.browser

CUSTOMER = "Zoë Łukasiewicz"
EMAIL = "zoe@example.com"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def mailer(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.clear()
    return smtp_server


@pytest.fixture
def app(make_app, mailer: SmtpServer) -> Flask:
    """The app sends its mail to the test SMTP server, as in production."""
    return make_app(**mailer.config())


@dataclass
class Sent:
    envelope_id: int
    public_id: str


@pytest.fixture
def send(app: Flask, runner_for) -> Callable[..., Sent]:
    """Seed the demo templates; returns a function that sends one to the customer."""
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0

    def send_it(template: str = "Refund authorization", auth_method: str = "email_otp") -> Sent:

        with app.app_context():
            agent = demo_agent()
            tpl = demo_template(template)
            version = library.approved_version(tpl)
            person = RecipientInput(
                role="customer", name=CUSTOMER, email=EMAIL, auth_method=auth_method
            )
            envelope, _links = envelopes.create_and_send(version, REFUND_VALUES, [person], by=agent)
            return Sent(envelope.id, envelope.public_id)

    return send_it


# ------------------------------------------------------------------ mail


def mail_text(mailer: SmtpServer, pattern: str, after: int = 0) -> re.Match[str]:
    """The first match of ``pattern`` in a text body the SMTP server received for the
    customer (message ``after`` on), waiting briefly for delivery."""
    deadline = time.monotonic() + 10
    while True:
        for received in mailer.messages[after:]:
            if EMAIL not in received.rcpt_tos:
                continue
            body = received.message.get_body(preferencelist=("plain",))
            assert body is not None
            match = re.search(pattern, body.get_content())
            if match:
                return match
        assert time.monotonic() < deadline, f"no email matching {pattern!r}"
        time.sleep(0.05)


def link_path(mailer: SmtpServer) -> str:
    """The path of the signing link in the emailed request (its host is PUBLIC_BASE_URL)."""
    return mail_text(mailer, r"https?://[^/\s]+(/s/[A-Za-z0-9_\-]+)").group(1)


# ------------------------------------------------------------------ page checks


def accessible(page: Page) -> None:
    """No serious or critical axe-core violations on the page as it is now."""
    violations = serious_violations(Axe().run(page).response)
    assert not violations, describe_violations(violations)


def readable(page: Page) -> None:
    """Body text and form controls are at least 16px (no zooming to read or type)."""
    small = page.evaluate(
        """() => [...document.querySelectorAll(
                'main :is(p, label, select, textarea, .button, summary),'
                + 'main input:not([type=checkbox], [type=radio], [type=hidden])')]
            .filter(el => el.offsetParent !== null && !el.closest('.visually-hidden'))
            .filter(el => parseFloat(getComputedStyle(el).fontSize) < 16)
            .map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')}: `
                       + getComputedStyle(el).fontSize)"""
    )
    assert not small, small


def shot(page: Page, name: str, subject: Locator | None = None) -> None:
    """What the phone's screen shows (not full-page: that would drop the touch emulation),
    from the top of ``subject`` if given, else from where the page is scrolled."""
    ARTIFACTS.mkdir(exist_ok=True)
    if subject is not None:
        subject.evaluate("el => el.scrollIntoView({block: 'start'})")
    # a smooth scroll (the guide's) has come to rest
    page.evaluate(
        """() => new Promise(done => {
            let y = scrollY, still = 0;
            const look = () => {
                still = scrollY === y ? still + 1 : 0;
                y = scrollY;
                if (still >= 10) { done(); } else { requestAnimationFrame(look); }
            };
            requestAnimationFrame(look);
        })"""
    )
    page.evaluate("document.fonts.ready.then(() => true)")
    page.screenshot(path=str(ARTIFACTS / name), animations="disabled")


def check_page(tab: Tab) -> None:
    accessible(tab.page)
    no_sideways_scroll(tab.page)
    readable(tab.page)


def overlays_line_up_markers(page: Page) -> None:
    overlays_line_up(page, ".field-marker", "data-key")


def guide_button(page: Page) -> Locator:
    return page.locator("#guide .guide-next")


# ------------------------------------------------------------------ steps


def open_and_authenticate(tab: Tab, mailer: SmtpServer, sent: Sent, shots: bool = False) -> None:
    """From the emailed link to the document: consent, an emailed code, the code."""
    page = tab.page
    tab.goto(link_path(mailer))
    expect(page).to_have_url(tab.url(f"/sign/{sent.public_id}"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Before you start")
    check_page(tab)
    if shots:
        shot(page, "phone-sign-consent.png")
        page.locator("form.form-actions").evaluate("el => el.scrollIntoView({block: 'end'})")
        shot(page, "phone-sign-consent-actions.png")
    page.get_by_role("button", name="I agree to use electronic records and signatures").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it is you")
    already = len(mailer.messages)
    page.get_by_role("button", name="Email me a code").click()
    expect(page.get_by_role("status")).to_have_text("Code sent. Check your email.")
    code = mail_text(mailer, r"\b(\d{6})\b", after=already).group(1)
    page.get_by_label("Code", exact=True).fill(code)
    check_page(tab)
    if shots:
        shot(page, "phone-sign-code.png")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("button", name="Adopt and sign", exact=True)).to_be_visible()


def touch(cdp: CDPSession, kind: str, points: list[dict[str, Any]]) -> None:
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def draw_signature(page: Page, canvas: Locator) -> None:
    """Two strokes with a finger: a looping first name and an underline."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    cdp = page.context.new_cdp_session(page)
    strokes = [
        [(0.12, 0.62), (0.18, 0.3), (0.24, 0.66), (0.3, 0.28), (0.36, 0.6), (0.44, 0.35),
         (0.5, 0.62), (0.58, 0.3), (0.64, 0.58), (0.72, 0.4)],
        [(0.15, 0.78), (0.35, 0.74), (0.55, 0.76), (0.8, 0.72)],
    ]  # fmt: skip
    for stroke in strokes:
        (fx, fy), *rest = stroke
        touch(cdp, "touchStart", [{"x": x0 + fx * w, "y": y0 + fy * h, "id": 1}])
        for fx, fy in rest:
            touch(cdp, "touchMove", [{"x": x0 + fx * w, "y": y0 + fy * h, "id": 1}])
        touch(cdp, "touchEnd", [])
    cdp.detach()


# ------------------------------------------------------------------ tests


def test_phone_customer_draws_a_signature_and_signs(
    phone: Tab, app: Flask, mailer: SmtpServer, send
):
    sent = send()
    page = phone.page
    open_and_authenticate(phone, mailer, sent, shots=True)

    # The document: the authored refund as text with its fields in place (the reading view,
    # not page images), and the guide at the bottom.
    expect(page.get_by_role("heading", level=1)).to_have_text("Refund authorization")
    reading = page.locator("article.reading")
    expect(reading.get_by_role("heading", name="Refund details")).to_be_visible()
    expect(page.locator(".doc-pages")).to_have_count(0)
    signature = reading.locator('.reading-field[data-key="customer_signature"]')
    expect(signature).to_contain_text("Sign here")
    expect(signature).not_to_have_class(re.compile(r"\bis-done\b"))  # a suggested name: not signed
    expect(reading.locator('.reading-field[data-key="full_name"]')).to_have_class(
        re.compile(r"\bis-done\b")
    )
    expect(reading.locator('.reading-field[data-key="date_signed"]')).to_have_class(
        re.compile(r"\bis-auto\b")
    )
    guide = guide_button(page)
    expect(guide).to_be_visible()
    expect(guide).to_have_text("Next field (1 of 2)")  # signature, agree (the name is filled in)
    check_page(phone)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "phone-sign-document.png")

    # Choose to draw: the typed name gives way to the pad, and the signature is to do again.
    page.get_by_label("Draw my signature").check()
    expect(page.locator(".typed-signature")).to_be_hidden()
    canvas = page.locator("#signature-pad")
    expect(canvas).to_be_visible()
    expect(signature).not_to_have_class(re.compile(r"\bis-done\b"))
    expect(guide).to_have_text("Next field (1 of 2)")
    # The bitmap matches the box at the phone's pixel ratio (2).
    size = canvas.evaluate("c => [c.width, c.height, c.offsetWidth, c.offsetHeight]")
    assert size[0] == round(size[2] * 2) and size[1] == round(size[3] * 2), size
    assert 2.9 < size[2] / size[3] < 3.1, size

    # The guide shows the place on the page first, then the place to sign.
    page.evaluate("window.scrollTo(0, 0)")
    guide.click()
    expect(signature).to_have_class(re.compile(r"\bis-current\b"))
    expect(signature).to_be_in_viewport()
    expect(guide).to_have_text("Fill in: Customer signature")
    shot(page, "phone-sign-guide.png")
    guide.click()
    expect(page.get_by_label("Draw my signature")).to_be_focused()
    expect(canvas).to_be_in_viewport()

    draw_signature(page, canvas)
    expect(signature).not_to_have_class(re.compile(r"\bis-done\b"))  # drawn, not yet adopted
    expect(signature).to_contain_text("Sign here")
    page.get_by_role("button", name="Adopt this signature").click()
    expect(signature).to_have_class(re.compile(r"\bis-done\b"))
    expect(signature.locator(".reading-field-value")).to_have_text("Signed")
    inked = canvas.evaluate(
        """c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                 .filter((v, i) => i % 4 === 3 && v > 0).length"""
    )
    assert inked > 500, inked
    page.locator(".adopt").evaluate("el => el.scrollIntoView({block: 'center'})")
    shot(page, "phone-sign-drawn.png")

    # The drawing survives a change of size (a phone turned sideways and back).
    before = canvas.evaluate("c => c.toDataURL().length")
    page.set_viewport_size({"width": 700, "height": 390})
    expect(canvas).to_have_js_property("width", round(canvas.evaluate("c => c.offsetWidth")) * 2)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("() => document.getElementById('signature-pad').width < 1000")
    after = canvas.evaluate("c => c.toDataURL().length")
    assert after > 0.6 * before, (before, after)  # still drawn, not blank
    expect(signature).to_have_class(re.compile(r"\bis-done\b"))

    # The guide ends with the agreement, then the sign button.
    expect(guide).to_have_text("Next field (2 of 2)")
    guide.click()
    expect(page.locator("#agree")).to_be_focused()
    page.locator("#agree").check()
    expect(guide).to_have_text("Go to “Adopt and sign”")
    guide.click()
    sign = page.get_by_role("button", name="Adopt and sign", exact=True)
    expect(sign).to_be_focused()
    sign.click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, you have signed")
    check_page(phone)
    shot(page, "phone-sign-done.png")

    with app.app_context():
        envelope = db.session.get(Envelope, sent.envelope_id)
        assert envelope.status == "completed"
        (recipient,) = envelope.recipients
        assert recipient.status == "signed" and recipient.adoption == "drawn"
        value = db.session.execute(
            select(FieldValue).where(
                FieldValue.recipient_id == recipient.id,
                FieldValue.field_key == "customer_signature",
            )
        ).scalar_one()
        assert value.value == "drawn" and value.blob_id
        png = storage.get(value.blob_id)
        assert png.startswith(PNG)
    assert audit_events(app, "recipient.signed")[0].data["adoption"] == "drawn"
    phone.assert_clean()


def test_phone_customer_signs_with_a_typed_name_and_a_double_tap_signs_once(
    phone: Tab, app: Flask, mailer: SmtpServer, send
):
    sent = send()
    page = phone.page
    open_and_authenticate(phone, mailer, sent)
    expect(page.get_by_label("Full name", exact=True).last).to_have_value(CUSTOMER)
    page.locator("#agree").check()
    shot(page, "phone-sign-typed.png", page.locator(".adopt"))

    # Tap twice, quickly. What the button shows is noted in sessionStorage, which outlives
    # the page (the form's request goes out at once).
    posts: list[str] = []
    page.on(
        "request",
        lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/sign") else None,
    )
    page.evaluate(
        """() => {
            const button = document.querySelector('#sign-form [data-once]');
            new MutationObserver(() => sessionStorage.setItem('button', JSON.stringify(
                [button.disabled, button.textContent.trim(), button.getAttribute('aria-busy')])
            )).observe(button, {attributes: true, childList: true, subtree: true});
        }"""
    )
    page.get_by_role("button", name="Adopt and sign", exact=True).dblclick()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, you have signed")
    assert posts == [phone.url(f"/sign/{sent.public_id}/sign")], posts
    shown = page.evaluate("JSON.parse(sessionStorage.getItem('button'))")
    assert shown == [True, "Signing…", "true"], shown

    with app.app_context():
        recipient = db.session.execute(
            select(Recipient).where(Recipient.envelope_id == sent.envelope_id)
        ).scalar_one()
        assert recipient.status == "signed" and recipient.adoption == "typed"
        stored = {
            v.field_key: v
            for v in db.session.execute(
                select(FieldValue).where(FieldValue.recipient_id == recipient.id)
            ).scalars()
        }
        assert stored["customer_signature"].value == CUSTOMER
        assert stored["customer_signature"].blob_id is None
    assert len(audit_events(app, "recipient.signed")) == 1
    phone.assert_clean()


def publish_bank_refund(app: Flask, uploaded: bool) -> None:
    """A refund template with "refund to my bank account" and an IBAN asked only then:
    written in the portal (a reading view) or the same text uploaded as a PDF (page images
    with field boxes), the fields at the same places on the last page."""
    from portal.accounts.models import User
    from portal.documents import authoring
    from portal.documents.geometry import Rect
    from portal.library import demo

    specs = [
        *demo.SIGN_AND_DATE,
        ("checkbox", 57, 240, 16, 16,
         {"label": "Refund to my bank account instead", "key": "to_bank", "required": False}),
        ("text", 300, 244, 220, 22,
         {"label": "IBAN", "key": "iban", "condition": {"field": "to_bank", "equals": True}}),
    ]  # fmt: skip
    name = "Refund to a bank account"
    with app.app_context():
        users = {
            u.role: u for u in db.session.query(User).filter(User.email.like("%@demo.example"))
        }
        admin, reviewer = users["admin"], users["compliance"]
        if not uploaded:
            keys = [asdict(k) for k in authoring.REFUND_MERGE_KEYS]
            demo._publish(
                name, "refund_authorization", authoring.REFUND_EXAMPLE, keys, specs, None, admin,
                reviewer,
            )  # fmt: skip
            return
        pdf = authoring.render_pdf(
            authoring.REFUND_EXAMPLE,
            {k.key: k.sample for k in authoring.REFUND_MERGE_KEYS},
            authoring.REFUND_MERGE_KEYS,
            title="Refund authorization",
        )
        version = library.create_from_pdf(
            name, "refund_authorization", None, pdf, "refund.pdf", by=admin
        )
        last = version.page_count
        height = library.page_box(version, last).display_height
        for field_type, left, from_bottom, width, tall, props in specs:
            at = Rect(left, height - from_bottom, width, tall)
            field = library.add_field(version, field_type, last, at, "customer", by=admin)
            library.update_field(field, props, by=admin)
        library.submit(version, by=admin)
        library.approve(version, by=reviewer)


@pytest.mark.parametrize("uploaded", [False, True], ids=["authored", "uploaded"])
def test_an_empty_drawing_is_refused_and_a_field_appears_when_its_box_is_ticked(
    phone: Tab, app: Flask, mailer: SmtpServer, send, uploaded: bool
):
    """A template with "refund to my bank account" and an IBAN asked only then; the fields
    shown in the document are the reading view's (authored) or boxes on the pages (uploaded)."""
    publish_bank_refund(app, uploaded)
    sent = send("Refund to a bank account", auth_method="link")
    page = phone.page
    phone.goto(link_path(mailer))
    page.get_by_role("button", name="I agree to use electronic records and signatures").click()

    place = ".field-marker" if uploaded else "article.reading .reading-field"
    expect(page.locator(".doc-pages" if uploaded else "article.reading")).to_be_visible()
    iban = page.locator('.field[data-field="iban"]')
    iban_marker = page.locator(f'{place}[data-key="iban"]')
    guide = guide_button(page)
    expect(iban).to_be_hidden()
    expect(iban_marker).to_be_hidden()
    expect(guide).to_have_text("Next field (1 of 2)")  # signature (to adopt), agree
    page.get_by_label("Refund to my bank account instead").check()
    expect(iban).to_be_visible()
    expect(iban_marker).to_be_visible()
    expect(page.locator(f'{place}[data-key="to_bank"]')).to_have_class(re.compile(r"\bis-done\b"))
    expect(guide).to_have_text("Next field (1 of 3)")  # IBAN (higher up), signature, agree
    guide.click()
    expect(guide).to_have_text("Fill in: IBAN")
    guide.click()
    expect(page.get_by_label("IBAN")).to_be_focused()
    page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
    expect(iban_marker).to_have_class(re.compile(r"\bis-done\b"))
    if uploaded:
        overlays_line_up_markers(page)
    else:
        expect(iban_marker.locator(".reading-field-value")).to_have_text(
            "DE89 3704 0044 0532 0130 00"
        )

    # Drawing chosen but nothing drawn: the server asks for a signature; the choice stays.
    page.get_by_label("Draw my signature").check()
    page.locator("#agree").check()
    page.get_by_role("button", name="Adopt and sign", exact=True).click()
    expect(page.locator("#err-signature")).to_have_text(
        "Draw your signature in the box, or type your name instead."
    )
    expect(page.get_by_label("Draw my signature")).to_be_checked()
    expect(page.locator("#signature-pad")).to_be_visible()
    expect(iban).to_be_visible()
    check_page(phone)

    # Draw, but forget the agreement: the drawing comes back with the page, no redrawing.
    canvas = page.locator("#signature-pad")
    draw_signature(page, canvas)
    page.get_by_role("button", name="Adopt and sign", exact=True).click()
    expect(page.locator("#err-agree")).to_have_text("Confirm that this is your signature.")
    expect(canvas).to_be_visible()
    page.wait_for_function(
        """() => { const c = document.getElementById('signature-pad');
                   return c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                           .some((v, i) => i % 4 === 3 && v > 0); }"""
    )
    expect(page.locator(f'{place}[data-key="customer_signature"]')).to_have_class(
        re.compile(r"\bis-done\b")
    )

    # Agree and sign: the IBAN is stored because the box was ticked.
    page.locator("#agree").check()
    page.get_by_role("button", name="Adopt and sign", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, you have signed")
    with app.app_context():
        stored = {
            v.field_key: v.value
            for v in db.session.execute(
                select(FieldValue).where(FieldValue.envelope_id == sent.envelope_id)
            ).scalars()
        }
    assert stored["to_bank"] == "true" and stored["iban"] == "DE89 3704 0044 0532 0130 00"
    assert stored["customer_signature"] == "drawn"
    # the two 422s with the server's messages are the only failures
    assert phone.failed == [f"422 POST {phone.url(f'/sign/{sent.public_id}/sign')}"] * 2
    phone.failed.clear()
    phone.assert_clean()


def test_a_cancelled_documents_link_shows_a_calm_page(
    phone: Tab, app: Flask, mailer: SmtpServer, send
):
    sent = send()
    path = link_path(mailer)
    with app.app_context():
        envelope = db.session.get(Envelope, sent.envelope_id)
        envelopes.void(envelope, "The order was cancelled at your request.", by=envelope.created_by)
    page = phone.page
    phone.goto(path)
    expect(page.get_by_role("heading", level=1)).to_have_text("This document was cancelled")
    expect(page.locator(".stopped")).to_contain_text("The order was cancelled at your request.")
    check_page(phone)
    shot(page, "phone-sign-stopped.png")
    # the page says so with its status too (410 Gone); nothing else failed
    assert phone.failed == [f"410 GET {phone.url(path)}"]
    phone.failed.clear()
    phone.assert_clean()


def test_desktop_signer_reads_wider_pages_without_the_phone_guide(
    desktop: Tab, app: Flask, mailer: SmtpServer, send
):
    """Page images and their field boxes: an uploaded PDF (an authored text reads as text)."""
    public_id, link = uploaded_refund(app)
    page = desktop.page
    desktop.goto(urlsplit(link).path)
    expect(page).to_have_url(desktop.url(f"/sign/{public_id}"))
    page.get_by_role("button", name="I agree to use electronic records and signatures").click()
    expect(page.get_by_role("button", name="Adopt and sign", exact=True)).to_be_visible()
    expect(page.locator("#guide")).to_be_hidden()
    expect(page.locator(".doc-pages figure.page")).to_have_count(2)
    width = page.locator(".doc-pages figure.page").first.evaluate("f => f.offsetWidth")
    assert width >= 700, width
    page.locator(".doc-pages img").last.scroll_into_view_if_needed()
    expect(page.locator(".doc-pages img").last).to_have_js_property("complete", True)
    overlays_line_up_markers(page)
    check_page(desktop)
    page.locator('.field-marker[data-key="customer_signature"]').evaluate(
        "el => el.scrollIntoView({block: 'start'})"
    )
    page.evaluate("window.scrollBy(0, -300)")
    shot(page, "desktop-sign-document.png")
    desktop.assert_clean()


def test_without_javascript_a_typed_signature_still_works(
    browser: Browser, base_url: str, app: Flask, mailer: SmtpServer, send
):
    sent = send(auth_method="link")
    with open_tab(browser, base_url, **PHONE, java_script_enabled=False) as tab:
        page = tab.page
        tab.goto(link_path(mailer))
        page.get_by_role("button", name="I agree to use electronic records and signatures").click()
        expect(page.get_by_label("Draw my signature")).to_be_hidden()
        expect(page.locator("#guide")).to_be_hidden()
        expect(page.locator(".field-marker").first).to_be_hidden()  # not placed: not shown
        no_sideways_scroll(page)
        page.locator("#agree").check()
        page.get_by_role("button", name="Adopt and sign", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, you have signed")
        tab.assert_clean()
    with app.app_context():
        recipient = db.session.execute(
            select(Recipient).where(Recipient.envelope_id == sent.envelope_id)
        ).scalar_one()
        assert recipient.status == "signed" and recipient.adoption == "typed"
