"""Every page fits its screen: at 390x844 (a phone) and 1280x800 (a desktop), no page scrolls
sideways, no text sticks out of its box (unless the box is a scrolling one, ``overflow-x:
auto``), and axe finds no violations. Staff pages are visited signed in as an admin (who sees
them all), public pages as an anonymous visitor or as a signer who opened their link.

The pages are a list (``PAGES``): to cover a new page, add a line. ``{name}`` in a path is
filled from the demo data made below (``Site``); integrations pages without parameters are
found and added on their own. Screenshots: tests/artifacts/layout-<page>-<phone|desktop>.png.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from portal.accounts.models import User
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import lifecycle
from portal.mail import Message
from tests.browser import DESKTOP, PHONE, Tab, describe_violations, open_tab
from tests.conftest import demo_template
from tests.test_sealing import _sign
from tests.test_signing import _csrf, _path, sent  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

# Who looks at a page: "admin" (signed in), "public" (nobody signed in), "signer:<link>" (a
# signer who opened <link> of ``Site.links``), "code" / "enrol" (half-way through signing in).
STAFF, PUBLIC = "admin", "public"


@dataclass(frozen=True)
class Seen:
    """One page to check: its name (for messages and screenshots), its path, who looks at
    it, and what to do there first (e.g. submit a form whose answer is the page)."""

    name: str
    path: str
    who: str = STAFF
    then: Callable[[Page], None] | None = None


def _new_recovery_codes(page: Page) -> None:
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Make new recovery codes").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()


PAGES: list[Seen] = [
    # staff: envelopes
    Seen("console", "/console"),
    Seen("envelope-waiting", "/envelopes/{waiting}"),
    Seen("envelope-completed", "/envelopes/{completed}"),
    Seen("envelope-new", "/envelopes/new/{refund_version}"),
    Seen("envelope-new-two-roles", "/envelopes/new/{addendum_version}"),
    # staff: templates
    Seen("templates", "/library/"),
    Seen("template-new", "/library/new"),
    Seen("template-version", "/library/versions/{refund_version}"),
    Seen("template-draft", "/library/versions/{draft}"),
    Seen("template-review", "/library/versions/{in_review}"),
    # staff: bulk send
    Seen("bulk", "/bulk/"),
    Seen("bulk-batch", "/bulk/{batch}"),
    Seen("bulk-rows", "/bulk/{batch}/rows"),
    # staff: records
    Seen("records", "/records/"),
    Seen("records-audit", "/records/audit?customer=jordan.rivera%40example.com"),
    Seen("records-exports", "/records/exports"),
    Seen("records-report", "/records/report"),
    Seen("records-holds", "/records/holds"),
    Seen("records-hold-new", "/records/holds/new"),
    Seen("records-retention", "/records/retention"),
    Seen("records-retention-due", "/records/retention/due"),
    Seen("records-subject", "/records/subject?email=jordan.rivera%40example.com"),
    Seen("records-access", "/records/access"),
    Seen("records-access-staff", "/records/access/{agent_id}"),
    Seen("records-access-envelope", "/records/access/envelope/{completed}"),
    # staff: admin
    Seen("admin-users", "/admin/users"),
    Seen("admin-user", "/admin/users/{agent_id}"),
    Seen("admin-user-new", "/admin/users/new"),
    Seen("admin-sealing", "/admin/sealing"),
    # staff: own account, mailbox, an error
    Seen("account", "/account/"),
    Seen("account-password", "/account/password"),
    Seen("recovery-codes", "/account/", then=_new_recovery_codes),
    Seen("mailbox", "/dev/mailbox"),
    Seen("mailbox-message", "/dev/mailbox/{message}"),
    Seen("staff-not-found", "/no-such-page"),
    # public: sign-in
    Seen("sign-in", "/auth/login", PUBLIC),
    Seen("sign-in-code", "/auth/code", "code"),
    Seen("sign-in-enrol", "/auth/enrol", "enrol"),
    # public: signers
    Seen("signer-consent", "/sign/{fresh_public}", "signer:fresh"),
    Seen("signer-document", "/sign/{consented_public}", "signer:consented"),
    Seen("signer-done", "/sign/{signed_public}", "signer:signed"),
    Seen("signer-link-unknown", "/s/not-a-real-link", PUBLIC),
    # public: verify and errors
    Seen("verify", "/verify", PUBLIC),
    Seen("public-not-found", "/no-such-page", PUBLIC),
]


@dataclass
class Site:
    """The demo data the pages are about: ids for the paths, signer links, staff sign-ins."""

    values: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    admin: Any = None
    enrolled: Any = None
    unenrolled: Any = None


def _consent(app, link: str, public_id: str) -> None:
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})


def _integrations_pages(app) -> list[Seen]:
    """The integrations area's pages as they exist now (GET, no parameters)."""
    rules = [
        r.rule
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/admin/integrations") and "GET" in r.methods and not r.arguments
    ]
    return [Seen("integrations" + re.sub(r"\W+", "-", r[19:]).rstrip("-"), r) for r in rules]


@pytest.fixture
def site(app, sent, runner_for, make_staff) -> Site:  # noqa: F811
    """Demo data: templates, ended refunds for records, envelopes waiting / consented /
    signed, a draft and a version in review, a bulk batch, an admin, mail."""
    with app.app_context():
        seeded = runner_for(app).invoke(args=["portal", "seed-demo", "--records"])
    assert seeded.exit_code == 0, seeded.output
    site = Site()
    _, site.values["fresh_public"], site.links["fresh"] = sent()
    _, site.values["consented_public"], site.links["consented"] = sent()
    _consent(app, site.links["consented"], site.values["consented_public"])
    _, site.values["signed_public"], site.links["signed"] = sent()
    _sign(app, site.links["signed"], site.values["signed_public"])
    site.admin = make_staff("admin", team="Customer Care")
    site.enrolled = make_staff("agent", team="Customer Care")
    site.unenrolled = make_staff("agent", team="Customer Care", enrolled=False)
    with app.app_context():
        admin = db.session.get(User, site.admin.id)
        reviewer = db.session.execute(
            select(User).where(User.email == "compliance@demo.example")
        ).scalar_one()
        refund, addendum = demo_template(), demo_template("Service-change addendum")
        site.values["refund_version"] = refund.versions[-1].id
        site.values["addendum_version"] = addendum.versions[-1].id
        site.values["draft"] = lifecycle.new_draft(refund, by=admin).id
        review = lifecycle.new_draft(addendum, by=reviewer)
        lifecycle.submit(review, by=reviewer)
        site.values["in_review"] = review.id
        db.session.commit()
        site.values["waiting"] = site.values["fresh_public"]
        completed = db.session.execute(
            select(Envelope).where(Envelope.status == "completed").order_by(Envelope.id)
        ).scalars()
        site.values["completed"] = next(iter(completed)).public_id
        site.values["agent_id"] = site.enrolled.id
        site.values["message"] = (
            db.session.execute(select(Message.id).order_by(Message.id.desc())).scalars().first()
        )
    return site


def _bulk_batch(tab: Tab, tmp_path) -> str:
    """Upload a two-row refund file on the bulk page (not sent); the batch's public id."""
    from tests.bulk_helpers import refund_row, to_csv

    page = tab.page
    tab.goto("/bulk/")
    row = page.get_by_role("row").filter(has_text="Refund authorization")
    headings = [
        "customer.name", "customer.email", "order.number", "order.date", "refund.amount",
        "refund.method", "refund.reason",
    ]  # fmt: skip
    upload = tmp_path / "refunds.csv"
    upload.write_text(to_csv(headings, [refund_row(1), refund_row(2)]), encoding="utf-8")
    row.locator("input[type=file]").set_input_files(str(upload))
    row.get_by_role("button", name="Upload and check").click()
    expect(page).to_have_url(re.compile(r"/bulk/[^/]+$"))
    return page.url.rsplit("/", 1)[1]


# ---------------------------------------------------------------- the checks

# Elements whose text overflows their box, but for a reason: form controls scroll their own
# text, visually hidden text is 1px wide on purpose, an ellipsis is a chosen cut.
_OVERFLOWING_TEXT = """() => {
  const own = el => [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const skip = 'input, textarea, select, option, svg, svg *, script, style, noscript, template';
  const scrolls = s => ['auto', 'scroll'].includes(s.overflowX);
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.matches(skip) || !own(el) || !el.checkVisibility({visibilityProperty: true})) continue;
    const s = getComputedStyle(el);
    if (s.display === 'inline' || s.display === 'contents' || s.visibility === 'hidden') continue;
    if (scrolls(s) || s.textOverflow === 'ellipsis') continue;
    if (el.clientWidth <= 1 || s.clipPath !== 'none' || s.clip !== 'auto') continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      const name = el.tagName.toLowerCase() + [...el.classList].map(c => '.' + c).join('')
        + (el.id ? '#' + el.id : '');
      out.push(`${name} "${el.textContent.trim().slice(0, 40)}": `
               + `scrollWidth ${el.scrollWidth} > clientWidth ${el.clientWidth}`);
    }
  }
  return out.slice(0, 15);
}"""

_SIDEWAYS = """() => {
  const wide = document.documentElement.scrollWidth;
  if (wide <= innerWidth) return [];
  const out = [...document.body.querySelectorAll('*')]
    .filter(el => el.getBoundingClientRect().right > innerWidth + 0.5)
    .slice(0, 8)
    .map(el => el.tagName.toLowerCase() + [...el.classList].map(c => '.' + c).join('')
               + ` right=${Math.round(el.getBoundingClientRect().right)}`);
  return [`the page is ${wide}px wide on a ${innerWidth}px screen: ${out.join(', ')}`];
}"""


# The page header's controls (navigation, Menu, Sign out) are all on the screen: a header that
# scrolls on its own would pass the checks above with "Sign out" out of sight.
_HEADER_OFF_SCREEN = """() => [...document.querySelectorAll(
    'header :is(a, button, summary)')]
  .filter(el => el.checkVisibility({visibilityProperty: true}))
  .filter(el => { const r = el.getBoundingClientRect();
                  return r.left < -0.5 || r.right > innerWidth + 0.5; })
  .map(el => `"${el.textContent.trim()}" is off screen in the header`)"""


def layout_problems(page: Page) -> list[str]:
    """Sideways scrolling, text sticking out of its box, header controls off screen, axe
    violations: each as a line."""
    page.evaluate("document.fonts.ready.then(() => true)")
    problems = list(page.evaluate(_SIDEWAYS)) + list(page.evaluate(_HEADER_OFF_SCREEN))
    problems += [f"text overflows: {line}" for line in page.evaluate(_OVERFLOWING_TEXT)]
    violations = Axe().run(page).response["violations"]
    if violations:
        problems.append("axe: " + describe_violations(violations))
    return problems


# ---------------------------------------------------------------- visiting


@dataclass
class Visitors:
    """The browser tabs that look at the pages, at one screen size."""

    browser: Browser
    base_url: str
    size: dict[str, Any]
    site: Site
    staff: Tab | None = None

    @contextmanager
    def tab(self, who: str) -> Iterator[Tab]:
        """A tab for ``who``: the signed-in admin's (kept), or a fresh one."""
        if who == STAFF:
            assert self.staff is not None
            yield self.staff
            return
        with open_tab(self.browser, self.base_url, **self.size) as tab:
            if who == "code":
                tab.goto("/auth/login")
                tab.password_step(self.site.enrolled)
            elif who == "enrol":
                tab.goto("/auth/login")
                tab.password_step(self.site.unenrolled)
            elif who.startswith("signer:"):
                tab.goto(_path(self.site.links[who.split(":", 1)[1]]))
            yield tab


def _visit(visitors: Visitors, seen: Seen, label: str) -> list[str]:
    with visitors.tab(seen.who) as tab:
        path = seen.path.format(**visitors.site.values)
        tab.goto(path)
        if seen.then is not None:
            seen.then(tab.page)
        shown = tab.page.url.removeprefix(tab.base_url)
        problems = layout_problems(tab.page)
        tab.screenshot(f"layout-{seen.name}-{label}.png")
    if seen.then is None and shown.split("?")[0] != path.split("?")[0]:
        problems.insert(0, f"asked for {path}, shown {shown}")
    return [f"{seen.name} ({path}) at {label}: {p}" for p in problems]


@pytest.mark.parametrize("label", ["phone", "desktop"])
def test_every_page_fits_the_screen_with_no_text_overflowing_and_no_axe_violation(
    app, site, browser, base_url, label, tmp_path
):
    size = PHONE if label == "phone" else DESKTOP
    visitors = Visitors(browser, base_url, size, site)
    pages = PAGES + _integrations_pages(app)
    with open_tab(browser, base_url, **size) as staff:
        staff.sign_in(site.admin)
        site.values["batch"] = _bulk_batch(staff, tmp_path)
        visitors.staff = staff
        problems = [line for seen in pages for line in _visit(visitors, seen, label)]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_the_phone_menu_opens_without_script_marks_the_page_and_reaches_sign_out(
    site, browser, base_url
):
    with open_tab(browser, base_url, java_script_enabled=False, **PHONE) as tab:
        tab.goto("/auth/login")
        tab.password_step(site.admin)
        tab.code_step(site.admin.secret)
        tab.goto("/records/")
        page = tab.page
        menu = page.locator(".site-menu > summary")
        expect(menu).to_be_visible()
        expect(page.locator(".site-nav-bar")).to_be_hidden()
        sign_out = page.get_by_role("button", name="Sign out")
        expect(sign_out).to_be_hidden()

        page.keyboard.press("Tab")  # the skip link
        page.keyboard.press("Tab")  # the organisation's name
        page.keyboard.press("Tab")  # Menu
        assert page.evaluate("document.activeElement.matches('.site-menu > summary')")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid", "the focused Menu button shows no focus ring"
        page.keyboard.press("Enter")
        nav = page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Records")).to_have_attribute("aria-current", "page")
        expect(sign_out).to_be_visible()
        box = sign_out.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert not page.evaluate(_SIDEWAYS)
        tab.screenshot("layout-menu-open-phone.png")
        with page.expect_navigation():
            sign_out.click()
        expect(page.get_by_text("You have signed out.")).to_be_visible()


@pytest.mark.parametrize("width", [1000, 1280])
def test_the_desktop_bar_shows_every_link_and_sign_out_without_a_menu(site, desktop, width):
    desktop.sign_in(site.admin)
    page = desktop.page
    page.set_viewport_size({"width": width, "height": 800})
    expect(page.locator(".site-menu")).to_be_hidden()
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Console", "Templates", "Records", "Users", "Sealing", "Integrations"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="Console")).to_have_attribute("aria-current", "page")
    expect(nav.get_by_role("button", name="Sign out")).to_be_in_viewport(ratio=1)
    assert not page.evaluate(_HEADER_OFF_SCREEN) and not page.evaluate(_SIDEWAYS)


def test_below_the_bar_width_the_menu_is_shown_instead(site, desktop):
    desktop.sign_in(site.admin)
    page = desktop.page
    page.set_viewport_size({"width": 999, "height": 800})
    expect(page.locator(".site-nav-bar")).to_be_hidden()
    expect(page.locator(".site-menu > summary")).to_be_visible()
    assert not page.evaluate(_HEADER_OFF_SCREEN) and not page.evaluate(_SIDEWAYS)
