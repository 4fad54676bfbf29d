"""API keys and the API reference in Chromium: a phone and a desktop, under the CSP."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.api_helpers import make_key
from tests.browser import Tab, no_sideways_scroll

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_admin_creates_copies_and_revokes_a_key(app, make_staff, request, device):
    tab: Tab = request.getfixturevalue(device)
    tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab.sign_in(make_staff("admin", team="Customer Care"))
    page = tab.page
    tab.open_menu()
    page.get_by_role("link", name="Integrations").first.click()
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_text("No API keys yet.")).to_be_visible()
    tab.screenshot(f"api-keys-empty-{device}.png")
    page.get_by_role("link", name="Create a key").click()
    page.get_by_label("Name").fill("CRM sync")
    page.get_by_label("Send, void, resend and remind envelopes").check()
    page.get_by_label("Read approved templates").check()
    page.get_by_label("Expires").select_option("30")
    no_sideways_scroll(page)
    tab.screenshot(f"api-keys-new-{device}.png")
    page.get_by_role("button", name="Create the key").click()
    secret = page.locator("#api-key-secret").inner_text().strip()
    assert secret.startswith("psk_")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    no_sideways_scroll(page)
    tab.screenshot(f"api-keys-created-{device}.png")
    page.get_by_role("link", name="Done").click()
    row = page.locator("#keys-table tbody tr").first
    expect(row).to_contain_text(secret[:12])
    expect(row).not_to_contain_text(secret)
    expect(row).to_contain_text("envelopes:write, templates:read")
    no_sideways_scroll(page)
    tab.screenshot(f"api-keys-list-{device}.png")
    row.get_by_role("link", name="Revoke…").click()
    tab.screenshot(f"api-keys-revoke-{device}.png")
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.get_by_text("is revoked")).to_be_visible()
    expect(page.locator("#keys-table tbody tr").first).to_contain_text("Revoked")
    tab.assert_clean()


def test_api_reference_renders_under_the_csp(app, desktop: Tab):
    make_key(app)
    desktop.goto("/api/v1/docs")
    page = desktop.page
    expect(page.get_by_text("/api/v1/envelopes").first).to_be_visible()
    expect(page.get_by_role("heading", name="Problems")).to_be_visible()
    desktop.screenshot("api-reference-desktop.png")
    desktop.assert_clean()
