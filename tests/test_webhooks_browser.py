"""The admin's webhook pages in a browser, on a phone (390x844) and a desktop (1280x800): add an
endpoint, show its secret (htmx), send a test event to a real receiver, open its attempts
(htmx). Screenshots go to tests/artifacts/webhooks-*.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests import test_webhooks as base
from tests.browser import Tab, no_sideways_scroll
from tests.test_signing_browser import accessible

pytestmark = pytest.mark.browser

receiver = base.receiver  # (fixture)


def _walk(tab: Tab, staff, receiver, name: str) -> None:
    page = tab.page
    tab.sign_in(staff)
    tab.goto("/admin/integrations/")
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
    page.get_by_role("link", name="Add an endpoint").click()
    page.get_by_label("URL").fill("http://10.1.2.3/hooks")
    page.get_by_role("button", name="Add the endpoint").click()
    expect(page.locator("#webhook-error")).to_contain_text("private, loopback or link-local")
    assert tab.failed[-1].startswith("422 POST")  # the refusal, as expected
    tab.failed.clear()
    tab.console.clear()
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("Description").fill("Help desk")
    page.get_by_role("button", name="Add the endpoint").click()
    expect(page.get_by_text("Endpoint added.")).to_be_visible()
    page.get_by_role("button", name="Show secret").click()
    secret = page.locator("#webhook-secret-value")
    expect(secret).to_contain_text("whsec_")
    receiver.secrets.append(secret.inner_text().strip())
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_text("Test event sent")).to_be_visible()
    page.get_by_role("link", name="webhook.test").click()
    expect(page.locator(".webhook-attempts")).to_contain_text("delivered (204)")
    no_sideways_scroll(page)
    accessible(page)
    tab.screenshot(f"webhooks-{name}.png")
    tab.goto("/admin/integrations/webhooks")
    expect(page.locator("#webhooks-table")).to_contain_text("Help desk")
    no_sideways_scroll(page)
    tab.screenshot(f"webhooks-list-{name}.png")
    tab.assert_clean()
    assert receiver.types() == ["webhook.test"] and receiver.all_verified()
    assert re.match(r"msg_[0-9a-f]{32}$", receiver.deliveries[0]["headers"]["webhook-id"])


def test_admin_sets_up_a_webhook_on_a_phone(app, phone, make_staff, receiver):
    app.config["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    _walk(phone, make_staff("admin"), receiver, "phone")


def test_admin_sets_up_a_webhook_on_a_desktop(app, desktop, make_staff, receiver):
    app.config["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    _walk(desktop, make_staff("admin"), receiver, "desktop")
