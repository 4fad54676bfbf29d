"""Legal holds: scopes (chosen envelopes, a customer's email incl. later envelopes, a template),
placing and releasing on the pages, their events, bad input, agents, and the ZIP export."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader

from portal.documents.seal import check_seal
from portal.envelopes import operations as envelopes
from portal.envelopes.models import Envelope
from portal.envelopes.operations import RecipientInput
from portal.extensions import db
from portal.library import operations as library
from portal.records import holds
from portal.storage import Blob
from tests.conftest import audit_events, demo_agent, demo_template
from tests.test_envelopes import REFUND_VALUES
from tests.test_sealing import _sign
from tests.test_signing import sent  # noqa: F401


def send_refund(app, email: str, name: str = "Zoë Łukasiewicz") -> tuple[int, str, str]:
    """Send the demo refund to one customer (after seed-demo): (id, public id, link)."""
    with app.app_context():
        version = library.approved_version(demo_template())
        people = [RecipientInput(role="customer", name=name, email=email)]
        values = {**REFUND_VALUES, "customer.name": name, "customer.email": email}
        envelope, links = envelopes.create_and_send(version, values, people, by=demo_agent())
        return envelope.id, envelope.public_id, next(iter(links.values()))


def _hold(scope: str, **kwargs) -> holds.LegalHold:
    hold = holds.LegalHold(
        name=kwargs.pop("name", f"{scope} hold"),
        case_ref="CASE-1",
        reason="litigation",
        scope=scope,
        placed_by_id=demo_agent().id,
        **kwargs,
    )
    db.session.add(hold)
    db.session.flush()
    return hold


def _template_id(app, envelope_id: int) -> int:
    with app.app_context():
        return db.session.get(Envelope, envelope_id).version.template_id


def test_hold_reasons_for_each_scope(app, sent):  # noqa: F811
    first, _, _ = sent()
    other, _, _ = sent("Service-change addendum")
    with app.app_context():
        assert holds.hold_reasons([first, other]) == {}
        chosen = _hold("envelopes", name="Chosen")
        db.session.add(holds.LegalHoldEnvelope(hold_id=chosen.id, envelope_id=other))
        _hold("email", name="Zoe", email="zoe@example.com")
        tpl = db.session.get(Envelope, first).version.template_id
        _hold("template", name="Refunds", template_id=tpl)
        db.session.commit()
        assert holds.hold_reasons([first, other]) == {first: ["Refunds", "Zoe"], other: ["Chosen"]}
        assert holds.hold_reasons([]) == {}
    # an envelope sent to the held email (in another case) after the hold was placed
    later, _, _ = send_refund(app, "ZOE@Example.com")
    stranger, _, _ = send_refund(app, "someone.else@example.com")
    with app.app_context():
        reasons = holds.hold_reasons([later, stranger, 999_999])
        assert reasons[later] == ["Refunds", "Zoe"]
        assert reasons[stranger] == ["Refunds"]  # the template hold only
        assert 999_999 not in reasons


def test_hold_reasons_answers_many_ids_in_a_few_queries(app, sent):  # noqa: F811
    from sqlalchemy import event

    first, _, _ = sent()
    with app.app_context():
        _hold("email", name="Zoe", email="zoe@example.com")
        db.session.commit()
        statements: list[str] = []

        def count(*args, **_kwargs):
            if args[2].lstrip().upper().startswith("SELECT"):
                statements.append(args[2])

        engine = db.engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            reasons = holds.hold_reasons([*range(1, 1201), first])
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert reasons == {first: ["Zoe"]}
        # one to see whether any hold is active, then one per 500 ids (1,201 ids: three)
        assert len(statements) == 4, statements


def _place(portal, **form):
    return portal.post("/records/holds/new", form)


def test_officer_places_holds_of_each_scope_and_releases_one_with_a_reason(
    app,
    sent,  # noqa: F811
    signed_in,
):
    first, _, _ = sent()
    other, _, _ = sent("Service-change addendum")
    portal, officer = signed_in("compliance")
    base = {"name": "Smith v. Bank", "case_ref": "CV-2026-17", "reason": "Court order"}

    page = portal.client.get("/records/holds/new?q=zoe").get_data(as_text=True)
    assert f'name="envelope" value="{first}"' in page and "Zoë Łukasiewicz" in page
    assert f'name="envelope" value="{other}"' not in page

    done = _place(portal, **base, scope="envelopes", envelope=[str(first)])
    assert done.status_code == 303
    chosen_page = portal.client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Smith v. Bank" in chosen_page and '<span id="hold-count">1</span>' in chosen_page

    by_email = _place(portal, **{**base, "name": "Zoe's records"}, scope="email",
                      email=" Zoe@Example.COM ")  # fmt: skip
    assert by_email.status_code == 303
    tpl = _template_id(app, other)
    by_template = _place(portal, **{**base, "name": "Addenda"}, scope="template",
                         template=str(tpl))  # fmt: skip
    assert by_template.status_code == 303

    later, _, _ = send_refund(app, "zoe@EXAMPLE.com")
    with app.app_context():
        reasons = holds.hold_reasons([first, other, later])
    assert reasons == {
        first: ["Smith v. Bank", "Zoe's records"],
        other: ["Addenda"],
        later: ["Zoe's records"],
    }
    email_page = portal.client.get(by_email.headers["Location"]).get_data(as_text=True)
    assert '<span id="hold-count">2</span>' in email_page and "zoe@example.com" in email_page

    listing = portal.client.get("/records/holds").get_data(as_text=True)
    for name in ("Smith v. Bank", "Zoe&#39;s records", "Addenda"):
        assert name in listing

    placed = audit_events(app, "hold.placed")
    assert [e.data["scope"] for e in placed] == ["envelopes", "email", "template"]
    assert placed[0].actor_id == str(officer.id) and placed[0].data["case_ref"] == "CV-2026-17"
    assert placed[0].data["envelope_ids"] == [first]
    assert placed[1].data["email_sha256"] == hashlib.sha256(b"zoe@example.com").hexdigest()
    assert "zoe@example.com" not in placed[1].data_json

    # releasing needs a reason
    release_url = by_email.headers["Location"] + "/release"
    refused = portal.post(release_url, {"reason": "   "}, follow_redirects=True)
    assert "The reason for releasing is required." in refused.get_data(as_text=True)
    assert audit_events(app, "hold.released") == []
    released = portal.post(release_url, {"reason": "Case settled"}, follow_redirects=True)
    text = released.get_data(as_text=True)
    assert "released" in text and "Case settled" in text and "removed at release" in text
    events = audit_events(app, "hold.released")
    assert len(events) == 1 and events[0].data["reason"] == "Case settled"
    with app.app_context():
        assert holds.hold_reasons([later]) == {}
        hold = db.session.get(holds.LegalHold, int(by_email.headers["Location"].rsplit("/", 1)[1]))
        assert hold.email is None and hold.email_sha256
    again = portal.post(release_url, {"reason": "twice"}, follow_redirects=True)
    assert "already released" in again.get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "", "scope": "email", "email": "a@example.com"}, "The name is required."),
        ({"scope": "email", "email": "not an email"}, "The email is not valid"),
        ({"scope": "email", "email": ""}, "Enter the customer&#39;s email."),
        ({"scope": "template", "template": "99999"}, "Choose the template the hold covers."),
        ({"scope": "template", "template": "1e9"}, "Choose the template the hold covers."),
        ({"scope": "envelopes"}, "Tick at least one envelope for the hold."),
        ({"scope": "envelopes", "envelope": ["1", "x"]}, "The envelopes chosen are not valid"),
        ({"scope": "envelopes", "envelope": ["424242"]}, "no longer exist"),
        ({"scope": "everything"}, "Choose what the hold covers"),
        ({"scope": "email", "email": "a@example.com", "case_ref": "x" * 1_000_000},
         "The case reference is longer than 120 characters."),
        ({"scope": "email", "email": "a@example.com", "reason": ""}, "The reason is required."),
    ],
)  # fmt: skip
def test_bad_hold_input_gives_a_message(app, signed_in, form, message):
    portal, _ = signed_in("compliance")
    data = {"name": "Hold", "case_ref": "C-1", "reason": "Why", **form}
    response = _place(portal, **data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert audit_events(app, "hold.placed") == []


def test_formula_and_markup_in_a_hold_name_are_plain_text(app, sent, signed_in):  # noqa: F811
    sent()
    portal, _ = signed_in("compliance")
    done = _place(portal, name='=HYPERLINK("x")<script>', case_ref="C", reason="R",
                  scope="email", email="zoe@example.com")  # fmt: skip
    page = portal.client.get(done.headers["Location"]).get_data(as_text=True)
    assert "&lt;script&gt;" in page and "<script>" not in page.split("</head>")[1]


def test_agents_get_403_on_every_hold_page(app, signed_in):
    portal, _ = signed_in("agent")
    for url in ("/records/holds", "/records/holds/new", "/records/holds/1",
                "/records/holds/1/exports/1", "/records/holds/1/exports/1.zip"):  # fmt: skip
        assert portal.client.get(url).status_code == 403, url
    for url in ("/records/holds/new", "/records/holds/1/release", "/records/holds/1/export"):
        assert portal.post(url, {"name": "x"}).status_code == 403, url


def test_unknown_hold_is_404_and_bad_cursor_is_ignored(app, signed_in):
    portal, _ = signed_in("compliance")
    assert portal.client.get("/records/holds/12345").status_code == 404
    done = _place(portal, name="H", case_ref="C", reason="R", scope="email",
                  email="nobody@example.com")  # fmt: skip
    page = portal.client.get(done.headers["Location"] + "?after=" + "9" * 5000)
    assert page.status_code == 200 and "No envelopes for this email yet" in page.get_data(
        as_text=True
    )


def _zip_from(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/zip"
    content = response.get_data()
    response.close()
    return zipfile.ZipFile(io.BytesIO(content))


def _manifest(bundle: zipfile.ZipFile) -> list[dict[str, str]]:
    text = bundle.read("manifest.csv").decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_hold_zip_holds_sealed_pdfs_sealed_reports_and_a_manifest_of_their_hashes(
    app,
    sent,  # noqa: F811
    signed_in,
):
    signed_id, signed_public, link = sent()
    _sign(app, link, signed_public)
    waiting, _, _ = send_refund(app, "zoe@example.com")
    send_refund(app, "other@example.com")
    portal, officer = signed_in("compliance")
    done = _place(portal, name="Zoe", case_ref="C-9", reason="R", scope="email",
                  email="zoe@example.com")  # fmt: skip
    hold_url = done.headers["Location"]

    bundle = _zip_from(portal.post(hold_url + "/export"))
    rows = _manifest(bundle)
    names = sorted(bundle.namelist())
    assert names == sorted([r["File"] for r in rows] + ["manifest.csv"])
    kinds = sorted((int(r["Envelope id"]), r["Kind"]) for r in rows)
    assert kinds == sorted(
        [(signed_id, "sealed_pdf"), (signed_id, "audit_report"), (waiting, "audit_report")]
    )
    for row in rows:
        content = bundle.read(row["File"])
        assert hashlib.sha256(content).hexdigest() == row["SHA-256"]
        assert len(content) == int(row["Bytes"])
        assert len(PdfReader(io.BytesIO(content)).pages) >= 1  # every PDF opens
        assert check_seal(content).outcome == "intact", row["File"]
    with app.app_context():
        sealed_sha = db.session.get(Envelope, signed_id).sealed_sha256
    sealed_row = next(r for r in rows if r["Kind"] == "sealed_pdf")
    assert sealed_row["SHA-256"] == sealed_sha

    exported = audit_events(app, "records.exported")
    assert len(exported) == 1
    data = exported[0].data
    assert data["kind"] == "hold_zip" and data["rows"] == 2
    assert exported[0].actor_id == str(officer.id)
    again = portal.post(hold_url + "/export")
    zipped = again.get_data()
    again.close()
    second = audit_events(app, "records.exported")[-1].data
    assert second["sha256"] == hashlib.sha256(zipped).hexdigest()


def _big_hold(app, sent, signed_in, monkeypatch):  # noqa: F811
    """Two envelopes of one customer on hold, ZIPs built by a job; (portal, hold url, ids)."""
    first, _, _ = sent()
    second, _, _ = send_refund(app, "zoe@example.com")
    monkeypatch.setattr(holds, "INLINE_ENVELOPES", 1)
    portal, _ = signed_in("compliance")
    done = _place(portal, name="Zoe", case_ref="C", reason="R", scope="email",
                  email="zoe@example.com")  # fmt: skip
    return portal, done.headers["Location"], {first, second}


def test_a_big_hold_is_zipped_by_a_job_with_progress(app, sent, signed_in, monkeypatch):  # noqa: F811
    portal, hold_url, ids = _big_hold(app, sent, signed_in, monkeypatch)
    started = portal.post(hold_url + "/export", follow_redirects=True)
    page = started.get_data(as_text=True)
    assert "The ZIP is being built" in page
    # jobs run inline in the tests: it is ready by now
    link = re.search(r'href="(/records/holds/\d+/exports/\d+\.zip)"', page)
    assert link, page
    response = portal.client.get(link.group(1))
    zipped = response.get_data()
    bundle = _zip_from(response)
    rows = _manifest(bundle)
    assert {int(r["Envelope id"]) for r in rows} == ids
    event = audit_events(app, "records.exported")[-1]
    assert event.data["kind"] == "hold_zip" and event.data["rows"] == 2
    assert event.data["sha256"] == hashlib.sha256(zipped).hexdigest()
    progress = portal.client.get(link.group(1).removesuffix(".zip")).get_data(as_text=True)
    assert "Download the ZIP" in progress and event.data["sha256"] in progress


def test_the_search_on_the_hold_form_names_bad_filters(app, signed_in):
    portal, _ = signed_in("compliance")
    response = portal.client.get(
        "/records/holds/new?q=" + "a" * 1_000_000 + "&sent_from=2026-13-45&status=nonsense"
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Sent from must be a date such as 2026-12-31; it was left out." in text
    page = portal.client.get("/records/holds/new?q=x&sent_from=2026-13-45&sent_to=yesterday")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Sent to must be a date such as 2026-12-31; it was left out." in text
    assert "No envelopes match." in text


def test_built_zips_are_deleted_after_a_day(app, sent, signed_in, monkeypatch):  # noqa: F811
    from datetime import timedelta

    from portal import clock

    portal, hold_url, _ids = _big_hold(app, sent, signed_in, monkeypatch)
    page = portal.post(hold_url + "/export", follow_redirects=True)
    link = re.search(r'href="(/records/holds/\d+/exports/\d+\.zip)"', page.get_data(as_text=True))
    assert link
    with app.app_context():
        export = db.session.scalars(db.select(holds.HoldExport)).one()
        parts = db.session.scalars(
            db.select(holds.HoldExportPart.blob_id).where(
                holds.HoldExportPart.export_id == export.id
            )
        ).all()
        assert parts
        assert holds.sweep_exports() == "0 deleted"
        export.finished_at = clock.utcnow() - timedelta(hours=25)
        db.session.commit()
        assert holds.sweep_exports() == "1 deleted"
        assert db.session.scalars(db.select(holds.HoldExportPart)).all() == []
        assert db.session.scalars(db.select(Blob).where(Blob.id.in_(parts))).all() == []
    gone = portal.client.get(link.group(1), follow_redirects=True)
    assert "That ZIP is not available (any more); export it again." in gone.get_data(as_text=True)


def test_a_zip_job_that_fails_says_why_and_leaves_no_file(app, sent, signed_in, monkeypatch):  # noqa: F811
    from portal.envelopes import sealing

    def broken(_envelope):
        raise RuntimeError("The sealing certificate has expired.")

    monkeypatch.setattr(sealing, "audit_report", broken)
    portal, hold_url, _ids = _big_hold(app, sent, signed_in, monkeypatch)
    page = portal.post(hold_url + "/export", follow_redirects=True)
    text = page.get_data(as_text=True)
    assert "The ZIP could not be built: The sealing certificate has expired." in text
    assert "Download the ZIP" not in text
    assert "Try again" in text and "hx-trigger" not in text.split('id="hold-export"')[1]
    with app.app_context():
        assert db.session.scalars(db.select(holds.HoldExportPart)).all() == []
        assert db.session.scalars(db.select(Blob).where(Blob.kind == "hold_export")).all() == []
    assert audit_events(app, "records.exported") == []


def _ended(app, envelope_id: int) -> None:
    """Void the envelope and make its retention date yesterday (due for purge)."""
    from datetime import timedelta

    from portal import clock

    with app.app_context():
        envelopes.void(db.session.get(Envelope, envelope_id), "Ended", by=demo_agent())
        envelope = db.session.get(Envelope, envelope_id)
        envelope.retention_until = clock.utcnow() - timedelta(days=1)
        db.session.commit()


@pytest.mark.parametrize("scope", ["envelopes", "email", "template"])
def test_a_hold_of_each_scope_blocks_purge_until_released(app, sent, signed_in, scope):  # noqa: F811
    from portal.records.purge import PurgeRefused, purge_envelope

    first, _, _ = sent()
    portal, officer = signed_in("compliance")
    form = {"name": f"Case {scope}", "case_ref": "C-3", "reason": "R", "scope": scope,
            "email": "zoe@example.com", "template": str(_template_id(app, first)),
            "envelope": [str(first)]}  # fmt: skip
    hold_url = _place(portal, **form).headers["Location"]
    later, _, _ = send_refund(app, "ZOE@example.com")  # sent after the hold was placed
    covered = [first] if scope == "envelopes" else [first, later]
    for envelope_id in (first, later):
        _ended(app, envelope_id)
    with app.app_context():
        from portal.accounts.models import User

        user = db.session.get(User, officer.id)
        for envelope_id in covered:
            with pytest.raises(PurgeRefused, match=f"On legal hold: Case {scope}."):
                purge_envelope(db.session.get(Envelope, envelope_id), reason="test", actor=user)
            assert db.session.get(Envelope, envelope_id).purged_at is None
    assert audit_events(app, "envelope.purged") == []

    released = portal.post(hold_url + "/release", {"reason": "Settled"})
    assert released.status_code == 303
    with app.app_context():
        user = db.session.get(User, officer.id)
        for envelope_id in covered:
            purge_envelope(db.session.get(Envelope, envelope_id), reason="test", actor=user)
            assert db.session.get(Envelope, envelope_id).purged_at is not None
    assert sorted(int(e.subject_id) for e in audit_events(app, "envelope.purged")) == covered


@pytest.mark.browser
def test_an_officer_places_a_hold_from_a_search_in_chromium(app, sent, desktop, make_staff):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    from tests.browser import describe_violations, serious_violations

    first, _, _ = sent()
    other, _, _ = send_refund(app, "someone@example.com", name="Someone Else")
    officer = make_staff("compliance")
    page = desktop.page
    desktop.sign_in(officer)
    desktop.goto("/records/")
    page.get_by_role("link", name="Legal holds").click()
    page.get_by_role("link", name="Place a hold").click()
    page.evaluate("window.__sameDocument = true")
    page.get_by_label("Search", exact=True).fill("zoe@example")  # htmx: the results come in place
    expect(page.locator(f"#env-{first}")).to_be_visible()
    expect(page.locator(f"#env-{other}")).to_have_count(0)
    assert page.evaluate("window.__sameDocument === true"), "the search reloaded the page"
    page.locator(f"#env-{first}").check()
    # a second search keeps what was ticked in the first
    page.get_by_label("Search", exact=True).fill("someone@example")
    expect(page.locator(f"#env-{other}")).to_be_visible()
    expect(page.locator("#hold-ticked-earlier")).to_contain_text(f"Envelope {first}")
    page.locator(f"#env-{other}").check()
    page.get_by_label("Name").fill("Rivera v Shop")
    page.get_by_label("Case reference").fill("CV-2026-9")
    page.get_by_label("Reason", exact=True).fill("Litigation hold")
    page.get_by_label("Envelopes chosen from a search").check()
    violations = serious_violations(Axe().run(page).response)
    assert not violations, describe_violations(violations)
    desktop.screenshot("desktop-hold-new.png")
    page.get_by_role("button", name="Place the hold").click()
    expect(page.locator("#hold-count")).to_have_text("2")
    expect(page.locator("#covered-table")).to_contain_text("Zoë Łukasiewicz")
    expect(page.locator("#covered-table")).to_contain_text("Someone Else")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export as ZIP").click()
    bundle = zipfile.ZipFile(download.value.path())
    assert "manifest.csv" in bundle.namelist()
    violations = serious_violations(Axe().run(page).response)
    assert not violations, describe_violations(violations)
    desktop.screenshot("desktop-hold.png")
    with app.app_context():
        assert holds.hold_reasons([first, other]) == {
            first: ["Rivera v Shop"],
            other: ["Rivera v Shop"],
        }
    desktop.assert_clean()


def test_a_built_zip_is_stored_encrypted_in_parts_and_streams_back(
    app,
    sent,  # noqa: F811
    signed_in,
    monkeypatch,
):
    monkeypatch.setattr(holds, "PART_BYTES", 16 * 1024)
    portal, hold_url, ids = _big_hold(app, sent, signed_in, monkeypatch)
    page = portal.post(hold_url + "/export", follow_redirects=True).get_data(as_text=True)
    link = re.search(r'href="(/records/holds/\d+/exports/\d+\.zip)"', page)
    assert link, page
    assert "kept a day, encrypted" in page
    with app.app_context():
        export = db.session.scalars(db.select(holds.HoldExport)).one()
        parts = db.session.scalars(
            db.select(holds.HoldExportPart)
            .where(holds.HoldExportPart.export_id == export.id)
            .order_by(holds.HoldExportPart.number)
        ).all()
        assert len(parts) >= 2  # several parts of 16 KB
        blobs = [db.session.get(Blob, p.blob_id) for p in parts]
        assert {b.kind for b in blobs} == {"hold_export"}
        assert all(b.size <= 16 * 1024 for b in blobs)
        for blob in blobs:  # no ZIP header, PDF or manifest text in what is stored
            assert b"PK\x03\x04" not in blob.ciphertext and b"%PDF" not in blob.ciphertext
            assert b"manifest.csv" not in blob.ciphertext
        exports_dir = Path(app.instance_path) / "exports"
        on_disk = list(exports_dir.glob("*")) if exports_dir.exists() else []
        assert on_disk == []  # no plain file on disk
        size, digest = export.size, export.sha256
    response = portal.client.get(link.group(1))
    assert response.headers["Content-Length"] == str(size)
    zipped = response.get_data()
    assert len(zipped) == size and hashlib.sha256(zipped).hexdigest() == digest
    bundle = _zip_from(response)
    assert bundle.testzip() is None
    assert {int(r["Envelope id"]) for r in _manifest(bundle)} == ids
    (fetched,) = audit_events(app, "records.export_downloaded")  # access is recorded
    assert fetched.data["kind"] == "hold_zip" and fetched.data["sha256"] == digest
    assert fetched.actor_type == "user" and fetched.subject_type == "legal_hold"


def _export_page(portal, hold_url: str) -> str:
    return portal.client.get(hold_url).get_data(as_text=True)


def test_a_zip_job_whose_worker_was_killed_is_retried_then_failed_and_tried_again(
    app,
    sent,  # noqa: F811
    signed_in,
    monkeypatch,
):
    from datetime import timedelta

    from portal import clock

    portal, hold_url, ids = _big_hold(app, sent, signed_in, monkeypatch)
    hold_id = int(hold_url.rsplit("/", 1)[1])
    try:
        # A worker took the job, stored a part, and was killed (SIGKILL: nothing after it ran).
        with app.app_context():
            export = holds.HoldExport(hold_id=hold_id, requested_by_id=demo_agent().id,
                                      state="running", total=2, done=1, runner="killed",
                                      heartbeat_at=clock.utcnow(), attempts=1)  # fmt: skip
            db.session.add(export)
            db.session.flush()
            blob = holds.storage.put(b"half a zip", kind="hold_export")
            db.session.add(holds.HoldExportPart(export_id=export.id, number=1, blob_id=blob))
            db.session.commit()
            export_id = export.id
            # its lease is live: another start of the job leaves it alone
            assert holds.build_export(export_id) == "nothing to do"
            assert holds.resume_stuck_exports() == "0 retried, 0 failed"
        page = _export_page(portal, hold_url)
        assert "Building the ZIP:" in page and 'hx-trigger="every 2s"' in page

        clock.travel_to(clock.utcnow() + holds.STALE + timedelta(minutes=1))
        page = _export_page(portal, hold_url)
        assert "The ZIP stopped being built" in page and "Try again" in page
        assert "hx-trigger" not in page.split('id="hold-export"')[1]  # polling stopped

        with app.app_context():  # the sweeper asks again; the job (inline here) builds it
            assert holds.resume_stuck_exports() == "1 retried, 0 failed"
            export = db.session.get(holds.HoldExport, export_id)
            assert (export.state, export.attempts, export.runner) == ("done", 2, None)
            assert db.session.get(Blob, blob) is None  # the killed start's part is gone
        page = _export_page(portal, hold_url)
        link = re.search(r'href="(/records/holds/\d+/exports/\d+\.zip)"', page)
        assert link and f"/exports/{export_id}.zip" in link.group(1)
        bundle = _zip_from(portal.client.get(link.group(1)))
        assert {int(r["Envelope id"]) for r in _manifest(bundle)} == ids

        # One that keeps dying: after MAX_ATTEMPTS starts it fails with the reason.
        with app.app_context():
            stuck = holds.HoldExport(hold_id=hold_id, requested_by_id=demo_agent().id,
                                     state="running", total=2, runner="killed",
                                     heartbeat_at=clock.utcnow() - holds.STALE * 2,
                                     attempts=holds.MAX_ATTEMPTS)  # fmt: skip
            db.session.add(stuck)
            db.session.commit()
            stuck_id = stuck.id
            assert holds.resume_stuck_exports() == "0 retried, 1 failed"
            assert db.session.get(holds.HoldExport, stuck_id).state == "failed"
        page = _export_page(portal, hold_url)
        assert (f"The ZIP could not be built: the job building it stopped "
                f"{holds.MAX_ATTEMPTS} times without finishing") in page  # fmt: skip
        assert "Try again" in page and "hx-trigger" not in page.split('id="hold-export"')[1]

        again = portal.post(hold_url + "/export", follow_redirects=True).get_data(as_text=True)
        assert "Download the ZIP" in again
        with app.app_context():
            exported = [e for e in audit_events(app, "records.exported")
                        if e.data["kind"] == "hold_zip"]  # fmt: skip
            assert len(exported) == 2  # the retried job's ZIP and the one tried again
    finally:
        clock.reset()


def test_asking_again_replaces_an_export_whose_job_stopped(app, sent, signed_in, monkeypatch):  # noqa: F811
    from portal import clock

    portal, hold_url, _ids = _big_hold(app, sent, signed_in, monkeypatch)
    hold_id = int(hold_url.rsplit("/", 1)[1])
    with app.app_context():  # queued, but no worker ever took it (a lost queue)
        lost = holds.HoldExport(hold_id=hold_id, requested_by_id=demo_agent().id,
                                state="queued", total=2,
                                created_at=clock.utcnow() - holds.STALE * 2)  # fmt: skip
        db.session.add(lost)
        db.session.commit()
        lost_id = lost.id
    page = _export_page(portal, hold_url)
    assert "The ZIP stopped being built" in page and "Try again" in page
    again = portal.post(hold_url + "/export", follow_redirects=True).get_data(as_text=True)
    assert "Download the ZIP" in again
    with app.app_context():
        lost = db.session.get(holds.HoldExport, lost_id)
        assert lost.state == "failed" and lost.error == "its job stopped; it was exported again"
        assert holds.resume_stuck_exports() == "0 retried, 0 failed"


def test_an_export_no_worker_takes_is_asked_again_then_failed(app, sent, signed_in, monkeypatch):  # noqa: F811
    from portal import clock, jobs

    portal, hold_url, _ids = _big_hold(app, sent, signed_in, monkeypatch)
    hold_id = int(hold_url.rsplit("/", 1)[1])
    asked: list[tuple] = []
    monkeypatch.setattr(jobs, "enqueue", lambda func, *args: asked.append((func, args)))
    with app.app_context():  # no worker runs the pdf queue: nothing ever starts it
        lost = holds.HoldExport(hold_id=hold_id, requested_by_id=demo_agent().id,
                                state="queued", total=2,
                                created_at=clock.utcnow() - holds.STALE * 2)  # fmt: skip
        db.session.add(lost)
        db.session.commit()
        lost_id = lost.id
        try:
            for _ in range(holds.MAX_ATTEMPTS - 1):
                assert holds.resume_stuck_exports() == "1 retried, 0 failed"
                clock.travel_to(clock.utcnow() + holds.STALE * 2)
            assert holds.resume_stuck_exports() == "0 retried, 1 failed"
        finally:
            clock.reset()
        assert asked == [(holds.build_export, (lost_id,))] * (holds.MAX_ATTEMPTS - 1)
        lost = db.session.get(holds.HoldExport, lost_id)
        assert lost.state == "failed" and lost.error.startswith(
            f"no worker took the job in {holds.MAX_ATTEMPTS} tries"
        )
    page = _export_page(portal, hold_url)
    assert "The ZIP could not be built: no worker took the job" in page and "Try again" in page


def test_the_envelope_page_says_which_holds_cover_it_in_one_statement(
    app,
    sent,  # noqa: F811
    signed_in,
    make_staff,
):
    from tests.conftest import Portal
    from tests.test_console_lists import counted

    envelope_id, public_id, _ = sent()
    portal, _officer = signed_in("compliance")
    url = f"/envelopes/{public_id}"
    with counted(app) as before:
        page = portal.client.get(url).get_data(as_text=True)
    assert "On legal hold" not in page

    with app.app_context():
        email = db.session.get(Envelope, envelope_id).recipients[0].email
        chosen = _hold("envelopes", name="Refund dispute")
        db.session.add(holds.LegalHoldEnvelope(hold_id=chosen.id, envelope_id=envelope_id))
        by_email = _hold("email", name="Customer case", email=email.lower())
        template_id = db.session.get(Envelope, envelope_id).version.template_id
        by_template = _hold("template", name="Template audit", template_id=template_id)
        released = _hold("email", name="Old matter", email=email.lower())
        released.released_at = released.placed_at
        db.session.commit()
        ids = {h.name: h.id for h in (chosen, by_email, by_template)}
    with counted(app) as after:
        page = portal.client.get(url).get_data(as_text=True)
    notice = page.split('id="envelope-holds"')[1].split("</p>")[0]
    assert "On legal hold:" in notice and "Old matter" not in notice
    for name, hold_id in ids.items():  # officers get a link to each hold's page
        assert f'<a href="/records/holds/{hold_id}">{name}</a> (CASE-1)' in notice
    assert len(after) == len(before)  # the same statements with three holds as with none

    agent = Portal(app, app.test_client())  # another browser: an agent of the sender's team
    assert agent.sign_in(make_staff("agent")).status_code == 302
    page = agent.client.get(url).get_data(as_text=True)
    notice = page.split('id="envelope-holds"')[1].split("</p>")[0]
    assert "Customer case (CASE-1); Refund dispute (CASE-1); Template audit (CASE-1)" in notice
    assert "/records/holds/" not in notice  # no link for agents (they get 403 there)
