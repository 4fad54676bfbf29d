"""Long-term seals: PAdES B-LTA with a local TSA, OCSP responder and CRLs (``ltv_services``),
checked offline by pyHanko's validator and by ``pdfsig``; renewal by the periodic job once the
clock passes the TSA certificate's expiry minus ``SEAL_RENEWAL_DAYS``, on demand by admins,
and when it fails; earlier files still verify; without a TSA the seal is B-B and says so."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfWriter

from portal import clock, storage
from portal.documents import ltv
from portal.documents.seal import check_seal, load_pkcs12, seal_pdf
from portal.envelopes import renewal, sealing
from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.conftest import audit_events
from tests.ltv_services import LocalPKI, local_pki
from tests.test_seal import make_pdf
from tests.test_sealing import _sign, _verify
from tests.test_signing import sent  # noqa: F401

PDFSIG = shutil.which("pdfsig")
TSA_DAYS = 120  # the test TSA certificate's life; renewal is due 90 days before its end


@pytest.fixture
def pki() -> Iterator[LocalPKI]:
    with local_pki(tsa_days=TSA_DAYS) as running:
        yield running


@pytest.fixture
def app(make_app, pki, tmp_path):
    """The portal sealing with the local PKI's certificate and asking its TSA."""
    return make_app(
        SEAL_PKCS12_PATH=str(pki.seal_p12(tmp_path / "seal.p12")),
        SEAL_PKCS12_PASSWORD="seal-pass",
        SEAL_TSA_URL=pki.tsa_url,
    )


def _sealed(app, sent) -> tuple[int, str, bytes]:  # noqa: F811
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.seal_status == "sealed", envelope.seal_error
        return envelope_id, public_id, storage.get(envelope.sealed_blob_id)


def _envelope(app, envelope_id: int) -> Envelope:
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        db.session.expunge(envelope)
        return envelope


def _offline_status(pdf: bytes, pki: LocalPKI):
    """pyHanko's verdict on the seal using only what the file embeds (no fetching)."""
    reader = PdfFileReader(io.BytesIO(pdf))
    dss = DocumentSecurityStore.read_dss(reader)
    context = dss.as_validation_context(
        {"trust_roots": pki.trust_roots(), "allow_fetching": False, "revocation_mode": "hard-fail"}
    )
    signature = reader.embedded_regular_signatures[-1]
    status = validate_pdf_signature(signature, context)
    stamps = [
        validate_pdf_timestamp(
            stamp,
            ValidationContext(trust_roots=pki.trust_roots(), allow_fetching=False),
        )
        for stamp in reader.embedded_timestamp_signatures
    ]
    return status, stamps, dss


def _pdfsig(pdf: bytes, tmp_path: Path) -> str:
    assert PDFSIG is not None, "pdfsig is missing: install poppler-utils"
    path = tmp_path / "sealed.pdf"
    path.write_bytes(pdf)
    done = subprocess.run([PDFSIG, str(path)], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def _assert_long_term_valid(pdf: bytes, pki: LocalPKI, tmp_path: Path) -> None:
    status, stamps, dss = _offline_status(pdf, pki)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.bottom_line
    assert dss.ocsps and dss.crls, "the seal's revocation data is embedded"
    assert stamps and all(s.intact and s.valid and s.trusted for s in stamps)
    assert check_seal(pdf).outcome == "intact"
    report = _pdfsig(pdf, tmp_path)
    first = report.split("Signature #2")[0]
    assert "Signature Field Name: PortalSeal" in first and "Signature is Valid." in first, report


# ---------------------------------------------------------------- sealing


def test_a_seal_with_a_time_stamp_service_is_b_lta_and_validates_offline(
    app,
    pki,
    sent,  # noqa: F811
    tmp_path,
):
    envelope_id, _public_id, pdf = _sealed(app, sent)
    assert pki.hits["/ocsp"] >= 1, "the seal's OCSP responder was asked"
    assert pki.hits["/crl/root.crl"] >= 1 and pki.hits["/crl/tsa.crl"] >= 1
    _assert_long_term_valid(pdf, pki, tmp_path)

    level = ltv.describe(pdf)
    assert level.level == "B-LTA" and level.document_timestamps == 1
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_level == "B-LTA"
    expires = clock.as_utc(envelope.seal_timestamp_expires)
    assert expires == pki.tsa.cert.not_valid_after_utc
    assert clock.as_utc(envelope.seal_renew_after) == expires - timedelta(days=90)
    sealed = audit_events(app, "envelope.sealed")
    assert sealed[-1].data["level"] == "B-LTA"


def test_the_envelope_page_shows_the_level_and_the_next_renewal(
    app,
    sent,  # noqa: F811
    signed_in,
):
    envelope_id, public_id, _pdf = _sealed(app, sent)
    envelope = _envelope(app, envelope_id)
    portal, _admin = signed_in("admin")
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    level = re.search(r'<dd id="seal-level">(.*?)</dd>', page, re.S).group(1)
    assert "B-LTA" in level and "Long-term archival seal" in level
    renew = re.search(r'<dd id="seal-next-renewal">(.*?)</dd>', page, re.S).group(1)
    assert f"{clock.as_utc(envelope.seal_renew_after):%Y-%m-%d}" in renew
    assert "Renew now" in page

    admin_page = portal.client.get("/admin/sealing").get_data(as_text=True)
    assert "PAdES B-LTA" in admin_page and "B-LTA: 1" in admin_page


def test_a_revoked_certificate_is_not_sealed_and_the_reason_is_shown(
    app,
    pki,
    sent,  # noqa: F811
):
    pki.revoked.add(pki.seal.cert.serial_number)
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_status == "failed"
    assert "has been revoked by its certificate authority" in envelope.seal_error
    assert audit_events(app, "envelope.seal_failed")


def test_unreachable_revocation_services_fail_the_seal_which_is_retried(
    app,
    pki,
    sent,  # noqa: F811
):
    pki.down |= {"/ocsp", "/crl/issuing.crl"}
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_status == "failed"
    assert "revocation data (CRL or OCSP) could not be fetched" in envelope.seal_error
    pki.down.clear()
    with app.app_context():
        sealing.retry(db.session.get(Envelope, envelope_id), "system")
    assert _envelope(app, envelope_id).seal_level == "B-LTA"


# ---------------------------------------------------------------- renewal


def _tick(app, runner_for, when) -> str:
    result = runner_for(app).invoke(
        args=["portal", "tick", "--now", when.strftime("%Y-%m-%dT%H:%M:%SZ")]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_renewal_job_adds_a_timestamp_before_the_tsa_certificate_expires(
    app,
    pki,
    sent,  # noqa: F811
    runner_for,
    tmp_path,
    signed_in,
):
    envelope_id, public_id, first = _sealed(app, sent)
    due = clock.as_utc(_envelope(app, envelope_id).seal_renew_after)

    output = _tick(app, runner_for, due - timedelta(days=1))
    assert "sweep_renewals: 0 due" in output
    assert _envelope(app, envelope_id).seal_renewed_at is None

    pki.roll_tsa(days=3650)  # the TSA has moved to a new certificate meanwhile
    output = _tick(app, runner_for, due + timedelta(hours=1))
    assert "sweep_renewals: 1 due" in output

    envelope = _envelope(app, envelope_id)
    assert envelope.seal_renewal_error is None and envelope.seal_renewed_at is not None
    with app.app_context():
        second = storage.get(envelope.sealed_blob_id)
        kept = renewal.versions(db.session.get(Envelope, envelope_id))
        assert [v.sha256 for v in kept] == [envelope_hash(first)]
        assert storage.get(kept[0].blob_id) == first, "the earlier file is kept"
    assert second.startswith(first), "an incremental update: the first seal is untouched"
    assert envelope.sealed_sha256 == envelope_hash(second)
    assert ltv.describe(second).document_timestamps == 2
    _assert_long_term_valid(second, pki, tmp_path)

    expires = pki.tsa.cert.not_valid_after_utc
    assert clock.as_utc(envelope.seal_timestamp_expires) == expires
    assert clock.as_utc(envelope.seal_renew_after) == expires - timedelta(days=90)
    renewed = audit_events(app, "envelope.seal_renewed")
    assert len(renewed) == 1 and renewed[0].data["previous_sha256"] == envelope_hash(first)
    assert renewed[0].data["sealed_sha256"] == envelope.sealed_sha256

    for data in (first, second):
        verdict = _verify(app, data).get_data(as_text=True)
        assert 'data-outcome="verified"' in verdict, verdict
    changed = _changed_after(second)
    assert 'data-outcome="modified"' in _verify(app, changed).get_data(as_text=True)

    portal, _admin = signed_in("admin")
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "1 earlier file kept, still verifiable" in page
    assert f"{clock.as_utc(envelope.seal_renew_after):%Y-%m-%d}" in page


def envelope_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _changed_after(data: bytes) -> bytes:
    writer = PdfWriter(io.BytesIO(data), incremental=True)
    writer.add_metadata({"/Title": "Changed after sealing"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_failed_renewal_is_shown_and_tried_again(
    app,
    pki,
    sent,  # noqa: F811
    signed_in,
    runner_for,
):
    envelope_id, public_id, _first = _sealed(app, sent)
    portal, admin = signed_in("admin")
    working = app.config["SEAL_TSA_URL"]
    app.config["SEAL_TSA_URL"] = "http://127.0.0.1:9/tsa"  # nothing listens there
    response = portal.post(f"/envelopes/{public_id}/seal/renew")
    assert response.status_code == 302
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Seal renewal failed" in page and "time-stamp service" in page
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_renewal_attempts == 1
    retry_at = clock.as_utc(envelope.seal_renew_after)
    asked = audit_events(app, "envelope.seal_renewal_asked")
    assert len(asked) == 1 and asked[0].actor_id == str(admin.id)
    assert audit_events(app, "envelope.seal_renewal_failed")[0].data["attempt"] == 1

    app.config["SEAL_TSA_URL"] = working
    _tick(app, runner_for, retry_at + timedelta(minutes=1))
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_renewal_error is None and envelope.seal_renewal_attempts == 0
    assert len(audit_events(app, "envelope.seal_renewed")) == 1


def test_renew_now_is_for_admins_only(app, sent, signed_in):  # noqa: F811
    envelope_id, public_id, _first = _sealed(app, sent)
    portal, _agent = signed_in("agent")
    assert "Renew now" not in portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert portal.post(f"/envelopes/{public_id}/seal/renew").status_code == 403
    assert _envelope(app, envelope_id).seal_renewed_at is None
    assert not audit_events(app, "envelope.seal_renewal_asked")


# ---------------------------------------------------------------- without a TSA


def test_without_a_time_stamp_service_the_seal_is_b_b_and_the_page_says_so(
    app,
    pki,
    sent,  # noqa: F811
    signed_in,
):
    app.config["SEAL_TSA_URL"] = ""
    envelope_id, public_id, pdf = _sealed(app, sent)
    assert ltv.describe(pdf).level == "B-B"
    assert not pki.hits, "nothing fetched for a basic seal"
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_level == "B-B" and envelope.seal_renew_after is None
    assert audit_events(app, "envelope.sealed")[-1].data["level"] == "B-B"
    portal, _admin = signed_in("admin")
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    level = re.search(r'<dd id="seal-level">(.*?)</dd>', page, re.S).group(1)
    assert "Basic seal (PAdES B-B)" in level and "SEAL_TSA_URL is empty" in level
    assert "Renew now" not in page and "seal-next-renewal" not in page
    admin_page = portal.client.get("/admin/sealing").get_data(as_text=True)
    assert "Seals are <strong>PAdES B-B</strong>" in admin_page
    portal.post(f"/envelopes/{public_id}/seal/renew")
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Only a long-term archival seal (PAdES B-LTA) can be renewed" in page
    assert not audit_events(app, "envelope.seal_renewal_asked")


def test_the_level_of_a_file_sealed_before_levels_were_kept_is_read_from_it(
    app,
    sent,  # noqa: F811
    runner_for,
):
    envelope_id, _public_id, _pdf = _sealed(app, sent)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        envelope.seal_level = envelope.seal_renew_after = envelope.seal_timestamp_expires = None
        db.session.commit()
    output = _tick(app, runner_for, clock.utcnow())
    assert "0 due, 1 levels read" in output
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_level == "B-LTA" and envelope.seal_renew_after is not None


# ---------------------------------------------------------------- the check


def test_the_seal_check_accepts_archive_updates_and_nothing_else(pki, tmp_path):
    identity = load_pkcs12(pki.seal_p12(tmp_path / "s.p12").read_bytes(), b"seal-pass")
    sealed = seal_pdf(
        make_pdf(), identity, field_name="PortalSeal", reason="r", tsa_url=pki.tsa_url,
        long_term=True,
    )  # fmt: skip
    assert check_seal(sealed).outcome == "intact"
    renewed = ltv.renew(sealed, ltv.timestamp_client(pki.tsa_url, timeout=5), timeout=5)
    assert check_seal(renewed).outcome == "intact"
    for changed in (_changed_after(sealed), _changed_after(renewed)):
        assert check_seal(changed).outcome == "modified"
    # A byte of the archive timestamp's signature area flipped.
    stamp = PdfFileReader(io.BytesIO(renewed)).embedded_timestamp_signatures[-1]
    start = int(stamp.byte_range[1]) + 10
    flipped = renewed[:start] + bytes([renewed[start] ^ 0x01]) + renewed[start + 1 :]
    assert check_seal(flipped).outcome == "modified"


def test_renewing_a_seal_without_a_timestamp_says_why(tmp_path, pki):
    identity = load_pkcs12(pki.seal_p12(tmp_path / "s.p12").read_bytes(), b"seal-pass")
    basic = seal_pdf(make_pdf(), identity, field_name="PortalSeal", reason="r")
    with pytest.raises(ltv.LongTermError, match="no document timestamp"):
        ltv.renew(basic, ltv.timestamp_client(pki.tsa_url, timeout=5), timeout=5)


def test_a_purge_deletes_the_earlier_sealed_files_too(app, sent):  # noqa: F811
    from portal.records import purge

    envelope_id, _public_id, _first = _sealed(app, sent)
    with app.app_context():
        assert renewal.renew_seal(envelope_id, force=True) == "renewed"
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        blobs = {envelope.sealed_blob_id, *(v.blob_id for v in renewal.versions(envelope))}
        assert len(blobs) == 2
        envelope.retention_until = clock.utcnow() - timedelta(days=1)
        db.session.commit()
        purge.purge_envelope(envelope, reason="Retention period ended", actor=None)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.purged_at is not None and envelope.sealed_blob_id is None
        assert [v.blob_id for v in renewal.versions(envelope)] == [None]
        assert all(db.session.get(storage.Blob, blob_id) is None for blob_id in blobs)


def test_describe_names_each_level(pki, tmp_path):
    identity = load_pkcs12(pki.seal_p12(tmp_path / "s.p12").read_bytes(), b"seal-pass")

    def level(**kwargs):
        sealed = seal_pdf(make_pdf(1), identity, field_name="PortalSeal", reason="r", **kwargs)
        return ltv.describe(sealed).level

    assert level() == "B-B"
    assert level(tsa_url=pki.tsa_url) == "B-T"
    assert level(tsa_url=pki.tsa_url, long_term=True) == "B-LTA"
    assert ltv.describe(make_pdf(1)).level is None
    with pytest.raises(ltv.LongTermError, match="could not be read"):
        ltv.describe(b"not a pdf")


def test_a_tsa_still_on_its_expiring_certificate_is_asked_again_daily(
    app,
    sent,  # noqa: F811
    runner_for,
):
    envelope_id, _public_id, _first = _sealed(app, sent)
    due = clock.as_utc(_envelope(app, envelope_id).seal_renew_after)
    moment = due + timedelta(hours=1)
    assert "sweep_renewals: 1 due" in _tick(app, runner_for, moment)
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_renewed_at is not None, "renewed, with the same TSA certificate"
    assert abs(clock.as_utc(envelope.seal_renew_after) - (moment + timedelta(days=1))) < timedelta(
        minutes=5
    )
    clock.travel_to(moment + timedelta(hours=2))
    try:
        with app.app_context():
            warning = renewal.renewal_warning(db.session.get(Envelope, envelope_id))
    finally:
        clock.reset()
    assert warning is not None and "tried again every day" in warning
