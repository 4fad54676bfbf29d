"""The signing flow's details in Chromium on a 390x844 phone: the disclosure's summary with the
accept button in view, nothing signed before the signer adopts, the guide from the first
unfinished field with a true count, one primary button per step, and the approver's page with
the customer's values and one decision. axe-core on every page shown."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.browser import Tab, no_sideways_scroll
from tests.conftest import audit_events
from tests.test_approver import ADDENDUM, _customer_signs
from tests.test_signing import _path, sent  # noqa: F401  (fixture)
from tests.test_signing_browser import accessible, shot

pytestmark = pytest.mark.browser


def primary_buttons(page: Page) -> list[str]:
    """The visible buttons drawn as primary (a filled button: no variant class)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.button')]
            .filter(el => !el.classList.contains('secondary'))
            .filter(el => el.offsetParent !== null || getComputedStyle(el).position === 'fixed')
            .filter(el => el.getClientRects().length > 0)
            .map(el => el.textContent.trim())"""
    )


def accept_in_view_without_scrolling(page: Page) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    button = page.get_by_role("button", name="I agree to use electronic records and signatures")
    box = button.bounding_box()
    assert box is not None
    assert page.evaluate("scrollY") == 0
    assert box["y"] >= 0 and box["y"] + box["height"] <= 844, box


def test_customer_consents_from_a_summary_and_nothing_is_signed_before_adopting(
    phone: Tab,
    app: Flask,
    sent,  # noqa: F811
):
    envelope_id, _public_id, link = sent(auth_method="link")
    page = phone.page
    phone.goto(_path(link))

    # The disclosure: a few lines and the button, in view on the phone's first screen.
    expect(page.get_by_role("heading", level=1)).to_have_text("Before you start")
    expect(page.locator(".summary-points")).to_contain_text("paper copy")
    full = page.locator("details.disclosure-full")
    expect(full).not_to_have_attribute("open", "")
    expect(page.get_by_text("Your right to paper")).to_be_hidden()
    accept_in_view_without_scrolling(page)
    assert primary_buttons(page) == ["I agree to use electronic records and signatures"]
    accessible(page)
    no_sideways_scroll(page)
    shot(page, "flow-consent-390.png")
    page.get_by_text("Read the full disclosure").click()
    expect(page.get_by_text("Your right to paper")).to_be_visible()
    expect(page.get_by_text("Withdrawing consent")).to_be_visible()
    accessible(page)
    page.get_by_role("button", name="I agree to use electronic records and signatures").click()

    # The document: the prefilled name is a suggestion, nothing is ticked.
    expect(page.get_by_role("heading", level=1)).to_have_text("Refund authorization")
    signature = page.locator('[data-key="customer_signature"]:is(.field-marker, .reading-field)')
    expect(signature).to_have_count(1)
    expect(page.locator("#typed_name")).to_have_value("Zoë Łukasiewicz")
    expect(signature).not_to_have_class(re.compile(r"\bis-done\b"))
    expect(page.locator(".is-done[data-key]")).to_have_count(
        page.locator('[data-key="full_name"]:is(.field-marker, .reading-field)').count()
    )  # only the name the agent filled in, not the signature
    guide = page.locator("#guide .guide-next")
    expect(guide).to_have_text("Next field (1 of 2)")  # the signature, then the agreement
    expect(page.locator("#guide .guide-status")).to_have_text("0 of 2 done.")
    assert primary_buttons(page) == ["Adopt and sign"]
    accessible(page)
    no_sideways_scroll(page)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "flow-document-390.png")

    # The guide starts at the signature: its place on the page, then the button to adopt.
    guide.click()
    expect(signature).to_have_class(re.compile(r"\bis-current\b"))
    expect(guide).to_have_text("Fill in: Customer signature")
    guide.click()
    adopt = page.get_by_role("button", name="Adopt this signature")
    expect(adopt).to_be_focused()
    expect(adopt).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Enter")  # keyboard works
    expect(page.get_by_role("button", name="Signature adopted")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#adopt-status")).to_have_text(
        "Adopted. It goes on the document when you sign."
    )
    expect(signature).to_have_class(re.compile(r"\bis-done\b"))
    expect(guide).to_have_text("Next field (2 of 2)")
    expect(page.locator("#guide .guide-status")).to_have_text("1 of 2 done.")
    shot(page, "flow-adopted-390.png", page.locator(".adopt"))

    # Another name is another signature: adopt it again.
    page.locator("#typed_name").fill("Zoë M. Łukasiewicz")
    expect(signature).not_to_have_class(re.compile(r"\bis-done\b"))
    expect(page.locator("#adopt-status")).to_have_text("Changed: adopt it again.")
    expect(guide).to_have_text("Next field (1 of 2)")
    page.get_by_role("button", name="Adopt this signature").click()
    expect(signature).to_have_class(re.compile(r"\bis-done\b"))

    guide.click()
    expect(page.locator("#agree")).to_be_focused()
    page.locator("#agree").check()
    expect(guide).to_have_text("Go to “Adopt and sign”")
    accessible(page)
    guide.click()
    sign = page.get_by_role("button", name="Adopt and sign", exact=True)
    expect(sign).to_be_focused()
    sign.click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, you have signed")
    expect(page.locator(".done .lede")).to_contain_text("Your copy is sealed")
    assert primary_buttons(page) == ["Download your signed copy"]
    accessible(page)
    shot(page, "flow-done-390.png")
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.status == "completed"
        assert envelope.recipients[0].adoption == "typed"
    (consented,) = audit_events(app, "recipient.consented")
    assert consented.data["disclosure"]
    assert audit_events(app, "recipient.signed")[0].data["adoption"] == "typed"
    phone.assert_clean()


def test_approver_sees_the_customers_values_and_decides_with_one_primary_button(
    phone: Tab,
    app: Flask,
    sent,  # noqa: F811
):
    envelope_id, public_id, link = sent(ADDENDUM)
    _customer_signs(app, public_id, link)
    with app.app_context():
        from sqlalchemy import select

        from portal.mail import Message

        message = db.session.execute(
            select(Message).where(Message.to_address == "sam@example.com")
        ).scalar_one()
        approver_link = re.search(r"http://127.0.0.1:5000(/s/\S+)", message.text_body).group(1)
    page = phone.page
    phone.goto(approver_link)
    accept_in_view_without_scrolling(page)
    page.get_by_role("button", name="I agree to use electronic records and signatures").click()

    expect(page.get_by_role("heading", name="What was filled in")).to_be_visible()
    entered = page.locator(".entered")
    expect(entered).to_contain_text("Jordan Rivera")
    expect(entered).to_contain_text("Signed as “Jordan Rivera”")
    expect(page.get_by_text("Decline to sign")).to_have_count(0)
    expect(page.locator("#guide")).to_have_count(0)
    assert primary_buttons(page) == ["Approve"]
    reject = page.locator("details.reject > summary")
    expect(reject).to_have_text("Reject")
    accessible(page)
    no_sideways_scroll(page)
    shot(page, "flow-approver-390.png", entered)

    # Reject asks for a reason first.
    reject.click()
    expect(page.get_by_label(re.compile("Why do you reject it?"))).to_be_visible()
    accessible(page)
    shot(page, "flow-approver-reject-390.png", page.locator(".review"))
    reject.click()  # changed their mind

    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, you have approved")
    expect(page.get_by_role("link", name="Download your signed copy")).to_be_visible()
    accessible(page)
    shot(page, "flow-approver-done-390.png")
    with app.app_context():
        assert db.session.get(Envelope, envelope_id).status == "completed"
    assert len(audit_events(app, "recipient.approved")) == 1
    phone.assert_clean()
