"""The PDFs the portal hands out carry their real creation and modification dates (never
reportlab's invariant 2000-01-01) and an XMP packet with title, producer and dates: the sealed
document (stamped pages and certificate of completion), the audit report and the compliance
report."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from pypdf import PdfReader

from portal import clock, storage
from portal.documents import keystore, pdfmeta
from portal.documents.certificate import render_certificate
from portal.envelopes import sealing
from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.conftest import audit_events
from tests.test_seal import make_pdf
from tests.test_sealing import _sign
from tests.test_signing import sent  # noqa: F401

MINUTE = timedelta(minutes=1)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _assert_dated(pdf: bytes, around: datetime, title: str) -> None:
    reader = PdfReader(io.BytesIO(pdf))
    info = reader.metadata
    assert info is not None
    created, modified = info.creation_date, info.modification_date
    assert created is not None and modified is not None
    assert created.year != 2000 and abs(_aware(created) - around) < MINUTE, created
    assert abs(_aware(modified) - around) < MINUTE, modified
    xmp = reader.xmp_metadata
    assert xmp is not None, "an XMP packet"
    assert xmp.dc_title == {"x-default": title}
    # The info dictionary names the portal and pyHanko (which wrote the seal's update);
    # pyHanko writes its own name as the XMP producer of that update.
    assert str(info["/Producer"]).startswith(pdfmeta.PRODUCER)
    assert xmp.pdf_producer and "pyHanko" in xmp.pdf_producer
    for value in (xmp.xmp_create_date, xmp.xmp_modify_date):
        assert value is not None and abs(_aware(value) - around) < MINUTE, value


def test_the_sealed_document_is_dated_and_described(app, sent):  # noqa: F811
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.seal_status == "sealed", envelope.seal_error
        pdf = storage.get(envelope.sealed_blob_id)
        sealed_at = clock.as_utc(envelope.sealed_at)
        title = envelope.title
    _assert_dated(pdf, sealed_at, title)
    info = PdfReader(io.BytesIO(pdf)).metadata
    assert info["/PortalEnvelope"] == public_id, "the portal's own keys are kept"
    assert info["/Subject"] == f"Signed and sealed; envelope {public_id}"


def test_the_audit_report_is_dated_and_described(app, sent, signed_in):  # noqa: F811
    _envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    portal, _agent = signed_in("agent")
    response = portal.client.get(f"/envelopes/{public_id}/audit-report.pdf")
    assert response.status_code == 200
    reader = PdfReader(io.BytesIO(response.data))
    title = str(reader.metadata["/Title"])
    assert title.startswith("Audit report") and public_id in title
    _assert_dated(response.data, clock.utcnow(), title)
    downloaded = audit_events(app, "envelope.report_downloaded")
    assert downloaded[-1].data["seal_level"] == "B-B"


def test_the_compliance_report_is_dated_and_described(app, sent, signed_in):  # noqa: F811
    sent()
    portal, _officer = signed_in("compliance")
    response = portal.client.get("/records/report.pdf?period=today&scope=all")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    title = str(PdfReader(io.BytesIO(response.data)).metadata["/Title"])
    assert "Compliance report" in title
    _assert_dated(response.data, clock.utcnow(), title)
    assert audit_events(app, "records.exported")[-1].data["seal_level"] == "B-B"


def test_a_report_rendered_under_a_moved_clock_takes_the_clock_s_date(app):
    moment = datetime(2031, 3, 4, 10, 30, tzinfo=UTC)
    with app.app_context():
        keystore.identity()  # the development certificate, made now (valid for ten years)
        db.session.commit()
    clock.travel_to(moment)
    try:
        with app.app_context():
            sealed = sealing.seal_report(make_pdf(1), "Test report")
            db.session.commit()
    finally:
        clock.reset()
    info = PdfReader(io.BytesIO(sealed)).metadata
    assert _aware(info.creation_date) == moment
    assert PdfReader(io.BytesIO(sealed)).xmp_metadata.xmp_create_date.replace(tzinfo=UTC) == moment


def test_the_certificate_alone_stays_the_same_for_the_same_input(app, sent):  # noqa: F811
    """Dating happens when a file is handed out; rendering stays reproducible."""
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        facts = sealing.evidence(envelope)
        assert render_certificate(facts) == render_certificate(facts)
