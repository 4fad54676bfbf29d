"""Sealing a completed envelope: stamped values, certificate of completion, PAdES seal, copies,
downloads, the verify page and CLI, failures, retries, the sweeper and start-up checks."""

from __future__ import annotations

import email
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from pypdf import PdfReader, PdfWriter
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import select

from portal import clock, jobs, storage
from portal.config import ConfigError
from portal.documents import seal
from portal.documents.seal import SealingError, check_seal
from portal.envelopes import sealing
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library.models import Field
from portal.mail import Message, build_email
from tests.conftest import Portal, audit_events, demo_agent, demo_template, write_p12
from tests.test_documents import good_pdf
from tests.test_seal import mismatched_pkcs12
from tests.test_signing import _csrf, _path, sent  # noqa: F401
from tests.test_signing_rules import _data_url, _png

ARTIFACTS = Path(__file__).parent / "artifacts"
ROOT = Path(__file__).resolve().parents[1]
SEAL_JOB = "portal.envelopes.sealing:seal_envelope"


def _sign(app, link, public_id, adoption="drawn", name="Zoë Łukasiewicz"):
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    data = {"csrf_token": token, "adoption": adoption, "agree": "yes"}
    if adoption == "drawn":
        data["drawing"] = _data_url(_png())
    else:
        data["typed_name"] = name
    done = client.post(f"/sign/{public_id}/sign", data=data)
    assert done.status_code == 302, done.get_data(as_text=True)
    return client


def _envelope(app, envelope_id) -> Envelope:
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        db.session.expunge(envelope)
        return envelope


def _sealed_bytes(app, envelope_id) -> bytes:
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.seal_status == "sealed", envelope.seal_error
        return storage.get(envelope.sealed_blob_id)


def _sealed_blobs(app) -> int:
    with app.app_context():
        return len(
            db.session.execute(select(storage.Blob.id).where(storage.Blob.kind == "sealed_pdf"))
            .scalars()
            .all()
        )


def _failing(*_args, **_kwargs):
    raise SealingError("The time-stamp authority did not answer.")


@pytest.fixture
def sealed(app, sent):  # noqa: F811
    """A demo refund signed with a drawn signature and sealed: (envelope id, public id, bytes)."""
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    return envelope_id, public_id, _sealed_bytes(app, envelope_id)


def test_completion_seals_stamps_every_value_and_sends_the_copy(app, sealed):
    envelope_id, public_id, data = sealed
    check = check_seal(data)
    assert check.outcome == "intact"
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        assert envelope.sealed_sha256 == hashlib.sha256(data).hexdigest()
        assert envelope.sealed_size == len(data)
        assert envelope.seal_cert_sha256 == check.signer_fingerprint
        assert envelope.sealed_path.startswith(f"Customer Documents/{envelope.finished_at.year}/")
        fields = {
            f.key: f
            for f in db.session.execute(
                select(Field).where(Field.version_id == envelope.template_version_id)
            ).scalars()
        }
        page_count, original_sha = envelope.page_count, envelope.original_sha256
        messages = list(db.session.execute(select(Message).order_by(Message.id)).scalars())
        copy = next(m for m in messages if m.kind == "completed")
        assert copy.to_address == "zoe@example.com" and copy.attachment_blob_id
        mime = email.message_from_bytes(build_email(copy).as_bytes())
        attached = [p for p in mime.walk() if p.get_content_type() == "application/pdf"]
        assert attached and attached[0].get_payload(decode=True) == data
        assert "is attached" in copy.text_body and "/verify" in copy.text_body
        notice = [m for m in messages if m.kind == "notice"]
        assert [m.to_address for m in notice] == ["agent@demo.example"]
        assert "sealed" in notice[0].subject.lower()
    events = audit_events(app, "envelope.sealed")
    assert len(events) == 1
    assert events[0].data["sealed_sha256"] == hashlib.sha256(data).hexdigest()
    assert events[0].data["original_sha256"] == original_sha

    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) > page_count, "certificate pages are appended"
    document = pdfium.PdfDocument(data)
    for key, expected in (("full_name", "Zoë Łukasiewicz"), ("date_signed", "20")):
        item = fields[key]
        textpage = document[item.page - 1].get_textpage()
        found = textpage.get_text_bounded(
            left=item.x - 1, bottom=item.y - 1, right=item.x + item.w + 1, top=item.y + item.h + 1
        )
        assert expected in found, (key, found)
    signature = fields["customer_signature"]
    page = document[signature.page - 1]
    scale = 2
    image = page.render(scale=scale).to_pil().convert("L")
    box = page.get_mediabox()
    left = int((signature.x - box[0]) * scale)
    top = int((box[3] - signature.y - signature.h) * scale)
    inside = image.crop(
        (left, top, left + int(signature.w * scale), top + int(signature.h * scale))
    )
    assert inside.getextrema()[0] < 128, "the drawn signature is inked inside its field"
    certificate = "\n".join(
        reader.pages[i].extract_text() for i in range(page_count, len(reader.pages))
    )
    squeezed = re.sub(r"\s+", "", certificate)
    for item in (public_id, original_sha, "zoe@example.com", "agent@demo.example", "UTC"):
        assert item in squeezed, item
    assert "Zoë Łukasiewicz" in certificate and "Certificate of completion" in certificate
    ARTIFACTS.mkdir(exist_ok=True)
    for index in (signature.page - 1, page_count):
        document[index].render(scale=1.5).to_pil().save(ARTIFACTS / f"sealed-page{index + 1}.png")
    (ARTIFACTS / "sealed-demo.pdf").write_bytes(data)


def test_sealed_file_passes_an_independent_check(tmp_path, sealed):
    path = tmp_path / "sealed.pdf"
    path.write_bytes(sealed[2])
    result = subprocess.run(
        ["pdfsig", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Signature is Valid" in result.stdout, result.stdout + result.stderr


def test_asking_twice_seals_once(app, sealed):
    envelope_id, _public_id, data = sealed
    with app.app_context():
        assert jobs.execute(SEAL_JOB, envelope_id) == "nothing to do"
    assert _sealed_bytes(app, envelope_id) == data
    assert len(audit_events(app, "envelope.sealed")) == 1 and _sealed_blobs(app) == 1


def test_two_seal_jobs_at_once_store_one_result(app, sent, monkeypatch):  # noqa: F811
    monkeypatch.setattr(sealing, "seal_pdf", _failing)
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    monkeypatch.undo()
    barrier = threading.Barrier(2)
    results: list[str] = []

    def run() -> None:
        barrier.wait()
        with app.app_context():
            results.append(jobs.execute(SEAL_JOB, envelope_id))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert "sealed" in results and len(results) == 2
    assert len(audit_events(app, "envelope.sealed")) == 1 and _sealed_blobs(app) == 1


def test_a_failure_is_shown_with_its_reason_and_can_be_retried(app, sent, signed_in, monkeypatch):  # noqa: F811
    monkeypatch.setattr(sealing, "seal_pdf", _failing)
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    envelope = _envelope(app, envelope_id)
    assert envelope.status == "completed" and envelope.seal_status == "failed"
    assert "time-stamp authority did not answer" in envelope.seal_error
    failed = audit_events(app, "envelope.seal_failed")
    assert len(failed) == 1 and "time-stamp" in failed[0].data["reason"]
    with app.app_context():
        assert not db.session.execute(select(Message).where(Message.kind == "completed")).first()
    portal, _agent = signed_in("agent")
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Sealing failed" in page and "time-stamp authority did not answer" in page
    assert "Retry sealing" in page
    monkeypatch.undo()
    retried = portal.post(f"/envelopes/{public_id}/seal/retry")
    assert retried.status_code == 302
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Download the sealed PDF" in page and "Retry sealing" not in page
    assert 'role="alert"><strong>Sealing failed' not in page and "badge-danger" not in page
    # The failure stays in the envelope's history, followed by the retry and the seal.
    history = [page.index(t) for t in ("Sealing failed", "Sealing retried", "Document sealed")]
    assert history == sorted(history)
    assert audit_events(app, "envelope.seal_retried") and _sealed_blobs(app) == 1
    again = portal.post(f"/envelopes/{public_id}/seal/retry")
    assert again.status_code == 302 and len(audit_events(app, "envelope.sealed")) == 1


def test_the_sweeper_seals_what_is_still_unsealed(app, sent, monkeypatch, runner_for):  # noqa: F811
    monkeypatch.setattr(sealing, "seal_pdf", _failing)
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    monkeypatch.undo()
    with app.app_context():
        assert jobs.execute("portal.envelopes.sealing:sweep_unsealed") == "0 asked again"
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(minutes=6))
    with app.app_context():
        result = runner_for(app).invoke(args=["portal", "tick"])
    assert "sweep_unsealed: 1 asked again" in result.output
    assert _envelope(app, envelope_id).seal_status == "sealed"


def test_the_sweeper_gives_up_after_five_tries(app, sent, monkeypatch):  # noqa: F811
    monkeypatch.setattr(sealing, "seal_pdf", _failing)
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    real = clock.utcnow
    for step in range(1, 8):
        monkeypatch.setattr(clock, "utcnow", lambda step=step: real() + timedelta(minutes=6 * step))
        with app.app_context():
            jobs.execute("portal.envelopes.sealing:sweep_unsealed")
    envelope = _envelope(app, envelope_id)
    assert envelope.seal_status == "failed" and envelope.seal_attempts == 5


def test_staff_download_the_sealed_pdf_and_the_audit_report(app, sealed, signed_in, make_staff):
    _envelope_id, public_id, data = sealed
    portal, _agent = signed_in("agent")
    download = portal.client.get(f"/envelopes/{public_id}/sealed.pdf")
    assert download.status_code == 200 and download.data == data
    assert download.headers["Content-Disposition"].startswith("attachment;")
    report = portal.client.get(f"/envelopes/{public_id}/audit-report.pdf")
    assert report.status_code == 200 and report.data.startswith(b"%PDF")
    text = re.sub(
        r"\s+", "", "".join(p.extract_text() for p in PdfReader(io.BytesIO(report.data)).pages)
    )
    assert hashlib.sha256(data).hexdigest() in text and "Auditreport" in text
    viewed = audit_events(app, "envelope.document_downloaded")
    assert len(viewed) == 1 and viewed[0].actor_type == "user"
    assert audit_events(app, "envelope.report_downloaded")
    outsider = Portal(app, app.test_client())
    assert outsider.sign_in(make_staff("agent", team="Billing")).status_code == 302
    assert outsider.client.get(f"/envelopes/{public_id}/sealed.pdf").status_code == 404


def test_an_envelope_in_progress_has_an_interim_report(app, sent, signed_in):  # noqa: F811
    _envelope_id, public_id, _link = sent()
    portal, _agent = signed_in("compliance")
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert "Interim audit report" in page and "Download the sealed PDF" not in page
    report = portal.client.get(f"/envelopes/{public_id}/audit-report.pdf")
    first = PdfReader(io.BytesIO(report.data)).pages[0].extract_text()
    assert "Interim" in first
    assert portal.client.get(f"/envelopes/{public_id}/sealed.pdf").status_code == 302


def test_large_copies_are_sent_as_a_link_that_expires(app, sent, monkeypatch):  # noqa: F811
    app.config["COPY_ATTACH_MAX_MB"] = 0.001
    envelope_id, public_id, link = sent()
    _sign(app, link, public_id)
    data = _sealed_bytes(app, envelope_id)
    with app.app_context():
        copy = db.session.execute(select(Message).where(Message.kind == "completed")).scalar_one()
        assert copy.attachment_blob_id is None
        url = re.search(r"http://\S+/copy/\S+", copy.text_body).group(0)
    client = app.test_client()
    got = client.get(_path(url))
    assert got.status_code == 200 and got.data == data
    assert audit_events(app, "recipient.copy_downloaded")
    token = url.rsplit("/", 1)[1]
    forged = token.replace(token[2], "A" if token[2] != "A" else "B", 1)
    assert client.get(f"/copy/{forged}").status_code == 410
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(days=8))
    late = client.get(_path(url))
    assert late.status_code == 410 and "no longer works" in late.get_data(as_text=True)


# ---------------------------------------------------------------- verify


def _verify(app, data: bytes, name="document.pdf"):
    client = app.test_client()
    token = _csrf(client, "/verify")
    return client.post(
        "/verify",
        data={"csrf_token": token, "document": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def _incremental_update(data: bytes) -> bytes:
    writer = PdfWriter(io.BytesIO(data), incremental=True)
    writer.add_metadata({"/Title": "Changed after sealing"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _flip_in_stream(data: bytes) -> bytes:
    at = data.index(b"stream", 200) + 40
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_verify_page_knows_its_sealed_documents(app, sealed):
    _envelope_id, public_id, data = sealed
    page = _verify(app, data)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-outcome="verified"' in text
    assert "unchanged since" in text and public_id in text
    assert "z***@example.com" in text and "zoe@example.com" not in text
    assert "Zoë Łukasiewicz" in text and "€42.00" not in text, "names only, nothing more"


def test_verify_page_reports_changes_after_sealing(app, sealed):
    _envelope_id, public_id, data = sealed
    for changed in (_flip_in_stream(data), _incremental_update(data)):
        assert changed != data
        text = _verify(app, changed).get_data(as_text=True)
        assert 'data-outcome="modified"' in text, text[-2000:]
        assert "Modified after sealing" in text and public_id not in text


def test_verify_page_refuses_what_is_not_ours_or_not_a_pdf(app, sealed):
    assert 'data-outcome="unknown"' in _verify(app, good_pdf()).get_data(as_text=True)
    not_pdf = _verify(app, b"hello, I am a text file", "notes.txt").get_data(as_text=True)
    assert 'data-outcome="unreadable"' in not_pdf and "not a PDF" in not_pdf
    broken = _verify(app, sealed[2][:3000]).get_data(as_text=True)
    assert 'data-outcome="verified"' not in broken
    client = app.test_client()
    empty = client.post("/verify", data={"csrf_token": _csrf(client, "/verify")})
    assert empty.status_code == 400 and "Choose the PDF file" in empty.get_data(as_text=True)


def test_verify_pdf_cli_exit_codes(app, sealed, runner_for, tmp_path):
    good = tmp_path / "good.pdf"
    good.write_bytes(sealed[2])
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(_flip_in_stream(sealed[2]))
    with app.app_context():
        ok = runner_for(app).invoke(args=["portal", "verify-pdf", str(good)])
        assert ok.exit_code == 0 and "VERIFIED" in ok.output and sealed[1] in ok.output
        changed = runner_for(app).invoke(args=["portal", "verify-pdf", str(bad)])
        assert changed.exit_code == 1 and "MODIFIED" in changed.output
        missing = runner_for(app).invoke(args=["portal", "verify-pdf", str(tmp_path / "no.pdf")])
        assert missing.exit_code == 1


# ---------------------------------------------------------------- certificate


def test_admin_page_shows_the_development_certificate(app, signed_in, make_staff):
    portal, _admin = signed_in("admin")
    page = portal.client.get("/admin/sealing").get_data(as_text=True)
    assert "Self-signed, generated for development" in page
    assert "identity as unknown" in page and "days left" in page
    agent = Portal(app, app.test_client())
    assert agent.sign_in(make_staff("agent")).status_code == 302
    assert agent.client.get("/admin/sealing").status_code == 403


def test_admin_page_warns_before_a_configured_certificate_expires(make_app, tmp_path, make_staff):
    path = write_p12(tmp_path / "seal.p12", days=12)
    app = make_app(SEAL_PKCS12_PATH=str(path), SEAL_PKCS12_PASSWORD="seal-pass")
    portal = Portal(app, app.test_client())
    staff = make_staff("admin")
    assert portal.sign_in(staff).status_code == 302
    page = portal.client.get("/admin/sealing").get_data(as_text=True)
    assert "Renew soon" in page and "PKCS#12 file from SEAL_PKCS12_PATH" in page


def test_start_up_refuses_an_expired_or_mismatched_certificate(make_app, tmp_path):
    expired = write_p12(tmp_path / "old.p12", days=30, now=clock.utcnow() - timedelta(days=400))
    with pytest.raises(ConfigError, match="expired"):
        make_app(SEAL_PKCS12_PATH=str(expired), SEAL_PKCS12_PASSWORD="seal-pass")
    with pytest.raises(ConfigError, match="password"):
        make_app(SEAL_PKCS12_PATH=str(write_p12(tmp_path / "a.p12")), SEAL_PKCS12_PASSWORD="nope")
    with pytest.raises(ConfigError, match="cannot be read"):
        make_app(SEAL_PKCS12_PATH=str(tmp_path / "missing.p12"))
    one = seal.generate_self_signed("One", now=clock.utcnow())
    other = seal.generate_self_signed("Other", now=clock.utcnow())
    mismatched = tmp_path / "mismatched.p12"
    mismatched.write_bytes(mismatched_pkcs12(one, other))
    with pytest.raises(ConfigError, match="does not match"):
        make_app(SEAL_PKCS12_PATH=str(mismatched), SEAL_PKCS12_PASSWORD="")


def test_a_configured_certificate_seals(make_app, tmp_path, runner_for):
    path = write_p12(tmp_path / "seal.p12")
    app = make_app(SEAL_PKCS12_PATH=str(path), SEAL_PKCS12_PASSWORD="seal-pass")
    identity = seal.load_pkcs12(path.read_bytes(), b"seal-pass")
    with app.app_context():
        from portal.documents import keystore

        assert keystore.identity().fingerprint == identity.fingerprint
        db.session.commit()
        assert identity.fingerprint in keystore.known_fingerprints()


# ---------------------------------------------------------------- a real worker, killed


WORKER = """
import sys, time
from pathlib import Path
from redis import Redis
from rq import Queue, SimpleWorker
from portal import create_app
from portal.envelopes import sealing
from tests.conftest import base_config

uri, redis_url, marker = sys.argv[1:4]
app = create_app(base_config(uri, REDIS_URL=redis_url, JOBS_INLINE=False))
real = sealing.seal_pdf

def slow(*args, **kwargs):
    Path(marker).write_text("sealing")
    time.sleep(120)
    return real(*args, **kwargs)

sealing.seal_pdf = slow
conn = Redis.from_url(redis_url)
with app.app_context():
    SimpleWorker([Queue("pdf", connection=conn)], connection=conn).work(burst=True)
"""


def test_a_worker_killed_mid_seal_leaves_nothing_and_the_retry_seals(
    make_app, redis_server, database_url, runner_for, monkeypatch, tmp_path
):
    conn = Redis.from_url(redis_server.url)
    conn.flushdb()
    app = make_app(REDIS_URL=redis_server.url, JOBS_INLINE=False)
    from portal.envelopes import operations as envelopes
    from portal.envelopes.operations import RecipientInput
    from portal.library import operations as library
    from tests.test_envelopes import REFUND_VALUES

    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        agent = demo_agent()
        tpl = demo_template()
        person = RecipientInput(role="customer", name="Ana Muñoz", email="ana@example.com")
        envelope, links = envelopes.create_and_send(
            library.approved_version(tpl), REFUND_VALUES, [person], by=agent
        )
        envelope_id, public_id, link = envelope.id, envelope.public_id, next(iter(links.values()))
    _sign(app, link, public_id, adoption="typed", name="Ana Muñoz")
    assert Queue("pdf", connection=conn).count >= 1, "sealing is queued"

    marker = tmp_path / "sealing.started"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker = subprocess.Popen(
        [sys.executable, str(script), database_url, redis_server.url, str(marker)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert worker.poll() is None, "the worker ended before sealing"
            assert time.monotonic() < deadline, "the worker never started sealing"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    envelope = _envelope(app, envelope_id)
    assert envelope.status == "completed" and envelope.seal_status == "pending"
    assert envelope.sealed_blob_id is None and envelope.seal_attempts == 1
    assert not audit_events(app, "envelope.sealed") and _sealed_blobs(app) == 0

    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(minutes=6))
    with app.app_context():
        assert jobs.execute("portal.envelopes.sealing:sweep_unsealed") == "1 asked again"
        jobs.enqueue(sealing.seal_envelope, envelope_id)  # and a duplicate request
        db.session.commit()
        SimpleWorker([Queue("pdf", connection=conn)], connection=conn).work(burst=True)
    assert _envelope(app, envelope_id).seal_status == "sealed"
    assert len(audit_events(app, "envelope.sealed")) == 1 and _sealed_blobs(app) == 1
    conn.flushdb()
    conn.close()
