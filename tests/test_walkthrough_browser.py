"""A new user's first walk through the portal after ``make run``, entirely through the UI.

The demo data is seeded (``flask portal seed-demo``) and no SMTP server is configured, as in
embedded mode. The demo agent signs in at a desktop with the password ``seed-demo`` printed and
sets up an authenticator at this first sign-in; sends the approved "Refund authorization" to a
customer, previewing it first; gets the copy-link and QR-code hand-over; finds the signing email
in the development mailbox. The customer follows its link on a phone, accepts the disclosure,
signs with a typed name and sees the confirmation. Back at the desktop the envelope is completed
and sealed (jobs run inline). Screenshots go to tests/artifacts/walkthrough-*.png.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import select

from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.browser import Tab, no_sideways_scroll
from tests.conftest import audit_events
from tests.test_browser import enrol_with_key_from_page
from tests.test_signing_browser import CUSTOMER, EMAIL, accessible, check_page, shot

pytestmark = pytest.mark.browser

AGENT = "agent@demo.example"
TEMPLATE = "Refund authorization"
DETAILS = {  # the merge fields of the demo refund, by their labels on the form
    "Customer name": CUSTOMER,
    "Customer email": EMAIL,
    "Order number": "ORD-104233",
    "Order date": "3 June 2026",
    "Refund amount": "€42.00",
    'Refund method ("card" or "bank transfer")': "card",
    "Reason for the refund": "Damaged in transit.",
}


@pytest.fixture
def demo_password(app: Flask, runner_for) -> str:
    """``flask portal seed-demo`` as ``make run`` does it; the agent's password it prints."""
    with app.app_context():
        result = runner_for(app).invoke(args=["portal", "seed-demo"])
    assert result.exit_code == 0, result.output
    assert f"Added the approved template {TEMPLATE!r}." in result.output
    match = re.search(rf"^\s*agent\s+{re.escape(AGENT)}\s+(\S+)$", result.output, re.M)
    assert match, result.output
    return match.group(1)


def envelope_id(app: Flask, public_id: str) -> int:
    with app.app_context():
        return db.session.execute(
            select(Envelope.id).where(Envelope.public_id == public_id)
        ).scalar_one()


def test_new_user_walkthrough_from_sign_in_to_a_sealed_envelope(
    app: Flask, base_url: str, desktop: Tab, phone: Tab, demo_password: str
):
    # `flask portal serve` points the links in emails at the server it starts; so does this.
    app.config["PUBLIC_BASE_URL"] = base_url
    page = desktop.page

    # First sign-in: email and password, then an authenticator set up with the key shown.
    desktop.goto("/")
    expect(page).to_have_url(desktop.url("/auth/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill(AGENT)
    page.get_by_label("Password").fill(demo_password)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(desktop.url("/auth/enrol"))
    expect(page.get_by_role("heading", name="Set up two-step sign-in")).to_be_visible()
    shot(page, "walkthrough-desktop-enrol.png")
    enrol_with_key_from_page(desktop)
    page.get_by_role("link", name="I have saved them — continue").click()
    expect(page).to_have_url(desktop.url("/console"))
    expect(page.get_by_role("heading", name="Console", level=1)).to_be_visible()
    expect(page.get_by_text("Signed in as Alex Agent · Agent · Customer Care")).to_be_visible()
    expect(page.get_by_text("No envelopes yet.")).to_be_visible()
    send_list = page.locator(".send-list li").first
    assert send_list.evaluate("li => getComputedStyle(li).listStyleType") == "none"  # no bullets
    shot(page, "walkthrough-desktop-console.png")

    # A new envelope from the approved refund template.
    page.get_by_role("region", name="Send a document").get_by_role("link", name=TEMPLATE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Send {TEMPLATE}")
    for label, value in DETAILS.items():
        page.get_by_label(label, exact=True).fill(value)
    customer = page.get_by_role("group", name="Customer")
    customer.get_by_label("Name", exact=True).fill(CUSTOMER)
    customer.get_by_label("Email", exact=True).fill(EMAIL)
    customer.get_by_label("They prove who they are by").select_option(label="The link alone")
    page.get_by_label("Ticket or CRM reference").fill("T-1001")
    accessible(page)
    no_sideways_scroll(page)
    shot(page, "walkthrough-desktop-new.png")

    # The preview opens the merged PDF in a new tab (Chromium's PDF viewer, which paints
    # nothing in a headless screenshot: only the answer is checked).
    is_preview = re.compile(r"/envelopes/preview/\d+$")
    with (
        page.context.expect_event("response", lambda r: is_preview.search(r.url)) as answer,
        page.context.expect_page() as opened,
    ):
        page.get_by_role("button", name="Preview the document").click()
    preview = answer.value
    assert preview.status == 200 and preview.headers["content-type"] == "application/pdf"
    opened.value.close()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Send {TEMPLATE}")

    # Send: the link to hand over in the chat, and a QR code for a customer in front of you.
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sent")
    expect(page.get_by_text(f"{TEMPLATE} is on its way.")).to_be_visible()
    expect(page.get_by_role("heading", name=f"{CUSTOMER} (Customer)")).to_be_visible()
    expect(page.get_by_text(f"Emailed to {EMAIL}.")).to_be_visible()
    handed_over = page.locator(".handover .secret")
    expect(handed_over).to_have_text(re.compile(rf"^{re.escape(base_url)}/s/\S+$"))
    expect(page.get_by_role("button", name="Copy link")).to_be_visible()
    qr = page.get_by_role("img", name=f"QR code of the signing link for {CUSTOMER}")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box and box["width"] >= 150, f"the QR code is too small to scan: {box}"
    handed_link = handed_over.inner_text()
    accessible(page)
    shot(page, "walkthrough-desktop-sent.png")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == handed_link

    page.get_by_role("link", name="Follow the envelope").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TEMPLATE)
    public_id = page.url.rsplit("/", 1)[-1]
    envelope_page = page.url
    header = page.locator(".page-header")
    expect(header.locator(".badge")).to_have_text("Waiting")
    recipients = page.get_by_role("region", name="Recipients")
    expect(recipients.get_by_role("row", name=CUSTOMER)).to_contain_text("Link sent")
    expect(recipients.get_by_role("row", name=CUSTOMER)).to_contain_text("Email queued")

    # No MAIL_SERVER: the signing email waits in the development mailbox.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mailbox").click()
    expect(page.get_by_role("heading", name="Mailbox", level=1)).to_be_visible()
    expect(page.get_by_text("No MAIL_SERVER is set, so nothing leaves the portal")).to_be_visible()
    shot(page, "walkthrough-desktop-mailbox.png")
    page.get_by_role("link", name=f"Please sign: {TEMPLATE} — Alex Agent").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Please sign: {TEMPLATE}")
    expect(page.get_by_text(f"To {CUSTOMER} <{EMAIL}>")).to_be_visible()
    expect(page.get_by_text("Not sent: no MAIL_SERVER is set.")).to_be_visible()
    links = page.locator("#message-links a")
    expect(links).to_have_count(1)
    link = links.get_attribute("href")
    assert link == handed_link, "the email and the hand-over carry the same link"
    card = page.get_by_role("region", name="Links in this message").bounding_box()
    shown = links.bounding_box()
    assert card and shown and shown["x"] + shown["width"] <= card["x"] + card["width"]  # wraps
    shot(page, "walkthrough-desktop-mail.png")
    page.goto(envelope_page)  # the agent keeps the envelope open while the customer signs

    # The customer opens the link on a phone.
    sign = phone.page
    sign.goto(link)
    expect(sign).to_have_url(phone.url(f"/sign/{public_id}"))
    expect(sign.get_by_role("heading", level=1)).to_have_text("Before you start")
    expect(sign.get_by_text(f"Alex Agent sent you “{TEMPLATE}”.")).to_be_visible()
    check_page(phone)
    shot(sign, "walkthrough-phone-consent.png")
    sign.get_by_role("button", name="I agree to use electronic records and signatures").click()

    expect(sign.get_by_role("heading", level=1)).to_have_text(TEMPLATE)
    expect(sign.get_by_label("Full name", exact=True).first).to_have_value(CUSTOMER)
    sign.get_by_label("Type my name").check()
    typed = sign.get_by_role("region", name="Your signature").get_by_label("Full name")
    typed.fill(CUSTOMER)
    sign.get_by_label("I agree that this is my electronic signature").check()
    check_page(phone)
    shot(sign, "walkthrough-phone-sign.png", sign.locator(".adopt"))
    sign.get_by_role("button", name="Adopt and sign", exact=True).click()

    expect(sign.get_by_role("heading", level=1)).to_have_text("Thank you, you have signed")
    # no MAIL_SERVER: the copy's email waits in the mailbox, so it is "on its way", not "emailed"
    expect(sign.get_by_role("status")).to_have_text(
        "Everyone has finished. Your copy is sealed with its certificate of completion."
        " It is also on its way to you by email."
    )
    expect(sign.get_by_role("link", name="Download your signed copy")).to_be_visible()
    check_page(phone)
    shot(sign, "walkthrough-phone-done.png")

    # Back at the desktop: the envelope is completed and sealed.
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text(TEMPLATE)
    expect(header.locator(".badge")).to_have_text(["Completed", "Sealed"])
    expect(recipients.get_by_role("row", name=CUSTOMER)).to_contain_text("Signed")
    sealed = page.get_by_role("region", name="Signed document")
    expect(sealed).to_have_attribute("data-seal-status", "sealed")
    expect(sealed.get_by_role("link", name="Download the sealed PDF")).to_be_visible()
    expect(sealed.get_by_role("link", name="Audit report (PDF)")).to_be_visible()
    expect(page.get_by_role("button", name="Void envelope")).to_have_count(0)
    accessible(page)
    no_sideways_scroll(page)
    shot(page, "walkthrough-desktop-completed.png")

    subject = str(envelope_id(app, public_id))
    for event in ("recipient.signed", "envelope.completed", "envelope.sealed"):
        found = [e for e in audit_events(app, event) if e.subject_id == subject]
        assert len(found) == 1 and found[0].subject_type == "envelope", event
    desktop.assert_clean()
    phone.assert_clean()
