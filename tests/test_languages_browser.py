"""Browser checks of the language pages: the version page's Languages section (authored text
and an uploaded PDF's field places) and the send form's Document language, at 390x844 and
1280x800: no sideways scroll, no serious axe violations, no CSP refusals; screenshots in
tests/artifacts/."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import expect

from portal.extensions import db
from portal.library import operations as ops
from portal.library import variants
from portal.library.models import TemplateVersion
from tests.browser import Tab, describe_violations, no_sideways_scroll, serious_violations
from tests.conftest import demo_template
from tests.test_languages_library import _pdf, _pdf_template, _user

pytestmark = pytest.mark.browser


def _checked(tab: Tab, name: str) -> None:
    no_sideways_scroll(tab.page)
    violations = serious_violations(Axe().run(tab.page).response)
    assert not violations, describe_violations(violations)
    tab.screenshot(name)
    tab.assert_clean()


@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_languages_section_and_document_language_choice(
    request, device: str, app: Flask, make_staff, runner_for
):
    tab: Tab = request.getfixturevalue(device)
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        refund = ops.approved_version(demo_template())
        refund_id = refund.id
        addendum = demo_template("Service-change addendum")
        author = ops.approved_version(addendum).created_by
        draft = ops.new_draft(addendum, by=author)
        variants.save_text(
            draft, "es", "# Anexo\n\n" + draft.authored_body.split("\n", 1)[1], author
        )
        ops.set_roles(
            draft,
            [
                {"key": "customer", "name": "Customer", "kind": "signer", "order": 1},
                {"key": "partner", "name": "Partner", "kind": "signer", "order": 2},
            ],
            by=author,
        )
        ops.set_settings(draft, {**draft.settings, "routing": "parallel"}, by=author)
        ops.add_field(draft, "signature", draft.page_count, None, "partner", by=author)
        ops.submit(draft, by=author)
        reviewer = make_staff("compliance")
        ops.approve(draft, by=_user(reviewer))
        addendum_id = draft.id
    admin = make_staff("admin", team="Customer Care")
    pdf_id = _pdf_template(app, admin)
    with app.app_context():
        version = db.session.get(TemplateVersion, pdf_id)
        variants.save_pdf(version, "es", _pdf("Formulario"), "es.pdf", by=_user(admin))

    tab.sign_in(admin)
    tab.goto(f"/library/versions/{refund_id}#languages")
    expect(tab.page.locator("#language-states")).to_contain_text("Ready")
    expect(tab.page.get_by_role("link", name="Open the Spanish PDF")).to_be_visible()
    _checked(tab, f"{device}-languages-authored.png")

    tab.goto(f"/library/versions/{pdf_id}#languages")
    expect(tab.page.get_by_label("Page of Signature")).to_be_visible()
    _checked(tab, f"{device}-languages-uploaded.png")

    tab.goto(f"/envelopes/new/{addendum_id}")
    choice = tab.page.locator("#document-language")
    expect(choice).to_be_hidden()  # both signers read English
    tab.page.locator("#r-customer-locale").select_option("es")
    expect(choice).to_be_visible()
    expect(tab.page.get_by_label("Document language")).to_have_value("")
    _checked(tab, f"{device}-send-document-language.png")
