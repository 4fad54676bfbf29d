"""The certificate of completion / audit report PDF (portal.documents.certificate).

Plain unit tests: no app, no database. Page 1 and the last page are rendered to
tests/artifacts/certificate-page1.png and certificate-last.png for a person to look at.
"""

from __future__ import annotations

import dataclasses
import io
import re
import time
from datetime import UTC, datetime, timedelta

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw
from pypdf import PdfReader

from portal.documents.certificate import (
    INTERIM_LABEL,
    AttachmentEvidence,
    CertificateData,
    PartyEvidence,
    RecipientEvidence,
    TimelineEntry,
    format_utc,
    render_certificate,
)
from tests.conftest import ARTIFACTS

T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
ORIGINAL = "3f6c0b1e9a2d4c5b8e7f60a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6"
SEALED = "c0ffee00d15ea5e5b16b00b5feedfacecafebabe0123456789abcdef01234567"
ATTACHMENT = "a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00"
INJECTION = '<b>Eve</b> & "Mallory" <script>'
LONG_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0 SomeEnterpriseToolbar/7.4.2.1+build."
    "20261126-x86_64-very-long-token-without-spaces-abcdefghijklmnopqrstuvwxyz0123456789"
)
CONSENT_TEXT = (
    "You agree to receive this contract and related notices electronically.\n\n"
    "You may ask for a paper copy at any time by writing to Customer Care; "
    "withdrawing consent ends electronic signing for this envelope."
)


def _signature_png() -> bytes:
    """A black stroke on a transparent background, as the signing pad produces."""
    image = Image.new("RGBA", (600, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    points = [(30 + x * 9, 110 + int(45 * ((-1) ** x) * (x % 5) / 5)) for x in range(60)]
    draw.line(points, fill=(0, 0, 0, 255), width=6, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _recipients(png: bytes) -> list[RecipientEvidence]:
    anna = RecipientEvidence(
        name="Anna Kowalska",
        email="anna.kowalska@example.com",
        role_name="Customer",
        kind="signer",
        order=1,
        status="signed",
        auth_method="email_otp",
        auth_result="Email code verified",
        adoption="drawn",
        signature_png=png,
        typed_signature=None,
        ip="203.0.113.7",
        user_agent=LONG_UA,
        sent_at=_at(1),
        viewed_at=_at(4.5),
        consented_at=_at(5.25),
        consent_version="2026-03",
        authenticated_at=_at(6),
        finished_at=_at(9.75),
        decline_reason=None,
        comment=None,
    )
    zoe = RecipientEvidence(
        name="Zoë Łukasiewicz-Παπαδοπούλου",
        email="zoe@example.eu",
        role_name="Co-signer",
        kind="signer",
        order=2,
        status="signed",
        auth_method="access_code",
        auth_result="Access code accepted after 1 wrong attempt",
        adoption="typed",
        signature_png=None,
        typed_signature="Zoë Łukasiewicz-Παπαδοπούλου",
        ip="2001:db8:85a3::8a2e:370:7334",
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148",
        sent_at=_at(10),
        viewed_at=_at(31),
        consented_at=_at(32),
        consent_version="2026-03",
        authenticated_at=_at(31.5),
        finished_at=_at(36),
        decline_reason=None,
        comment=None,
    )
    jose = RecipientEvidence(
        name="José Muñoz",
        email="jose.munoz@example.es",
        role_name="Team lead",
        kind="approver",
        order=3,
        status="approved",
        auth_method="link",
        auth_result="Link only",
        adoption=None,
        signature_png=None,
        typed_signature=None,
        ip="198.51.100.23",
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        sent_at=_at(37),
        viewed_at=_at(60),
        consented_at=_at(61),
        consent_version="2026-03",
        authenticated_at=_at(60.5),
        finished_at=_at(63),
        decline_reason=None,
        comment="Refund amount checked against ticket #4471 & approved.",
    )
    eve = RecipientEvidence(
        name=INJECTION,
        email="eve@example.org",
        role_name="Account owner",
        kind="cc",
        order=4,
        status="copied",
        auth_method="link",
        auth_result="Link only",
        adoption=None,
        signature_png=None,
        typed_signature=None,
        ip=None,
        user_agent=None,
        sent_at=_at(64),
        viewed_at=None,
        consented_at=None,
        consent_version=None,
        authenticated_at=None,
        finished_at=_at(64.5),
        decline_reason=None,
        comment=None,
    )
    return [anna, zoe, jose, eve]


_EVENTS = (
    ("Email delivered", "Mail server accepted the message"),
    ("Viewed", "Opened the signing page"),
    ("Reminder sent", "Automatic reminder"),
    ("Field completed", "Filled in a form field"),
    ("Page viewed", "Scrolled through the document"),
)


def _timeline(count: int) -> list[TimelineEntry]:
    entries = [TimelineEntry(T0, "Envelope created", "Maria Agent", "192.0.2.10", "From template")]
    for index in range(1, count):
        event, detail = _EVENTS[index % len(_EVENTS)]
        entries.append(
            TimelineEntry(
                at=T0 + timedelta(seconds=47 * index + index % 7),
                event=f"{event} #{index:02d}",
                actor=("Anna Kowalska", "Zoë Łukasiewicz-Παπαδοπούλου", "System")[index % 3],
                ip=None if index % 3 == 2 else f"203.0.113.{index}",
                detail=f"{detail} (ref T-{index:03d})",
            )
        )
    return entries


def _data(**changes: object) -> CertificateData:
    png = _signature_png()
    data = CertificateData(
        envelope_id="ENV-7Q2K9X",
        title="Refund authorization ORD-104233",
        page_count=10,
        template_name="Refund authorization",
        template_version=3,
        status="completed",
        created_at=_at(0),
        completed_at=_at(64.5),
        original_sha256=ORIGINAL,
        sealed_sha256=None,
        sender=PartyEvidence("Maria Agent", "maria.agent@care.example.com", "192.0.2.10"),
        recipients=_recipients(png),
        consent_text=CONSENT_TEXT,
        consent_version="2026-03",
        cc_deliveries=[(INJECTION, "eve@example.org", _at(64.5))],
        attachments=[
            AttachmentEvidence("Proof of purchase", "receipt-0412.pdf", ATTACHMENT, 184_320),
        ],
        timeline=_timeline(80),
        generated_at=_at(65),
        organisation="Customer Care",
    )
    return dataclasses.replace(data, **changes) if changes else data


def _pages(pdf: bytes) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages]


def _flat(text: str) -> str:
    """Whitespace collapsed, so text wrapped over lines still matches."""
    return " ".join(text.split())


def _bare(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def certificate() -> bytes:
    return render_certificate(_data())


@pytest.fixture(scope="module")
def pages(certificate: bytes) -> list[str]:
    return _pages(certificate)


def test_times_are_formatted_in_utc():
    assert format_utc(datetime(2026, 11, 26, 14, 3, 22, tzinfo=UTC)) == "2026-11-26 14:03:22 UTC"
    naive = datetime(2026, 11, 26, 14, 3, 22)  # as SQLite returns them: taken as UTC
    assert format_utc(naive) == "2026-11-26 14:03:22 UTC"
    from zoneinfo import ZoneInfo

    warsaw = datetime(2026, 11, 26, 15, 3, 22, tzinfo=ZoneInfo("Europe/Warsaw"))
    assert format_utc(warsaw) == "2026-11-26 14:03:22 UTC"
    assert format_utc(None) == "—"


def test_certificate_has_every_required_item(certificate: bytes, pages: list[str]):
    data = _data()
    text = _flat("\n".join(pages))
    bare = _bare(text)
    assert certificate.startswith(b"%PDF")

    assert "Certificate of completion" in pages[0]
    assert "Customer Care" in pages[0]
    for item in (
        "ENV-7Q2K9X",
        "Refund authorization ORD-104233",
        "Refund authorization (version 3)",
        "Pages 10",
        "All times in this report are in Coordinated Universal Time (UTC)",
        "Completed",
    ):
        assert item in text, item
    assert ORIGINAL in bare
    assert SEALED not in bare
    assert "a file cannot contain its own hash" in text

    for item in ("Maria Agent", "maria.agent@care.example.com", "192.0.2.10"):
        assert item in text, item

    for r in data.recipients:
        for item in (r.name, r.email, r.role_name):
            assert item in text, (r.name, item)
        if r.ip:
            assert r.ip in text
        if r.user_agent:
            assert _bare(r.user_agent) in bare, r.user_agent
        assert r.auth_result in text
        for moment in (r.sent_at, r.viewed_at, r.consented_at, r.authenticated_at, r.finished_at):
            if moment is not None:
                assert format_utc(moment) in text, (r.name, moment)
    for item in (
        "Signer",
        "Approver",
        "Copy recipient (cc)",
        "Routing order 1",
        "Routing order 2",
        "Routing order 3",
        "Routing order 4",
        "One-time code by email",
        "Access code",
        "Emailed signing link",
        "Signature adoption: Drawn by hand",
        "Signature adoption: Typed name",
        "Signed 2026-11-26 09:09:45 UTC",
        "Approved 2026-11-26 10:03:00 UTC",
        "Comment: Refund amount checked against ticket #4471 & approved.",
        "Zoë Łukasiewicz-Παπαδοπούλου",
        "José Muñoz",
    ):
        assert item in text, item

    assert "Disclosure version 2026-03" in text
    for block in CONSENT_TEXT.split("\n\n"):
        assert block in text, block
    consent = text[text.index("Consent to electronic records") :]
    for name in ("Anna Kowalska", "Zoë Łukasiewicz-Παπαδοπούλου", "José Muñoz"):
        assert name in consent
    assert format_utc(_at(5.25)) in consent and format_utc(_at(61)) in consent

    cc = text[text.index("Copies delivered (CC)") :]
    assert INJECTION in cc and "eve@example.org" in cc and format_utc(_at(64.5)) in cc

    attachments = text[text.index("Attachments") :]
    assert "Proof of purchase" in attachments and "receipt-0412.pdf" in attachments
    assert "180.0 KB (184,320 bytes)" in attachments
    assert ATTACHMENT in _bare(attachments)

    timeline = text[text.index("Event timeline") :]
    rows = _bare(timeline)  # narrow columns may wrap a name or detail over two lines
    for entry in data.timeline:
        assert format_utc(entry.at) in timeline, entry.at
        row = [format_utc(entry.at), entry.event, entry.actor, entry.ip or "—", entry.detail]
        assert "".join(_bare(cell) for cell in row) in rows, row
    # Every time string printed anywhere says UTC.
    stamps = re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?: UTC)?", text)
    assert len(stamps) > 80 and all(s.endswith(" UTC") for s in stamps)
    assert "Interim" not in text


def test_markup_in_caller_text_is_printed_literally(pages: list[str]):
    text = _flat("\n".join(pages))
    assert text.count(INJECTION) == 2  # recipient card and CC deliveries, never interpreted
    assert "Eve & " not in text.replace(INJECTION, "")


def test_drawn_signature_is_embedded_with_transparency(certificate: bytes):
    reader = PdfReader(io.BytesIO(certificate))
    images = []
    for page in reader.pages:
        xobjects = page["/Resources"].get("/XObject")
        if xobjects is None:
            continue
        for ref in xobjects.get_object().values():
            obj = ref.get_object()
            if obj.get("/Subtype") == "/Image":
                images.append(obj)
    assert len(images) == 1
    assert (images[0]["/Width"], images[0]["/Height"]) == (600, 200)
    assert "/SMask" in images[0]  # transparent background kept
    assert any(len(page.images) for page in reader.pages)


def test_typed_signature_uses_a_script_like_font(certificate: bytes):
    fonts = set()
    for page in PdfReader(io.BytesIO(certificate)).pages:
        for font in page["/Resources"]["/Font"].get_object().values():
            fonts.add(str(font.get_object().get("/BaseFont")))
    assert any("Serif-Italic" in f or "Oblique" in f for f in fonts), fonts


def test_footer_numbers_every_page(pages: list[str]):
    total = len(pages)
    assert total >= 3
    for number, text in enumerate(pages, start=1):
        footer = f"Certificate of completion · ENV-7Q2K9X · page {number} of {total}"
        assert footer in _flat(text), (number, text[-200:])


def test_timeline_splits_over_pages_with_its_header_repeated(pages: list[str]):
    with_rows = [text for text in pages if re.search(r"ref T-\d{3}", text)]
    assert len(with_rows) >= 2
    for text in with_rows:
        assert "Time (UTC) Event Actor IP address Detail" in _flat(text)
    header = "Time (UTC) Event Actor IP address Detail"
    assert sum(header in _flat(text) for text in pages) == len(with_rows)


def test_audit_report_states_the_sealed_hash():
    pages = _pages(render_certificate(_data(sealed_sha256=SEALED)))
    text = _flat("\n".join(pages))
    assert "Audit report" in pages[0]
    assert SEALED in _bare(text) and ORIGINAL in _bare(text)
    assert "SHA-256 of the sealed PDF file delivered to the parties" in text
    assert "Interim" not in text


def test_interim_report_is_labelled_on_every_page():
    data = _data(
        interim=True,
        status="sent",
        completed_at=None,
        recipients=[
            dataclasses.replace(r, status="viewed", finished_at=None) if r.order == 3 else r
            for r in _data().recipients
        ],
    )
    pages = _pages(render_certificate(data))
    assert len(pages) >= 2
    assert "Interim audit report" in pages[0]
    for text in pages:
        assert INTERIM_LABEL in text
    text = _flat("\n".join(pages))
    assert "In progress" in text and "Not completed" in text
    assert "Not sealed yet" in text
    assert "Opened, not finished yet" in text


def test_declined_envelope_shows_the_reason():
    reason = "The refund amount is wrong <see ticket #12> & the date too."
    recipients = list(_data().recipients)
    recipients[2] = dataclasses.replace(
        recipients[2], status="declined", decline_reason=reason, comment=None
    )
    pages = _pages(render_certificate(_data(status="declined", recipients=recipients)))
    text = _flat("\n".join(pages))
    assert f"Reason for declining: {reason}" in text
    assert "Declined 2026-11-26 10:03:00 UTC" in text
    assert "Declined: no signature" in text
    assert "Not printed here: a file cannot contain its own hash" in text


def test_interim_report_of_a_declined_envelope_says_it_ended():
    recipients = list(_data().recipients)
    recipients[2] = dataclasses.replace(recipients[2], status="declined", decline_reason="No.")
    data = _data(status="declined", completed_at=None, interim=True, recipients=recipients)
    pages = _pages(render_certificate(data))
    assert all(INTERIM_LABEL in text for text in pages)
    text = _flat("\n".join(pages))
    assert "Not sealed: the envelope was declined before every recipient finished." in text
    assert "Status Declined" in text


def test_sparse_evidence_still_renders():
    bare = _data(
        recipients=[],
        cc_deliveries=[],
        attachments=[],
        timeline=[],
        consent_text="",
        sender=PartyEvidence("Maria Agent", "maria.agent@care.example.com", None),
    )
    text = _flat("\n".join(_pages(render_certificate(bare))))
    for item in ("No recipients.", "No copy recipients.", "No attachments", "No events recorded"):
        assert item in text
    broken = dataclasses.replace(_data().recipients[0], signature_png=b"not a png")
    text = _flat("\n".join(_pages(render_certificate(_data(recipients=[broken])))))
    assert "Drawn signature image could not be read" in text


def test_rendering_is_deterministic(certificate: bytes):
    assert render_certificate(_data()) == certificate


def test_nothing_is_drawn_in_the_side_margins(certificate: bytes):
    """Long user agents, IPv6 addresses and hashes wrap instead of running off the page."""
    document = pdfium.PdfDocument(certificate)
    try:
        for index in range(len(document)):
            image = document[index].render(scale=1).to_pil().convert("L")
            width, height = image.size
            margin = int(18 / 25.4 * 72) - 3
            for box in ((0, 0, margin, height), (width - margin, 0, width, height)):
                lo, _ = image.crop(box).getextrema()
                assert lo > 245, (index + 1, box)
    finally:
        document.close()


def test_render_speed():
    data = _data(recipients=_data().recipients[:2], timeline=_timeline(60))
    render_certificate(data)  # fonts and styles warmed up
    started = time.perf_counter()
    for _ in range(3):
        render_certificate(data)
    elapsed = (time.perf_counter() - started) / 3
    assert elapsed < 0.5, f"{elapsed * 1000:.0f} ms per certificate"


def test_certificate_artifacts(certificate: bytes):
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "certificate.pdf").write_bytes(certificate)
    document = pdfium.PdfDocument(certificate)
    try:
        first = document[0].render(scale=1.5).to_pil()
        last = document[len(document) - 1].render(scale=1.5).to_pil()
    finally:
        document.close()
    first.save(ARTIFACTS / "certificate-page1.png")
    last.save(ARTIFACTS / "certificate-last.png")
    assert first.size == (893, 1263)
