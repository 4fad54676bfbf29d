"""Browser tests: headless Chromium (Debian package) through Playwright, on a live server.

Phone (390x844) sign-in and enrolment, desktop admin pages driven by htmx, the CSRF header
htmx sends, sign-out, Content-Security-Policy refusals and axe-core accessibility checks.
Screenshots go to tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import re

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser import (
    describe_violations,
    no_sideways_scroll,
    serious_violations,
)

pytestmark = pytest.mark.browser

RECOVERY_CODE = re.compile(r"^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$")


def test_phone_sign_in_with_password_and_code_lands_on_console(phone, make_staff):
    staff = make_staff("agent")
    page = phone.page

    phone.goto("/")
    expect(page).to_have_url(phone.url("/auth/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    phone.screenshot("phone-login.png")
    phone.password_step(staff)

    expect(page).to_have_url(phone.url("/auth/code"))
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    expect(page.get_by_label("Code", exact=True)).to_be_focused()
    phone.screenshot("phone-code.png")
    assert staff.secret
    phone.code_step(staff.secret)

    expect(page).to_have_url(re.compile(r"/console$"))
    expect(page.get_by_role("heading", name="Console", level=1)).to_be_visible()
    expect(page.get_by_text("Signed in as Agent 1")).to_be_visible()
    no_sideways_scroll(page)
    phone.screenshot("phone-console.png")
    phone.assert_clean()


def test_phone_first_sign_in_enrols_an_authenticator_and_shows_recovery_codes(phone, make_staff):
    staff = make_staff("agent", enrolled=False)
    page = phone.page

    phone.goto("/auth/login")
    phone.password_step(staff)
    expect(page).to_have_url(phone.url("/auth/enrol"))
    expect(page.get_by_role("heading", name="Set up two-step sign-in")).to_be_visible()
    qr = page.locator(".qr svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box and box["width"] >= 150, f"the QR code is too small to scan: {box}"
    no_sideways_scroll(page)
    phone.screenshot("phone-enrol.png")

    enrol_with_key_from_page(phone)
    codes = page.locator("#recovery-codes li")
    expect(codes).to_have_count(10)
    texts = [text.strip() for text in codes.all_inner_texts()]
    assert all(RECOVERY_CODE.match(text) for text in texts), texts
    assert len(set(texts)) == 10
    clipped = codes.evaluate_all(
        "items => items.filter(li => li.scrollWidth > li.clientWidth).length"
    )
    assert clipped == 0, f"{clipped} recovery codes are wider than their column"
    no_sideways_scroll(page)
    phone.screenshot("phone-recovery-codes.png")

    page.get_by_role("link", name="I have saved them — continue").click()
    expect(page).to_have_url(phone.url("/console"))
    expect(page.get_by_role("heading", name="Console", level=1)).to_be_visible()
    phone.assert_clean()


def test_enrolment_qr_code_is_drawn_whole(phone, make_staff):
    staff = make_staff("agent", enrolled=False)
    phone.goto("/auth/login")
    phone.password_step(staff)
    expect(phone.page).to_have_url(phone.url("/auth/enrol"))
    clipped = phone.page.eval_on_selector(
        ".qr svg",
        """svg => {
            const box = svg.getBoundingClientRect();
            const style = getComputedStyle(svg);
            const px = (name) => parseFloat(style.getPropertyValue(name));
            const right = box.right - px("padding-right") - px("border-right-width");
            const bottom = box.bottom - px("padding-bottom") - px("border-bottom-width");
            const drawn = svg.querySelector("path").getBoundingClientRect();
            return {right: drawn.right - right, bottom: drawn.bottom - bottom};
        }""",
    )
    assert clipped["right"] <= 0.5 and clipped["bottom"] <= 0.5, f"QR code clipped by {clipped}"


def test_desktop_admin_searches_users_and_changes_a_role_with_htmx(desktop, make_staff):
    admin = make_staff("admin")
    make_staff("agent")
    make_staff("compliance", team="Legal")
    page = desktop.page
    desktop.sign_in(admin)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    expect(page).to_have_url(desktop.url("/admin/users"))
    rows = page.locator("#user-rows tr")
    expect(rows).to_have_count(3)
    page.evaluate("window.__sameDocument = true")

    page.get_by_label("Search by name, email or team").press_sequentially("complian", delay=30)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Compliance 3")
    expect(rows.first).to_contain_text("compliance3@example.test")
    expect(page).to_have_url(desktop.url("/admin/users?q=complian"))
    assert page.evaluate("window.__sameDocument === true"), "the search reloaded the page"
    desktop.screenshot("desktop-users.png")

    rows.first.get_by_role("link", name="Compliance 3").click()
    expect(page.get_by_role("heading", name="Compliance 3", level=1)).to_be_visible()
    panel = page.locator("#user-panel")
    expect(panel.locator(".badge-compliance")).to_have_text("Compliance")
    page.evaluate("window.__sameDocument = true")

    page.get_by_label("Role").select_option("agent")
    page.get_by_label("Team").select_option(label="Customer Care")
    with page.expect_response(re.compile(r"/admin/users/\d+/access$")) as answer:
        page.get_by_role("button", name="Save role and team").click()
    response = answer.value
    assert response.status == 200
    assert response.request.headers.get("hx-request") == "true"
    assert response.request.headers.get("x-csrftoken"), "htmx sent no CSRF header"

    expect(panel.get_by_role("status")).to_contain_text("Saved Compliance 3's role and team.")
    expect(panel.locator(".badge-agent")).to_have_text("Agent")
    expect(page.get_by_label("Role")).to_have_value("agent")
    expect(page.locator("#request-error")).to_be_hidden()
    assert page.evaluate("window.__sameDocument === true"), "saving reloaded the page"
    expect(page).to_have_url(re.compile(r"/admin/users/\d+$"))
    desktop.screenshot("desktop-user.png")

    # The change is stored: a fresh load shows it.
    page.reload()
    expect(panel.locator(".badge-agent")).to_have_text("Agent")
    expect(page.get_by_label("Team").locator("option:checked")).to_have_text("Customer Care")
    desktop.assert_clean()


def test_sign_out_ends_the_session(desktop, make_staff):
    staff = make_staff("agent")
    page = desktop.page
    desktop.sign_in(staff)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(desktop.url("/auth/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("You have signed out.")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)

    desktop.goto("/console")
    expect(page).to_have_url(re.compile(r"/auth/login(\?.*)?$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    desktop.assert_clean()


def test_sign_in_pages_have_no_serious_accessibility_violations(phone, make_staff):
    staff = make_staff("agent")
    page = phone.page
    axe = Axe()

    phone.goto("/auth/login")
    login = serious_violations(axe.run(page).response)
    phone.password_step(staff)
    expect(page).to_have_url(phone.url("/auth/code"))
    code = serious_violations(axe.run(page).response)

    if login or code:
        print("login page:\n" + describe_violations(login))
        print("code page:\n" + describe_violations(code))
    assert not login, "login page:\n" + describe_violations(login)
    assert not code, "code page:\n" + describe_violations(code)
    phone.assert_clean()


def test_sign_out_works_from_the_recovery_codes_page(phone, make_staff):
    staff = make_staff("agent", enrolled=False)
    phone.goto("/auth/login")
    phone.password_step(staff)
    enrol_with_key_from_page(phone)
    phone.open_menu()
    with phone.page.expect_navigation():
        phone.page.get_by_role("button", name="Sign out").click()
    assert phone.page.url == phone.url("/auth/login"), phone.page.locator("main").inner_text()
    expect(phone.page.get_by_text("You have signed out.")).to_be_visible()


def test_sign_in_page_with_a_flash_message_has_no_serious_accessibility_violations(
    phone, make_staff
):
    staff = make_staff("agent")
    phone.sign_in(staff)
    phone.open_menu()
    phone.page.get_by_role("button", name="Sign out").click()
    expect(phone.page.get_by_text("You have signed out.")).to_be_visible()
    violations = serious_violations(Axe().run(phone.page).response)
    assert not violations, describe_violations(violations)


def enrol_with_key_from_page(tab) -> None:
    """On the enrolment page: read the key as a person would type it, confirm a code from it."""
    page = tab.page
    key = page.locator("#totp-key").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", key), key
    page.get_by_label("Code", exact=True).fill(pyotp.TOTP(key).now())
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
