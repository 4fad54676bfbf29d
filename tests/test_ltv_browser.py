"""The long-term seal blocks in a browser: the envelope page (level, next renewal, Renew now)
and the admin sealing page, at 1280x800 and 390x844: screenshots, no sideways scrolling, no
serious axe violations; Renew now adds a fresh archive timestamp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.browser import (
    DESKTOP,
    PHONE,
    Tab,
    describe_violations,
    no_sideways_scroll,
    serious_violations,
)
from tests.conftest import audit_events
from tests.ltv_services import LocalPKI, local_pki
from tests.test_sealing import _sign
from tests.test_signing import sent  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture
def pki() -> Iterator[LocalPKI]:
    with local_pki(tsa_days=120) as running:
        yield running


@pytest.fixture
def app(make_app, pki, tmp_path):
    return make_app(
        SEAL_PKCS12_PATH=str(pki.seal_p12(tmp_path / "seal.p12")),
        SEAL_PKCS12_PASSWORD="seal-pass",
        SEAL_TSA_URL=pki.tsa_url,
    )


def _checked_at_both_sizes(tab: Tab, name: str) -> None:
    page = tab.page
    for size, view in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(view["viewport"])
        tab.screenshot(f"ltv-{name}-{size}.png")
        no_sideways_scroll(page)
        violations = serious_violations(Axe().run(page).response)
        assert not violations, describe_violations(violations)
    page.set_viewport_size(DESKTOP["viewport"])


def test_an_admin_sees_the_level_and_renews_the_seal_now(
    app,
    desktop: Tab,
    sent,  # noqa: F811
    make_staff,
):
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    admin = make_staff("admin")
    desktop.sign_in(admin)
    desktop.goto(f"/envelopes/{public_id}")
    page = desktop.page
    expect(page.locator("#seal-level")).to_contain_text("B-LTA")
    expect(page.locator("#seal-next-renewal")).to_contain_text("latest timestamp valid until")
    _checked_at_both_sizes(desktop, "envelope")

    page.get_by_role("button", name="Renew now").click()
    expect(page.locator(".flash-success")).to_contain_text("Seal renewal asked for")
    expect(page.get_by_text("1 earlier file kept, still verifiable")).to_be_visible()
    assert len(audit_events(app, "envelope.seal_renewed")) == 1
    with app.app_context():
        assert db.session.get(Envelope, envelope_id).seal_renewed_at is not None
    _checked_at_both_sizes(desktop, "envelope-renewed")

    desktop.goto("/admin/sealing")
    expect(page.get_by_role("heading", name="Long-term validation")).to_be_visible()
    expect(page.get_by_text("B-LTA: 1")).to_be_visible()
    _checked_at_both_sizes(desktop, "admin-sealing")
    desktop.assert_clean()
