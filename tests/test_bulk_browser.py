"""Bulk send in a desktop browser (1280x800): from the console, download the CSV template,
upload a file whose columns are named otherwise, match a column by hand, leave out the rows
with problems, send, watch the progress bar until it stops, download the report.

Screenshots go to tests/artifacts/bulk-*.png.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from flask import Flask
from playwright.sync_api import expect

from tests.browser import Tab
from tests.bulk_helpers import bulk_threads_end, counts, refund_row, to_csv  # noqa: F401
from tests.test_signing_browser import accessible

pytestmark = pytest.mark.browser

ROWS = 30


@pytest.fixture
def app(make_app) -> Flask:
    """Twenty signing emails a ten-second window: the progress bar has time to be watched."""
    return make_app(BULK_MAIL_PER_MINUTE=120)


def test_upload_fix_a_mapping_watch_progress_and_download_the_report(
    app, desktop: Tab, runner_for, make_staff, tmp_path
):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    desktop.sign_in(make_staff("agent", team="Customer Care"))
    page = desktop.page
    page.get_by_role("link", name="Bulk send to many customers").click()
    expect(page.get_by_role("heading", name="Bulk send")).to_be_visible()

    row = page.get_by_role("row").filter(has_text="Refund authorization")
    with page.expect_download() as download:
        row.get_by_role("link", name="Download CSV template").click()
    template = download.value.path().read_bytes().decode("utf-8-sig")
    headings = list(csv.reader(io.StringIO(template)))[1]
    assert "Customer: email" in headings and "refund.amount" in headings

    # The agent's spreadsheet calls the amount "Amount (EUR)"; two rows have problems.
    rows = [refund_row(n) for n in range(1, ROWS + 1)]
    rows[4]["customer.email"] = "not an email"
    rows[9]["refund.method"] = ""
    rows = [
        {("Amount (EUR)" if k == "refund.amount" else k): v for k, v in r.items()} for r in rows
    ]
    named = ["Amount (EUR)" if h == "refund.amount" else h for h in headings]
    upload = tmp_path / "refunds.csv"
    upload.write_text(to_csv(named, rows), encoding="utf-8")
    row.locator("input[type=file]").set_input_files(str(upload))
    row.get_by_role("button", name="Upload and check").click()

    expect(page.locator("#missing-columns")).to_contain_text("Missing columns: refund.amount")
    expect(page.locator("#unused-columns")).to_contain_text("Amount (EUR)")
    desktop.screenshot("bulk-1-mapping.png")
    page.get_by_label("refund.amount").select_option(label="Amount (EUR)")
    page.get_by_role("button", name="Use these columns and check again").click()

    expect(page.locator("#rows-ready")).to_have_text(str(ROWS - 2))
    expect(page.locator("#rows-problems")).to_have_text("2")
    problems = page.locator("#problems")
    expect(problems).to_contain_text("Customer: email")
    expect(problems.get_by_role("row").nth(1)).to_contain_text("6")
    expect(problems).to_contain_text("Fill in Refund method")
    expect(page.locator("#preview")).to_contain_text("Customer 1")
    accessible(page)
    desktop.screenshot("bulk-2-checked.png")

    page.get_by_label("Leave out the 2 rows with problems").check()
    page.get_by_role("button", name=f"Send {ROWS - 2} envelopes").click()
    bar = page.locator("#bulk-progress")
    expect(bar).to_have_attribute("data-state", "sending")
    expect(page.locator("#time-left")).to_be_visible()
    first = int(page.locator("#bulk-bar").get_attribute("value") or 0)
    assert first < ROWS - 2, "the page shows the batch while it is being sent"
    desktop.screenshot("bulk-3-sending.png")
    expect(bar).to_have_attribute("data-state", "finished", timeout=60_000)
    expect(page.locator("#count-created")).to_have_text(str(ROWS - 2))
    expect(page.locator("#bulk-rows")).to_contain_text("Customer 30")
    accessible(page)
    desktop.screenshot("bulk-4-finished.png")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download the report (CSV)").click()
    report = list(csv.reader(io.StringIO(download.value.path().read_bytes().decode("utf-8-sig"))))
    outcomes = {r[0]: r[1] for r in report[1:]}
    assert len(report) == ROWS + 1 and outcomes["6"] == "Left out: problems"
    assert outcomes["2"] == "Sent" and re.match(r"^[0-9a-f]{32}$", report[1][6])
    assert counts(app) == (ROWS - 2, ROWS - 2)
    desktop.assert_clean()
