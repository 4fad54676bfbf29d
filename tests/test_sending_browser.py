"""The send form and the envelope page in Chromium: a double-clicked Send, a reloaded result
page and a resubmitted form make one envelope; merge fields and recipient details fill each
other as they are typed; the pages at a desktop (1280x800) and a phone (390x844) width.
Screenshots go to tests/artifacts/sending-*.png."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import func, select

from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import operations as library
from portal.mail import Message
from tests.browser import DESKTOP, PHONE, Tab, no_sideways_scroll, open_tab
from tests.conftest import audit_events, demo_template
from tests.test_signing_browser import accessible
from tests.test_walkthrough_browser import DETAILS as WALKTHROUGH

pytestmark = pytest.mark.browser

# The walkthrough's merge values but the two the recipient's details fill (typed there).
DETAILS = {k: v for k, v in WALKTHROUGH.items() if k not in ("Customer name", "Customer email")}


@pytest.fixture
def refund(app: Flask, runner_for, make_staff):
    """The demo data, an agent of its team and the refund's approved version id."""
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        version_id = library.approved_version(demo_template()).id
    return make_staff("agent", team="Customer Care"), version_id


def envelopes(app: Flask) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(Envelope)).scalar_one()


def fill_the_form(tab: Tab, ticket: str = "T-1001") -> None:
    page = tab.page
    customer = page.get_by_role("group", name="Customer")
    # Typed once: the merge field fills the customer's name, the customer's email the merge field.
    page.get_by_label("Customer name", exact=True).fill("Zoë Łukasiewicz")
    expect(customer.get_by_label("Name", exact=True)).to_have_value("Zoë Łukasiewicz")
    customer.get_by_label("Email", exact=True).fill("zoe@example.com")
    expect(page.get_by_label("Customer email", exact=True)).to_have_value("zoe@example.com")
    for label, value in DETAILS.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_label("Ticket or CRM reference").fill(ticket)


def test_double_click_reload_and_resubmit_send_one_envelope(app: Flask, base_url, desktop, refund):
    staff, version_id = refund
    page = desktop.page
    desktop.sign_in(staff)
    desktop.goto(f"/envelopes/new/{version_id}")
    fill_the_form(desktop)
    # Once the two differ on purpose, each keeps its own value.
    customer = page.get_by_role("group", name="Customer")
    customer.get_by_label("Name", exact=True).fill("Zoë Ł.")
    page.get_by_label("Customer name", exact=True).fill("Zoë Łukasiewicz-Nowak")
    expect(customer.get_by_label("Name", exact=True)).to_have_value("Zoë Ł.")
    page.get_by_text("Message, copies, expiry and reminders").click()
    page.get_by_label("Personal message").fill("As agreed on the phone.")
    accessible(page)
    no_sideways_scroll(page)
    desktop.screenshot("sending-desktop-options.png")

    page.get_by_role("button", name="Send", exact=True).dblclick()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sent")
    expect(page).to_have_url(re.compile(r"/envelopes/[0-9a-f]{32}/sent$"))
    assert envelopes(app) == 1
    result = page.url
    desktop.screenshot("sending-desktop-sent.png")

    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sent")
    expect(page.locator("#links-shown")).to_contain_text("shown once, right after sending")
    expect(page.locator(".handover")).to_have_count(0)
    assert page.url == result and envelopes(app) == 1

    # Back to the form and Send again. The page is not cached (no-store), so it comes back
    # with a new key and this is a new sending of the same thing: the portal warns instead of
    # sending. (Had the browser kept the old form and its key, it would land on the result.)
    page.go_back()
    expect(page.get_by_role("heading", level=1)).to_have_text("Send Refund authorization")
    fill_the_form(desktop)
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#duplicate-warning, #links-shown")).to_be_visible()
    if page.url == result:
        expect(page.locator("#links-shown")).to_be_visible()
    else:
        warning = page.locator("#duplicate-warning")
        expect(warning).to_contain_text("This looks like a repeat")
        earlier = result.removesuffix("/sent").removeprefix(base_url)
        expect(warning.get_by_role("link")).to_have_attribute("href", earlier)
        desktop.screenshot("sending-desktop-repeat.png")
    assert envelopes(app) == 1
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(Message)).scalar_one() == 1
    assert len(audit_events(app, "envelope.created")) == 1
    desktop.failed = [f for f in desktop.failed if not f.startswith("409 POST")]  # the warning
    desktop.assert_clean()


def test_send_and_envelope_pages_at_phone_and_desktop_widths(
    app: Flask, base_url, browser, refund, make_staff
):
    _staff, version_id = refund
    for name, options in (("phone", PHONE), ("desktop", DESKTOP)):
        staff = make_staff("agent", team="Customer Care")  # (one TOTP code signs in once)
        ticket = f"CRM-{name}"
        with open_tab(browser, base_url, **options) as tab:
            page = tab.page
            tab.sign_in(staff)
            tab.goto(
                f"/envelopes/new/{version_id}?m-customer.name=Jordan%20Rivera&ticket_id={ticket}"
            )
            customer = page.get_by_role("group", name="Customer")
            expect(customer.get_by_label("Name", exact=True)).to_have_value("Jordan Rivera")
            expect(page.get_by_label("Ticket or CRM reference")).to_have_value(ticket)
            no_sideways_scroll(page)
            tab.screenshot(f"sending-{name}-new.png")
            fill_the_form(tab, ticket)
            page.get_by_role("button", name="Send", exact=True).click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Sent")
            page.wait_for_load_state("load")  # (laid out at the phone's width, fonts in)
            no_sideways_scroll(page)
            page.get_by_role("link", name="Follow the envelope").click()
            timeline = page.get_by_role("region", name="Timeline")
            expect(timeline.locator('tr[data-event="envelope.created"]')).to_contain_text(
                "127.0.0.1"
            )
            page.wait_for_load_state("load")
            no_sideways_scroll(page)
            accessible(page)
            tab.screenshot(f"sending-{name}-envelope.png")
            page.get_by_role("link", name="Void envelope…").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Void Refund authorization?")
            no_sideways_scroll(page)
            tab.screenshot(f"sending-{name}-void.png")
            page.get_by_role("link", name="Keep it").click()
            expect(page.get_by_role("region", name="Timeline")).to_be_visible()
            tab.assert_clean()
    assert envelopes(app) == 2
