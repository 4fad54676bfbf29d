"""Browser tests of what people get once a document is sealed (portal/envelopes/sealing.py).

On a phone, the customer signs from the emailed link, sees the confirmation with "Download your
signed copy", downloads the sealed PDF and finds the same file attached to the "Completed" email
the SMTP server received. On the public /verify page (a phone again) the sealed file is
verified, a copy with one byte changed is called modified, a PDF from elsewhere and a text file
are turned away, each with words a person understands. On a desktop, staff see the seal on the
envelope page and download the sealed PDF and the audit report. Pages are checked with axe-core,
for CSP refusals, script errors and failed requests, and for sideways scrolling; screenshots go
to tests/artifacts/.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Locator, Page, expect

from portal.envelopes import sealing
from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.browser import Tab, no_sideways_scroll
from tests.conftest import Staff, audit_events
from tests.smtp import SmtpServer
from tests.test_documents import good_pdf
from tests.test_sealing import _flip_in_stream, _sealed_bytes, _sign
from tests.test_signing_browser import (  # noqa: F401  (app, mailer and send are fixtures)
    CUSTOMER,
    EMAIL,
    Sent,
    accessible,
    app,
    check_page,
    link_path,
    mailer,
    open_and_authenticate,
    send,
    shot,
)

pytestmark = pytest.mark.browser

MASKED = "z***@example.com"
VERIFIED = "Verified: sealed by this portal and unchanged since."


# ------------------------------------------------------------------ helpers


def completed_mail(mailer: SmtpServer, subject: str) -> EmailMessage:  # noqa: F811
    """The message with this subject the SMTP server received for the customer, waiting
    briefly for delivery."""
    deadline = time.monotonic() + 10
    while True:
        for received in mailer.messages:
            if EMAIL in received.rcpt_tos and received.message["Subject"] == subject:
                return received.message
        assert time.monotonic() < deadline, f"no email {subject!r} for {EMAIL}"
        time.sleep(0.05)


def sealed_envelope(app: Flask, sent: Sent) -> tuple[Envelope, str]:  # noqa: F811
    """The envelope (detached) and the file name its sealed copy is given."""
    with app.app_context():
        envelope = db.session.get(Envelope, sent.envelope_id)
        name = sealing.download_name(envelope)
        db.session.expunge(envelope)
        return envelope, name


def sign_by_link(app: Flask, mailer: SmtpServer, send) -> Sent:  # noqa: F811
    """A demo refund sent with a plain link and signed with a typed name (no browser)."""
    sent = send(auth_method="link")
    _sign(app, link_path(mailer), sent.public_id, adoption="typed", name=CUSTOMER)
    return sent


def verdict_after_upload(page: Page, path: Path) -> Locator:
    """Choose ``path`` in the file field, submit, and return the verdict box shown."""
    page.get_by_label("Signed PDF (up to 30 MB)").set_input_files(path)
    with page.expect_navigation():
        page.get_by_role("button", name="Check the document").click()
    verdict = page.locator(".verdict")
    expect(verdict).to_be_visible()
    return verdict


# ------------------------------------------------------------------ tests


def test_phone_customer_downloads_the_sealed_copy_and_gets_the_same_file_by_email(
    phone: Tab,
    app: Flask,  # noqa: F811
    mailer: SmtpServer,  # noqa: F811
    send,  # noqa: F811
):
    sent = send()
    page = phone.page
    open_and_authenticate(phone, mailer, sent)
    expect(page.get_by_label("Full name", exact=True).last).to_have_value(CUSTOMER)
    page.locator("#agree").check()
    page.get_by_role("button", name="Adopt and sign", exact=True).click()

    # The last signature seals the envelope at once (jobs run inline): the copy is ready.
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, you have signed")
    # the copy was emailed at once (jobs inline, the SMTP server accepted it): the page says so
    expect(page.get_by_role("status")).to_have_text(
        "Everyone has finished. Your copy is sealed with its certificate of completion."
        " We have also emailed it to you."
    )
    download_link = page.get_by_role("link", name="Download your signed copy")
    expect(download_link).to_be_visible()
    expect(page.get_by_text("You can download it here until")).to_be_visible()
    expect(page.get_by_role("link", name="Download the document as sent")).to_have_count(0)
    check_page(phone)
    shot(page, "phone-sealed-confirmation.png")

    sealed = _sealed_bytes(app, sent.envelope_id)
    envelope, filename = sealed_envelope(app, sent)
    with page.expect_download() as info:
        download_link.click()
    download = info.value
    assert download.failure() is None
    data = Path(download.path()).read_bytes()
    assert data.startswith(b"%PDF") and data == sealed
    assert download.suggested_filename == filename
    downloaded = audit_events(app, "recipient.copy_downloaded")
    assert len(downloaded) == 1 and downloaded[0].actor_type == "recipient"
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, you have signed")

    # The "Completed" email carries the very same file, and says where to check it.
    message = completed_mail(mailer, f"Completed: {envelope.title}")
    attached = list(message.iter_attachments())
    assert [part.get_content_type() for part in attached] == ["application/pdf"]
    assert attached[0].get_filename() == filename
    assert attached[0].get_content() == sealed
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and "/verify" in body.get_content()
    phone.assert_clean()


def test_phone_verify_page_tells_a_sealed_file_from_a_changed_or_foreign_one(
    phone: Tab,
    app: Flask,  # noqa: F811
    mailer: SmtpServer,  # noqa: F811
    send,  # noqa: F811
    tmp_path: Path,
):
    sent = sign_by_link(app, mailer, send)
    sealed = _sealed_bytes(app, sent.envelope_id)
    envelope, _filename = sealed_envelope(app, sent)
    files = {
        "sealed": tmp_path / "signed copy.pdf",
        "changed": tmp_path / "changed.pdf",
        "foreign": tmp_path / "invoice.pdf",
        "text": tmp_path / "notes.txt",
    }
    files["sealed"].write_bytes(sealed)
    files["changed"].write_bytes(_flip_in_stream(sealed))
    files["foreign"].write_bytes(good_pdf())
    files["text"].write_text("hello, I am a text file\n")
    assert files["changed"].read_bytes() != sealed
    assert len(files["changed"].read_bytes()) == len(sealed)

    page = phone.page
    phone.goto("/verify")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check a signed document")
    expect(page.locator(".verdict")).to_have_count(0)
    check_page(phone)

    # The sealed file: verified, with the envelope, its completion time and masked signers.
    verdict = verdict_after_upload(page, files["sealed"])
    expect(verdict).to_have_attribute("data-outcome", "verified")
    expect(verdict).to_have_attribute("role", "status")
    expect(verdict).to_contain_text(VERIFIED)
    expect(verdict.locator("dd").first).to_have_text(sent.public_id)
    completed = envelope.finished_at.strftime("%Y-%m-%d %H:%M:%S") + " UTC"
    expect(verdict).to_contain_text(completed)
    signer = verdict.get_by_role("listitem")
    expect(signer).to_have_count(1)
    expect(signer).to_have_text(f"{CUSTOMER} ({MASKED})")
    assert EMAIL not in page.content(), "the full address is not shown"
    check_page(phone)
    shot(page, "phone-verify-verified.png")

    # One byte changed: modified, naming nothing.
    verdict = verdict_after_upload(page, files["changed"])
    expect(verdict).to_have_attribute("data-outcome", "modified")
    expect(verdict).to_contain_text("Modified after sealing.")
    expect(verdict).to_contain_text("Ask the sender for the original copy.")
    expect(verdict).not_to_contain_text(VERIFIED)
    assert sent.public_id not in page.content() and MASKED not in page.content()
    assert CUSTOMER not in page.content()
    check_page(phone)
    shot(page, "phone-verify-modified.png")

    # A PDF that was never sealed here.
    verdict = verdict_after_upload(page, files["foreign"])
    expect(verdict).to_have_attribute("data-outcome", "unknown")
    expect(verdict).to_contain_text("Not a document sealed here.")
    check_page(phone)

    # A text file: told plainly that it is not a PDF.
    verdict = verdict_after_upload(page, files["text"])
    expect(verdict).to_have_attribute("data-outcome", "unreadable")
    expect(verdict).to_contain_text("This file cannot be checked.")
    expect(verdict).to_contain_text("This file is not a PDF. Choose the signed PDF document.")
    check_page(phone)

    # Every answer came with a 200 (no 500s, nothing refused by the CSP).
    phone.assert_clean()


def test_desktop_staff_see_the_seal_and_download_the_pdf_and_the_audit_report(
    desktop: Tab,
    app: Flask,  # noqa: F811
    mailer: SmtpServer,  # noqa: F811
    send,  # noqa: F811
    make_staff,
):
    sent = sign_by_link(app, mailer, send)
    sealed = _sealed_bytes(app, sent.envelope_id)
    envelope, filename = sealed_envelope(app, sent)
    staff: Staff = make_staff("agent")  # the demo team, "Customer Care"
    page = desktop.page
    desktop.sign_in(staff)
    desktop.goto(f"/envelopes/{sent.public_id}")

    expect(page.get_by_role("heading", level=1)).to_have_text(envelope.title)
    section = page.locator("section.sealed-document")
    expect(section).to_have_attribute("data-seal-status", "sealed")
    expect(section).to_contain_text("Sealed")
    expect(section).to_contain_text(envelope.sealed_sha256)
    expect(section).to_contain_text(envelope.sealed_path)
    accessible(page)
    no_sideways_scroll(page)
    shot(page, "desktop-sealed-envelope.png")

    with page.expect_download() as info:
        section.get_by_role("link", name="Download the sealed PDF").click()
    download = info.value
    assert Path(download.path()).read_bytes() == sealed
    assert download.suggested_filename == filename
    with page.expect_download() as info:
        section.get_by_role("link", name="Audit report (PDF)").click()
    report = Path(info.value.path()).read_bytes()
    assert report.startswith(b"%PDF") and report != sealed
    assert len(audit_events(app, "envelope.document_downloaded")) == 1
    assert len(audit_events(app, "envelope.report_downloaded")) == 1
    desktop.assert_clean()
