"""The console's list in Chromium: a 390x844 phone never scrolls the page sideways, the search
answers a paste (an input event, no key pressed), filters, sort and pages work through htmx
and land in the address bar, and axe-core finds nothing serious; screenshots at 390x844 and
1280x800 go to tests/artifacts/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser import describe_violations, no_sideways_scroll, serious_violations
from tests.test_console_lists import NOW, World

pytestmark = pytest.mark.browser


@pytest.fixture
def busy_team(app, make_staff):
    """An agent whose team sent 60 envelopes, some to people with very long names."""
    world = World(app, make_staff)
    agent = world.staff()
    refund = world.template("Refund authorization")
    addendum = world.template("Service-change addendum with a rather long document title")
    world.many(refund, agent.id, 57, NOW - timedelta(days=2))
    world.envelope(
        addendum,
        agent.id,
        at=NOW - timedelta(hours=2),
        people=[
            (
                "Maximilian Alexander Featherstonehaugh-Wolfeschlegelsteinhausen",
                "maximilian.alexander.featherstonehaugh@a-very-long-domain-name.example.com",
                "+44 20 7946-0000",
            )
        ],
        merge={"order.number": "ORD-2026-000123456789", "account.number": "AC-558120"},
        ticket_id="TICKET-2026-0000001234567",
    )
    world.envelope(refund, agent.id, at=NOW - timedelta(hours=1), status="completed")
    world.envelope(refund, agent.id, at=NOW, status="declined", finished_at=NOW)
    return agent


def _axe_clean(page) -> None:
    violations = serious_violations(Axe().run(page).response)
    assert not violations, describe_violations(violations)


def test_phone_console_list_fits_the_screen_and_searches_on_paste(phone, busy_team):
    page = phone.page
    phone.sign_in(busy_team)
    rows = page.locator("#envelope-rows tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#envelope-count")).to_have_text("Showing 50 of 60 envelopes")
    no_sideways_scroll(page)
    wrap = page.locator(".table-wrap")
    assert wrap.evaluate("el => el.scrollWidth > el.clientWidth"), "the table scrolls inside"
    _axe_clean(page)
    phone.screenshot("phone-console-list.png")

    page.evaluate("window.__sameDocument = true")
    search = page.get_by_label("Search")
    search.fill("558120")  # what a paste does: one input event, no key pressed
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Maximilian")
    expect(page).to_have_url(re.compile(r"/console\?q=558120"))
    expect(page.locator("#envelope-count")).to_have_text("Showing 1 of 1 envelope")
    assert page.evaluate("window.__sameDocument === true"), "the search reloaded the page"
    no_sideways_scroll(page)
    phone.screenshot("phone-console-search.png")

    search.fill("")
    page.get_by_label("Status").select_option("declined")
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"status=declined"))
    page.get_by_label("Needs attention").check()
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"attention=1"))
    no_sideways_scroll(page)
    phone.screenshot("phone-console-filters.png")
    phone.assert_clean()


def test_desktop_console_pages_and_sorts_through_htmx(desktop, busy_team):
    page = desktop.page
    desktop.sign_in(busy_team)
    rows = page.locator("#envelope-rows tr")
    expect(rows).to_have_count(50)
    first_page = rows.first.inner_text()
    _axe_clean(page)
    desktop.screenshot("desktop-console-list.png")

    page.evaluate("window.__sameDocument = true")
    page.get_by_role("link", name="Next page →").click()
    expect(rows).to_have_count(10)
    expect(page).to_have_url(re.compile(r"/console\?after="))
    page.get_by_role("link", name="← Previous page").click()
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_text(first_page)

    header = page.locator("thead").get_by_role("link", name=re.compile(r"^Document"))
    header.click()
    expect(page).to_have_url(re.compile(r"sort=document"))
    expect(rows.first).to_contain_text("Refund authorization")
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Document")
    header.click()
    expect(page).to_have_url(re.compile(r"sort=-document"))
    expect(rows.first).to_contain_text("Service-change addendum")
    # a search shows its rows, then its count from a request of its own
    page.get_by_label("Search").fill("customer")
    expect(page.locator("#envelope-count")).to_have_text("Showing 50 of 59 envelopes")
    page.get_by_label("Search").fill("")
    expect(page.locator("#envelope-count")).to_have_text("Showing 50 of 60 envelopes")
    # a filter keeps the sort (the form carries it) and starts from the first page
    page.get_by_label("Status").select_option("sent")
    expect(page).to_have_url(re.compile(r"status=sent.*sort=-document|sort=-document.*status=sent"))
    assert page.evaluate("window.__sameDocument === true"), "a click reloaded the page"
    desktop.screenshot("desktop-console-sorted.png")
    desktop.assert_clean()


def test_the_list_works_without_javascript(browser, base_url, busy_team):
    from tests.browser import DESKTOP, open_tab

    with open_tab(browser, base_url, java_script_enabled=False, **DESKTOP) as tab:
        page = tab.page
        tab.sign_in(busy_team)
        page.get_by_label("Search").fill("ORD-2026-000123456789")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile(r"q=ORD-2026-000123456789"))
        expect(page.locator("#envelope-rows tr")).to_have_count(1)
        page.get_by_label("Search").fill("")
        page.get_by_role("button", name="Apply").click()
        page.get_by_role("link", name="Next page →").click()
        expect(page.locator("#envelope-rows tr")).to_have_count(10)
