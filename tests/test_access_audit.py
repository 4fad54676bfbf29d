"""Access audit: staff views of an envelope (page, document as sent, sealed PDF, page images)
are recorded, page images once per 10 minutes, shown in the envelope's "Who accessed"
section and in the per-staff access report and its CSV; agents get 403 there."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import timedelta

from portal import clock
from portal.envelopes import viewing
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.records import access
from tests.conftest import Portal, audit_events
from tests.test_sealing import _sign
from tests.test_signing import sent  # noqa: F401


def _views(app) -> list[tuple[str, str]]:
    return [(e.actor_id, e.data["what"]) for e in audit_events(app, viewing.EVENT)]


def _pages(app, envelope_id: int) -> int:
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        return sum(1 for p in envelope.pages if p.get("image_blob_id"))


def test_views_are_recorded_and_page_images_count_once_per_window(
    app,
    sent,  # noqa: F811
    signed_in,
    make_staff,
    monkeypatch,
):
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    portal, officer = signed_in("compliance")
    me = str(officer.id)

    page = portal.client.get(f"/envelopes/{public_id}")
    assert page.status_code == 200
    assert _views(app) == [(me, "page")]
    assert "Viewed by staff" not in page.get_data(as_text=True), "views stay out of the timeline"

    sealed = portal.client.get(f"/envelopes/{public_id}/sealed.pdf")
    assert sealed.status_code == 200
    assert len(audit_events(app, "envelope.document_downloaded")) == 1, "downloads keep theirs"
    original = portal.client.get(f"/envelopes/{public_id}/document.pdf")
    assert original.status_code == 200 and original.data.startswith(b"%PDF")

    assert _pages(app, envelope_id) >= 1
    for _ in range(3):
        image = portal.client.get(f"/envelopes/{public_id}/pages/1.png")
        assert image.status_code == 200 and image.mimetype.startswith("image/")
    assert portal.client.get(f"/envelopes/{public_id}/pages/99.png").status_code == 404
    assert _views(app) == [(me, "page"), (me, "original"), (me, "page_image")]

    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(minutes=11))
    portal.client.get(f"/envelopes/{public_id}/pages/1.png")
    assert _views(app)[-1] == (me, "page_image") and len(_views(app)) == 4

    # another person's looks are their own
    monkeypatch.setattr(clock, "utcnow", real)
    other = make_staff("agent")
    agent_portal = Portal(app, app.test_client())
    assert agent_portal.sign_in(other).status_code == 302
    agent_portal.client.get(f"/envelopes/{public_id}/pages/1.png")
    assert _views(app)[-1] == (str(other.id), "page_image") and len(_views(app)) == 5


def test_who_accessed_section_and_staff_report(app, sent, signed_in, make_staff):  # noqa: F811
    _envelope_id, public_id, _link = sent()
    agent = make_staff("agent")
    agent_portal = Portal(app, app.test_client())
    assert agent_portal.sign_in(agent).status_code == 302
    agent_page = agent_portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Who accessed" not in agent_page, "the section is for compliance officers"
    agent_portal.client.get(f"/envelopes/{public_id}/pages/1.png")
    agent_portal.client.get(f"/envelopes/{public_id}/audit-report.pdf")

    portal, officer = signed_in("compliance")
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Who accessed" in page and f"/records/access/envelope/{public_id}" in page

    tab = portal.client.get(
        f"/records/access/envelope/{public_id}", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert "<html" not in tab and 'id="envelope-access"' in tab
    rows = tab.split("<tr data-seq=")[1:]
    assert len(rows) == 4, "officer's page view, agent's report download, images, page view"
    assert "Envelope page" in rows[0] and officer.email.split("@")[0].title() not in rows[0]
    assert "Compliance" in rows[0], "newest first: the officer's own view"
    assert "Audit report downloaded" in rows[1] and "Agent" in rows[1]
    assert "Page images" in rows[2] and "Envelope page" in rows[3]
    assert all("127.0.0.1" in row for row in rows)

    # paged: two a page, "Older" follows the cursor
    access.PAGE_SIZE = 2
    try:
        first = portal.client.get(f"/records/access/envelope/{public_id}").get_data(as_text=True)
        assert first.count("<tr data-seq=") == 2 and "Older" in first
        seq = int(rows[1].split('"')[1])
        older = portal.client.get(f"/records/access/envelope/{public_id}?before={seq}")
        text = older.get_data(as_text=True)
        assert text.count("<tr data-seq=") == 2 and "Page images" in text
        junk = portal.client.get(f"/records/access/envelope/{public_id}?before=x" + "9" * 3000)
        assert junk.status_code == 200
    finally:
        access.PAGE_SIZE = 50

    report = portal.client.get(f"/records/access/{agent.id}?period=today")
    text = report.get_data(as_text=True)
    assert report.status_code == 200 and agent.email in text
    assert "Envelope page" in text and "Page images" in text and "Audit report downloaded" in text
    assert text.count("<tr data-seq=") == 3

    download = portal.client.get(f"/records/access/{agent.id}.csv?period=today")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    body = download.data
    assert body.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert lines[0][:3] == ["Time (UTC)", "Staff", "What"]
    assert [line[2] for line in lines[1:]] == [
        "Audit report downloaded",
        "Page images",
        "Envelope page",
    ]
    assert all(line[3] == public_id for line in lines[1:])
    exported = [
        e for e in audit_events(app, "records.exported") if e.data["kind"] == "access_report"
    ]
    assert len(exported) == 1 and exported[0].actor_id == str(officer.id)
    assert exported[0].data["rows"] == 3 and exported[0].data["complete"] is True
    assert exported[0].data["sha256"] == hashlib.sha256(body).hexdigest()

    index = portal.client.get("/records/access").get_data(as_text=True)
    assert f"/records/access/{agent.id}" in index
    assert "/records/access" in portal.client.get("/records/").get_data(as_text=True)


def test_bad_dates_and_agents(app, sent, signed_in, make_staff):  # noqa: F811
    _envelope_id, public_id, _link = sent()
    agent = make_staff("agent")
    portal, _officer = signed_in("compliance")
    for query, message in (
        ("period=custom&from=2026-02-30&to=2026-03-01", "The start date is not a date"),
        ("period=custom&from=2026-03-02&to=2026-03-01", "The end date is before the start date"),
        ("period=custom&from=0001-01-01&to=9999-12-31", "not a date"),
        ("period=" + "x" * 100_000, "Choose a period from the list"),
    ):
        page = portal.client.get(f"/records/access/{agent.id}?{query}")
        assert page.status_code == 422 and message in page.get_data(as_text=True), query
        csv_page = portal.client.get(f"/records/access/{agent.id}.csv?{query}")
        assert csv_page.status_code == 422 and csv_page.mimetype == "text/html"
    assert portal.client.get("/records/access/999999").status_code == 404
    assert portal.client.get("/records/access/envelope/nope").status_code == 404

    agent_portal = Portal(app, app.test_client())
    assert agent_portal.sign_in(agent).status_code == 302
    for url in (
        "/records/",
        "/records/access",
        f"/records/access/{agent.id}",
        f"/records/access/{agent.id}.csv?period=today",
        f"/records/access/envelope/{public_id}",
    ):
        assert agent_portal.client.get(url).status_code == 403, url


def test_desktop_who_accessed_loads_with_htmx_and_pages_show(
    app,
    sent,  # noqa: F811
    make_staff,
    desktop,
):
    from playwright.sync_api import expect

    envelope_id, public_id, _link = sent()
    assert _pages(app, envelope_id) >= 1
    officer = make_staff("compliance")
    desktop.sign_in(officer)
    page = desktop.page
    desktop.goto(f"/envelopes/{public_id}")
    page.get_by_text("Show its").click()
    expect(page.locator(".envelope-page-images img").first).to_be_visible()
    loaded = "[...document.querySelectorAll('.envelope-page-images img')].every(i => i.complete)"
    for _ in range(100):
        if page.evaluate(loaded):
            break
        page.wait_for_timeout(50)
    desktop.goto(f"/envelopes/{public_id}")  # the section now lists those views
    page.locator("#access-heading").scroll_into_view_if_needed()  # htmx loads it when revealed
    section = page.locator("#envelope-access")
    expect(section.locator("tr[data-seq]").first).to_contain_text("Envelope page")
    expect(section).to_contain_text("Page images")
    desktop.screenshot("desktop-envelope-who-accessed.png")
    desktop.goto("/records/report")
    expect(page.get_by_role("button", name="Download the sealed report (PDF)")).to_be_visible()
    desktop.screenshot("desktop-compliance-report-form.png")
    desktop.goto(f"/records/access/{officer.id}?period=today")
    expect(page.locator("tr[data-seq]").first).to_be_visible()
    desktop.screenshot("desktop-staff-access.png")
    desktop.assert_clean()
    assert {what for _who, what in _views(app)} == {"page", "page_image"}


def test_page_images_requested_together_record_one_view(
    app,
    sent,  # noqa: F811
    make_staff,
    monkeypatch,
):
    """Two image requests of one burst both find no recent view before either writes: the
    second looks again once it holds the chain's head and records nothing."""
    import threading

    from portal.accounts.models import User

    envelope_id, _public_id, _link = sent()
    staff = make_staff("compliance")
    both_checked = threading.Barrier(2, timeout=10)
    first_look = viewing._seen_lately
    looks = threading.local()

    def look(*args):
        found = first_look(*args)
        if not getattr(looks, "done", False):
            looks.done = True
            both_checked.wait()  # neither has written yet
        return found

    monkeypatch.setattr(viewing, "_seen_lately", look)
    outcomes: list[bool] = []

    def view() -> None:
        with app.test_request_context("/envelopes/x/pages/1.png"):
            from portal.extensions import reads_first

            reads_first()
            envelope = db.session.get(Envelope, envelope_id)
            user = db.session.get(User, staff.id)
            outcomes.append(
                viewing.record_view(envelope, "page_image", user, once_within=viewing.IMAGE_WINDOW)
            )
            db.session.remove()

    threads = [threading.Thread(target=view) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == [False, True]
    assert _views(app) == [(str(staff.id), "page_image")]
