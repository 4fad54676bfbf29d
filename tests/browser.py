"""Helpers for the browser tests: a live server, headless Chromium and a watched tab.

Chromium is the Debian package (``/usr/bin/chromium``); Playwright never downloads a browser.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    expect,
    sync_playwright,
)
from werkzeug.serving import make_server

from tests.conftest import ARTIFACTS, Staff, totp_code

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
TIMEOUT_MS = 10_000  # generous: the suite may share the machine with other work

# What Chromium logs when the Content-Security-Policy blocks something.
CSP_MARKERS = ("Content Security Policy", "Refused to")


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a background thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Tab:
    """One browser page on the live server that records console output and page errors."""

    page: Page
    base_url: str
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("response", self._on_response)

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def _on_response(self, response: Response) -> None:
        # Chromium asks for /favicon.ico on its own; the portal has none (yet).
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.failed.append(f"{response.status} {response.request.method} {response.url}")

    def url(self, path: str) -> str:
        return self.base_url + path

    def goto(self, path: str) -> None:
        self.page.goto(self.url(path))

    def screenshot(self, name: str) -> Path:
        """A full-page PNG in tests/artifacts/ (gitignored)."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.evaluate("document.fonts.ready.then(() => true)")
        self.page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    def csp_reports(self) -> list[str]:
        """Console messages in which Chromium reports a Content-Security-Policy refusal."""
        return [line for line in self.console if any(m in line for m in CSP_MARKERS)]

    def assert_clean(self) -> None:
        """No CSP refusals, script errors or failed requests on any page this tab visited."""
        assert not self.csp_reports(), "CSP violations:\n" + "\n".join(self.csp_reports())
        assert not self.errors, "script errors:\n" + "\n".join(self.errors)
        assert not self.failed, "failed requests:\n" + "\n".join(self.failed)

    def open_menu(self) -> None:
        """On a phone the staff links are folded into "Menu": open it (no-op on a desktop)."""
        summary = self.page.locator(".site-menu > summary")
        if summary.is_visible() and not self.page.locator(".site-menu[open]").count():
            summary.click()

    # ------------------------------------------------------------ sign-in steps

    def password_step(self, staff: Staff) -> None:
        page = self.page
        page.get_by_label("Email").fill(staff.email)
        page.get_by_label("Password").fill(staff.password)
        page.get_by_role("button", name="Continue").click()

    def code_step(self, secret: str, offset_steps: int = 0) -> None:
        page = self.page
        page.get_by_label("Code", exact=True).fill(totp_code(secret, offset_steps))
        page.get_by_role("button", name="Sign in").click()

    def sign_in(self, staff: Staff) -> None:
        """Email and password, then the authenticator code; ends on the console."""
        assert staff.secret, "sign_in needs an enrolled user"
        self.goto("/auth/login")
        self.password_step(staff)
        expect(self.page).to_have_url(self.url("/auth/code"))
        self.code_step(staff.secret)
        expect(self.page).to_have_url(self.url("/console"))


@contextmanager
def open_tab(browser: Browser, base_url: str, **context_options: Any) -> Iterator[Tab]:
    """A fresh browser context (own cookies) with one watched page."""
    context: BrowserContext = browser.new_context(**context_options)
    try:
        yield Tab(context.new_page(), base_url)
    finally:
        context.close()


def serious_violations(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The axe-core violations with impact "serious" or "critical"."""
    return [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]


def describe_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} — {v['helpUrl']}")
        for node in v["nodes"]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:200]}")
            summary = node.get("failureSummary")
            if summary:
                lines.append("      " + summary.replace("\n", "\n      "))
    return "\n".join(lines)


# ---------------------------------------------------------------- page checks shared by tests


def no_sideways_scroll(page: Page) -> None:
    """Nothing is wider than the screen (no horizontal scrolling); names what sticks out."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    if overflow > 0:
        culprits = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(el => el.getBoundingClientRect().right > innerWidth + 0.5)
                .slice(0, 10)
                .map(el => `${el.tagName.toLowerCase()}.${[...el.classList].join('.')}#${el.id}`
                           + ` right=${el.getBoundingClientRect().right}`)"""
        )
        raise AssertionError(f"the page scrolls sideways by {overflow}px: {culprits}")


def overlays_line_up(page: Page, selector: str, name_attribute: str) -> None:
    """Every overlay (field box or marker) lies on its page image where its data-x/y/w/h say
    (within a pixel), whatever the screen size."""
    misplaced = page.evaluate(
        """([selector, nameAttribute]) => [...document.querySelectorAll(selector)].map(box => {
            const figure = box.closest('figure.page');
            const img = figure.querySelector('img').getBoundingClientRect();
            const r = box.getBoundingClientRect();
            const k = img.width / parseFloat(figure.dataset.width);
            const want = {x: img.left + box.dataset.x * k, y: img.top + box.dataset.y * k,
                          w: box.dataset.w * k, h: box.dataset.h * k};
            const off = Math.max(Math.abs(r.left - want.x), Math.abs(r.top - want.y),
                                 Math.abs(r.width - want.w), Math.abs(r.height - want.h));
            return off > 1 ? `${box.getAttribute(nameAttribute)}: off by ${off}px` : null;
        }).filter(Boolean)""",
        [selector, name_attribute],
    )
    assert not misplaced, misplaced


# ---------------------------------------------------------------- fixtures (a pytest plugin)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module (Debian's, never a downloaded one). Not one per
    run: Playwright's sync API keeps an asyncio loop running while it is open, and the
    modules after the browser tests (pyHanko validation) run loops of their own."""
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def base_url(app: Flask) -> Iterator[str]:
    """The test's app served over real HTTP on a free loopback port."""
    with live_server(app) as url:
        yield url


@pytest.fixture
def phone(browser: Browser, base_url: str) -> Iterator[Tab]:
    """A 390x844 touch phone."""
    with open_tab(browser, base_url, **PHONE) as tab:
        yield tab


@pytest.fixture
def desktop(browser: Browser, base_url: str) -> Iterator[Tab]:
    """A 1280x800 desktop browser."""
    with open_tab(browser, base_url, **DESKTOP) as tab:
        yield tab
