"""The compliance officer's walk in a desktop browser (1280x800), on the demo data of
``flask portal seed-demo``: search the audit trail by a customer's email for last month,
export the events and envelopes as CSV, download the sealed compliance report, place a hold on
that customer's email, let the retention sweep run seven years later (``flask portal tick
--now``) and see the held envelopes kept, named with the hold, while the others are purged;
the audit chain still verifies.

Screenshots (1280x800 and 390x844) go to tests/artifacts/records-*.png.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import clock
from portal.documents.seal import check_seal
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.records import demo
from portal.records.periods import Period
from tests.browser import Tab, no_sideways_scroll
from tests.conftest import audit_events
from tests.test_signing_browser import accessible

pytestmark = pytest.mark.browser

PHONE_VIEW = {"width": 390, "height": 844}
DESKTOP_VIEW = {"width": 1280, "height": 800}
HOLD = "Rivera refund dispute"


@pytest.fixture(autouse=True)
def real_time():
    yield
    clock.reset()


def envelopes_of(app) -> dict[str, dict[str, object]]:
    """The demo refunds by customer email: public ids, ids, and whether purged."""
    found: dict[str, dict[str, object]] = {}
    with app.app_context():
        rows = db.session.execute(
            select(Envelope, Recipient.email)
            .join(Recipient, Recipient.envelope_id == Envelope.id)
            .where(Envelope.ticket_id.like(f"{demo.TICKET_PREFIX}%"))
        ).all()
        for envelope, email in rows:
            found[envelope.public_id] = {
                "id": envelope.id,
                "email": email,
                "ticket": envelope.ticket_id,
                "status": envelope.status,
                "purged": envelope.purged_at is not None,
            }
    return found


def purged_ids(app, ids) -> set[int]:
    with app.app_context():
        return set(
            db.session.execute(
                select(Envelope.id).where(Envelope.id.in_(ids), Envelope.purged_at.is_not(None))
            ).scalars()
        )


def tick(app, runner_for, when) -> str:
    with app.app_context():
        result = runner_for(app).invoke(args=["portal", "tick", "--now", when.isoformat()])
    assert result.exit_code == 0, result.output
    assert "retention_sweep" in result.output
    return result.output


def at_both_sizes(tab: Tab, name: str) -> None:
    """Screenshots at 1280x800 and 390x844; on the phone nothing but tables' own scrolling
    boxes may be wider than the screen."""
    page: Page = tab.page
    tab.screenshot(f"records-{name}-desktop.png")
    page.set_viewport_size(PHONE_VIEW)
    tab.screenshot(f"records-{name}-phone.png")
    no_sideways_scroll(page)
    page.set_viewport_size(DESKTOP_VIEW)


def records(page: Page) -> None:
    """The Records link of the main navigation."""
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Records", exact=True).click()
    expect(page.get_by_role("heading", name="Records and compliance")).to_be_visible()


def test_officer_finds_exports_holds_and_watches_the_sweep_skip_the_hold(
    app, desktop: Tab, runner_for, make_staff
):
    with app.app_context():
        seeded = runner_for(app).invoke(args=["portal", "seed-demo", "--records"])
    assert seeded.exit_code == 0, seeded.output
    assert "Added ended demo refunds" in seeded.output
    refunds = envelopes_of(app)
    jordan = {p: r for p, r in refunds.items() if r["email"] == demo.JORDAN.email}
    others = {p: r for p, r in refunds.items() if r["email"] != demo.JORDAN.email}
    assert len(jordan) == 3 and len(others) == 2
    assert sorted(r["status"] for r in jordan.values()) == ["completed", "completed", "declined"]

    officer = make_staff("compliance", team="Customer Care")
    desktop.sign_in(officer)
    page = desktop.page

    # Find last month's refunds of Jordan Rivera in the audit trail.
    records(page)
    page.get_by_role("link", name="Audit trail search").click()
    expect(page.get_by_role("heading", name="Audit trail search")).to_be_visible()
    page.get_by_label("When (UTC)").select_option(label="Last month")
    page.get_by_label("Customer email or name").fill(demo.JORDAN.email)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"customer=jordan\.rivera%40example\.com"))
    rows = page.locator("#audit-rows tr")
    expect(rows.first).to_contain_text("Envelope ")
    expect(page.locator("#audit-count")).to_contain_text("events")
    about = set(page.locator("#audit-rows td:nth-child(5) a").all_inner_texts())
    assert about == {f"Envelope {p[:8]}" for p in jordan}, about
    expect(page.locator("#audit-rows")).to_contain_text("The amount is wrong.")
    # typing searched already; the button's search may still be in flight (its indicator
    # fading out is half-transparent text that axe would read as low contrast)
    expect(page.locator("#audit-indicator")).to_have_css("opacity", "0")
    shown = rows.count()
    accessible(page)
    at_both_sizes(desktop, "1-search")

    # Export the events: UTF-8 with a BOM, one row per event shown, all about Jordan's refunds.
    with page.expect_download() as download:
        page.get_by_role("button", name="Export events (CSV)").click()
    raw = download.value.path().read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(table) == shown
    assert {r["Subject type"] for r in table} == {"envelope"}
    assert {r["Subject id"] for r in table} == {str(r["id"]) for r in jordan.values()}
    assert any("The amount is wrong." in r["Data (JSON)"] for r in table)
    assert demo.AMARA.email not in raw.decode("utf-8-sig")

    # ... and their envelopes: one row per recipient, the declined one with its reason.
    with page.expect_download() as download:
        page.get_by_role("button", name="Export envelopes (CSV)").click()
    raw = download.value.path().read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    listed = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {r["Envelope"] for r in listed} == set(jordan)
    assert {r["Recipient email"] for r in listed} == {demo.JORDAN.email}
    assert {r["Ticket"] for r in listed} == {r["ticket"] for r in jordan.values()}
    assert [r["Decline reason"] for r in listed if r["Status"] == "Declined"] == [
        "The amount is wrong."
    ]

    # The sealed compliance report of last month.
    records(page)
    page.get_by_role("link", name="Compliance report (sealed PDF)").click()
    page.get_by_label("Last month").check()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the sealed report (PDF)").click()
    pdf = download.value.path().read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert check_seal(pdf).outcome == "intact"
    report = download.value.path()
    desktop.goto("/verify")
    page.get_by_label("Signed PDF (up to 30 MB)").set_input_files(str(report))
    page.get_by_role("button", name="Check the document").click()
    month = Period.of("last_month")
    expect(page.locator("main")).to_contain_text("a report sealed by this portal, unchanged since")
    expect(page.locator("main")).to_contain_text(
        f"Compliance report {month.first:%Y-%m-%d} to {month.last:%Y-%m-%d}"
    )
    kinds = [e.data["kind"] for e in audit_events(app, "records.exported")]
    assert kinds.count("audit") == 1 and kinds.count("envelopes") == 1 and len(kinds) == 3

    # Hold everything of Jordan's email.
    desktop.goto("/records/")
    page.get_by_role("link", name="Legal holds").click()
    page.get_by_role("link", name="Place a hold").first.click()
    page.get_by_label("Name").fill(HOLD)
    page.get_by_label("Case reference").fill("CV-2026-118")
    page.get_by_label("Reason", exact=True).fill("Customer disputes three refunds; keep all.")
    page.get_by_label("Customer email (scope: one customer)").fill(demo.JORDAN.email)
    page.get_by_role("button", name="Place the hold").click()
    expect(page.get_by_role("heading", name=HOLD)).to_be_visible()
    expect(page.locator("#hold-count")).to_have_text("3")
    expect(page.locator("#hold-scope")).to_contain_text(demo.JORDAN.email)
    hold_url = page.url
    accessible(page)
    at_both_sizes(desktop, "2-hold")
    assert len(audit_events(app, "hold.placed")) == 1

    # Seven years and a month later the sweep lists all five; after the review window it
    # purges the two that are not held and says why it kept the three.
    listed_at = clock.utcnow() + timedelta(days=7 * 366 + 30)
    tick(app, runner_for, listed_at)
    assert purged_ids(app, [r["id"] for r in refunds.values()]) == set()
    tick(app, runner_for, listed_at + timedelta(days=15))
    assert purged_ids(app, [r["id"] for r in refunds.values()]) == {
        r["id"] for r in others.values()
    }
    [_, finished] = audit_events(app, "retention.sweep_finished")
    assert finished.data["purged"] == 2 and finished.data["skipped_held"] == 3
    assert len(audit_events(app, "envelope.purged")) == 2

    # The sweep ran years ahead and ended the session: sign in again (the next code).
    desktop.goto("/auth/login")
    desktop.password_step(officer)
    desktop.code_step(officer.secret, offset_steps=1)
    expect(page).to_have_url(desktop.url("/console"))
    desktop.goto("/records/retention/due")
    expect(page.locator("#last-sweep")).to_contain_text("2 purged, 3 kept because a legal hold")
    for public, refund in jordan.items():
        row = page.locator(f"#due-{refund['id']}")
        expect(row).to_contain_text("Kept: on legal hold")
        expect(row).to_contain_text(HOLD)
        kept = page.locator("#last-sweep li", has_text=f"#{refund['id']}: ")
        expect(kept.get_by_role("link")).to_have_attribute("href", f"/envelopes/{public}")
    for refund in others.values():
        expect(page.locator(f"#due-{refund['id']}")).to_have_count(0)
    expect(page.locator("#last-sweep")).to_contain_text(HOLD)
    accessible(page)
    at_both_sizes(desktop, "3-due")

    # A purged refund keeps its tombstone, without the customer.
    amara = next(p for p, r in others.items() if r["email"] == demo.AMARA.email)
    desktop.goto(f"/envelopes/{amara}")
    expect(page.locator("#purged-badge")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text(demo.AMARA.name)
    expect(page.locator("main")).not_to_contain_text(demo.AMARA.email)

    page.goto(hold_url)
    expect(page.locator("#hold-count")).to_have_text("3")
    expect(page.locator("#covered-table")).to_contain_text(demo.JORDAN.name)
    at_both_sizes(desktop, "4-hold-after-sweep")

    with app.app_context():
        verified = runner_for(app).invoke(args=["portal", "verify-audit"])
    assert verified.exit_code == 0, verified.output
    assert "Audit chain intact" in verified.output
    desktop.assert_clean()


# Boxes that are meant to scroll (a wide table's box, a long JSON) may hold wider content;
# anything else wider than its own box is text that spills out of it.
OVERFLOWING_TEXT = """() => [...document.querySelectorAll('main *')]
    .filter(el => el.offsetParent !== null && el.clientWidth > 1)
    .filter(el => !el.matches('input, select, textarea'))  // a long value scrolls in its field
    .filter(el => !el.closest('.visually-hidden'))
    .filter(el => !['auto', 'scroll'].includes(getComputedStyle(el).overflowX))
    .filter(el => !el.parentElement.closest('.table-wrap, pre'))
    .filter(el => el.scrollWidth > el.clientWidth + 1)
    .map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')}#${el.id}`
               + ` ${el.scrollWidth}>${el.clientWidth}: ${el.textContent.trim().slice(0, 40)}`)"""


def fits_a_phone(tab: Tab, name: str) -> None:
    """Screenshots at 1280x800 and 390x844; on the phone the page does not scroll sideways
    (document.documentElement.scrollWidth <= innerWidth) and no text spills out of its box."""
    page: Page = tab.page
    tab.screenshot(f"records-page-{name}-desktop.png")
    page.set_viewport_size(PHONE_VIEW)
    try:
        tab.screenshot(f"records-page-{name}-phone.png")
        no_sideways_scroll(page)
        wide = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert wide <= 0, f"{name}: the page is {wide}px wider than the phone"
        spilled = page.evaluate(OVERFLOWING_TEXT)
        assert not spilled, f"{name}: text wider than its box on a phone: {spilled}"
    finally:
        page.set_viewport_size(DESKTOP_VIEW)


def one_height(page: Page, form: str) -> None:
    """A filter form's text fields, date fields and lists are all one height."""
    heights = page.evaluate(
        f"[...document.querySelectorAll('{form} .filter > :is(input, select)')]"
        ".map(el => el.getBoundingClientRect().height)"
    )
    assert len(heights) > 2 and len(set(heights)) == 1, f"{form}: not one height: {heights}"


def test_every_records_page_fits_a_phone(app, desktop: Tab, runner_for, make_staff):
    """The records centre's pages with the demo data at 1280x800 and 390x844."""
    with app.app_context():
        seeded = runner_for(app).invoke(args=["portal", "seed-demo", "--records"])
    assert seeded.exit_code == 0, seeded.output
    app.config["EXPORT_INLINE_ROWS"] = 0  # every export is a job (its page is one of these)
    officer = make_staff("compliance", team="Customer Care")
    desktop.sign_in(officer)
    page = desktop.page

    desktop.goto("/records/")
    expect(page.get_by_role("heading", name="Records and compliance")).to_be_visible()
    fits_a_phone(desktop, "landing")

    desktop.goto(f"/records/audit?period=last_month&customer={demo.JORDAN.email}")
    expect(page.locator("#audit-rows")).to_contain_text("The amount is wrong.")
    expect(page.locator("#audit-rows details.audit-json").first).to_be_visible()
    fits_a_phone(desktop, "search")
    desktop.goto("/records/audit")
    expect(page.locator("#audit-rows tr").first).to_be_visible()
    one_height(page, "#audit-filters")
    fits_a_phone(desktop, "search-all")

    page.get_by_role("button", name="Export events (CSV)").click()
    expect(page).to_have_url(re.compile(r"/records/exports/[0-9a-f]{32}$"))
    fits_a_phone(desktop, "export")
    desktop.goto("/records/exports")
    fits_a_phone(desktop, "exports")
    desktop.goto("/records/retention")
    fits_a_phone(desktop, "retention")
    desktop.goto(f"/records/holds/new?email={demo.JORDAN.email}")
    one_height(page, "#hold-search")
    fits_a_phone(desktop, "hold-new")

    desktop.goto("/records/report")
    fits_a_phone(desktop, "report")

    desktop.goto("/records/holds/new")
    page.get_by_label("Name").fill(HOLD)
    page.get_by_label("Case reference").fill("CV-2026-118")
    page.get_by_label("Reason", exact=True).fill("Customer disputes three refunds; keep all.")
    page.get_by_label("Customer email (scope: one customer)").fill(demo.JORDAN.email)
    page.get_by_role("button", name="Place the hold").click()
    expect(page.locator("#hold-count")).to_have_text("3")
    fits_a_phone(desktop, "hold")
    page.set_viewport_size(PHONE_VIEW)
    status = page.locator("#covered-table tbody tr").first.locator("td").nth(2)
    assert status.bounding_box()["x"] < PHONE_VIEW["width"], "Status is off the screen"
    page.set_viewport_size(DESKTOP_VIEW)
    desktop.goto("/records/holds")
    fits_a_phone(desktop, "holds")

    desktop.goto("/records/subject")
    page.get_by_label("Customer email").fill(demo.JORDAN.email)
    page.get_by_role("button", name="Show what is held").click()
    expect(page.locator("main")).to_contain_text(HOLD)
    fits_a_phone(desktop, "subject")

    desktop.goto(f"/records/access/{officer.id}")
    one_height(page, ".access-filters")
    fits_a_phone(desktop, "access")

    tick(app, runner_for, clock.utcnow() + timedelta(days=7 * 366 + 30))
    desktop.goto("/auth/login")
    desktop.password_step(officer)
    desktop.code_step(officer.secret, offset_steps=1)
    desktop.goto("/records/retention/due")
    expect(page.locator("#last-sweep")).to_contain_text("5 newly listed as due")
    fits_a_phone(desktop, "due")
    desktop.assert_clean()
