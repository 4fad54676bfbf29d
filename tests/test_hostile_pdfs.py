"""Hostile PDFs cannot stop the portal.

Every file of the corpus (``tests/hostile.py``: declared sizes, drawings that draw themselves,
decompression bombs, absurd page boxes, active content hidden from a lenient parse) is pushed
through template upload, the public verify page, ``flask portal verify-pdf`` and signer
attachments; each is refused with a clear message within the sandbox's time limit, and the
server process's memory stays flat while a real gunicorn answers ``/healthz`` during a
hostile check.
"""

from __future__ import annotations

import functools
import html
import http.client
import io
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO

import pytest
from PIL import Image
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal import clock, storage
from portal.documents.attachments import check_attachment
from portal.documents.inspect import PdfProblem, inspect_pdf
from portal.documents.pages import (
    MAX_DOCUMENT_IMAGE_BYTES,
    MAX_SIDE_PX,
    PageImageProblem,
    render_pages,
)
from portal.extensions import db
from portal.library import images
from portal.library.models import Template, TemplateVersion
from tests import hostile
from tests import test_input_hygiene as hygiene
from tests.conftest import audit_events
from tests.services import free_port

world = hygiene.world  # the fixture: demo content, a draft, a sent envelope

# Tighter than the defaults, so that the suite stays quick; the same code paths.
LIMITS = {"SANDBOX_CPU_SECONDS": 4, "SANDBOX_MEMORY_MB": 512, "SANDBOX_WALL_SECONDS": 8}
WALL = LIMITS["SANDBOX_WALL_SECONDS"]

# What the refusal of each file says (a fragment of the message).
EXPECTED = {
    "xref_stream_huge_size": "declares 999,999,999 objects",
    "xref_stream_huge_index": "cross-reference entries",
    "slow_xref_stream": "is damaged and cannot be read",
    "huge_signature_contents": "declares a data string of more than 4 MB",
    "huge_image_dimensions": "an image 200,000 pixels wide or high",
    "deep_arrays": "is damaged and cannot be read",
    "self_drawing_form": "contains a drawing that draws itself",
    "mutually_drawing_forms": "contains a drawing that draws itself",
    "metadata_flate_bomb": "decompression bomb",
    "content_flate_bomb": "decompression bomb",
    "giant_thin_page": "pages must be between 1/24 inch and 200 inches",
    "giant_page": "pages must be between 1/24 inch and 200 inches",
    "javascript_behind_deep_nesting": "contains JavaScript",
    "javascript_with_escaped_name": "contains JavaScript",
    "gotor_unc_link": "a link that opens another file",
    "javascript_uri_link": "a link to a javascript: address",
    "file_uri_link": "a link to a file: address",
    "javascript_in_object_stream": "contains JavaScript",
}
REFUSED = sorted(EXPECTED)


@functools.cache
def corpus(name: str) -> bytes:
    return hostile.CORPUS[name]()


@pytest.fixture
def limited(make_app):
    return make_app(**LIMITS)


def test_the_corpus_covers_every_file_it_builds() -> None:
    assert set(EXPECTED) | {"poster_noise_pages"} == set(hostile.CORPUS)


@pytest.mark.parametrize("name", REFUSED)
def test_inspection_refuses_each_hostile_file_clearly_and_in_time(limited, name: str) -> None:
    data = corpus(name)
    with limited.app_context():
        started = time.monotonic()
        with pytest.raises(PdfProblem) as caught:
            inspect_pdf(data, "upload.pdf")
        elapsed = time.monotonic() - started
    assert EXPECTED[name] in str(caught.value)
    assert str(caught.value).startswith(("\u201cupload.pdf\u201d", "Page 1 of \u201cupload.pdf"))
    assert elapsed < WALL


def _upload(portal, data: bytes):
    boundary, body = encode_multipart(
        {
            "csrf_token": portal.csrf(),
            "name": "Hostile",
            "document_type": "refund_authorization",
            "team": "0",
            "source": "pdf",
            "file": FileStorage(io.BytesIO(data), "upload.pdf", content_type="application/pdf"),
        }
    )
    return portal.client.post(
        "/library/new", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def test_uploads_of_every_hostile_file_are_refused_and_memory_stays_flat(make_app, make_staff):
    from tests.conftest import Portal

    app = make_app(**LIMITS)
    portal = Portal(app, app.test_client())
    portal.sign_in(make_staff("admin"))
    files = {name: corpus(name) for name in REFUSED}  # built before measuring
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, data in files.items():
        started = time.monotonic()
        response = _upload(portal, data)
        assert time.monotonic() - started < WALL, name
        assert response.status_code == 422, name
        assert EXPECTED[name] in html.unescape(response.get_data(as_text=True)), name
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    # Without the sandbox one decompression bomb alone took this process past 2 GB.
    assert grown_mb < 200, f"the server process grew by {grown_mb:.0f} MB"
    with app.app_context():
        assert db.session.execute(select(func.count(Template.id))).scalar_one() == 0
    refused = audit_events(app, "template.upload_refused")
    assert len(refused) == len(files)


def _verify(client, data: bytes):
    page = client.get("/verify").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    # Encoded in memory: the test client would spool a large body to a temporary file that
    # it never closes.
    boundary, body = encode_multipart(
        {"csrf_token": token, "document": FileStorage(io.BytesIO(data), "doc.pdf")}
    )
    return client.post(
        "/verify", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


@pytest.mark.parametrize("name", [*REFUSED, "poster_noise_pages"])
def test_the_verify_page_answers_each_hostile_file_in_time(limited, name: str) -> None:
    data = corpus(name)
    started = time.monotonic()
    response = _verify(limited.test_client(), data)
    elapsed = time.monotonic() - started
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-outcome="verified"' not in text
    assert re.search(r'data-outcome="(unknown|unreadable|modified)"', text)
    assert elapsed < WALL


def test_a_slow_check_on_the_verify_page_is_a_clear_refusal(make_app) -> None:
    # Reading this file costs a few seconds of CPU: more than one second is too long.
    app = make_app(**{**LIMITS, "SANDBOX_CPU_SECONDS": 1})
    text = _verify(app.test_client(), corpus("slow_xref_stream")).get_data(as_text=True)
    assert 'data-outcome="unreadable"' in text
    assert "took too long to check" in html.unescape(text)


def test_verify_pdf_command_refuses_hostile_files(limited, runner_for, tmp_path: Path) -> None:
    for name in ("xref_stream_huge_size", "huge_signature_contents", "self_drawing_form"):
        path = tmp_path / f"{name}.pdf"
        path.write_bytes(corpus(name))
        started = time.monotonic()
        with limited.app_context():
            result = runner_for(limited).invoke(args=["portal", "verify-pdf", str(path)])
        assert time.monotonic() - started < WALL
        assert result.exit_code == 1, name
        assert "not a document sealed by this portal" in result.output, name


@pytest.mark.parametrize("name", REFUSED)
def test_signer_attachments_refuse_each_hostile_pdf(limited, name: str) -> None:
    with limited.app_context():
        assert check_attachment(corpus(name), "application/pdf") in (
            "damaged", "active_content", "too_complex",
        )  # fmt: skip


# ---------------------------------------------------------------- page images


@pytest.mark.parametrize("name", ["self_drawing_form", "content_flate_bomb", "giant_thin_page"])
def test_rendering_what_slipped_past_inspection_stops_within_the_limits(limited, name) -> None:
    with limited.app_context():
        started = time.monotonic()
        try:
            pages = render_pages(corpus(name))
        except PageImageProblem as exc:
            assert "Print it to a new PDF" in str(exc)
        else:  # drawn, but within the caps
            assert all(max(p.width_px, p.height_px) <= 2400 for p in pages)
        assert time.monotonic() - started < WALL


def test_many_poster_pages_of_noise_stay_within_the_image_caps(limited) -> None:
    # 200 A0 pages: drawn at a smaller scale, so that together they stay within the budget
    # (without the caps they took 278 MB), or refused when they would not.
    with limited.app_context():
        try:
            pages = render_pages(corpus("poster_noise_pages"))
        except PageImageProblem as exc:
            assert "more than 40 MB" in str(exc) or "took longer than" in str(exc)
        else:
            assert len(pages) == 200
            assert all(max(p.width_px, p.height_px) <= MAX_SIDE_PX for p in pages)
            assert sum(len(p.image) for p in pages) <= MAX_DOCUMENT_IMAGE_BYTES


def test_a_document_whose_images_would_be_too_large_is_refused(limited) -> None:
    with limited.app_context(), pytest.raises(PageImageProblem, match="more than 2 MB"):
        render_pages(corpus("poster_noise_pages"), max_bytes=2 * 1024 * 1024)


def _draft_with_source(app, make_staff, data: bytes) -> int:
    """A draft whose stored source is ``data`` (as if it had passed an older, weaker check)."""
    from portal.accounts.models import User
    from portal.library import operations as ops
    from tests.test_documents import good_pdf

    staff = make_staff("admin")
    with app.app_context():
        user = db.session.get(User, staff.id)
        version = ops.create_from_pdf("Old", "other", None, good_pdf(), "old.pdf", by=user)
        version.source_blob_id = storage.put(data, kind="template_source")
        version.source_sha256 = "f" * 64
        images.VERSIONS.request(version)
        db.session.commit()  # the request runs the job inline
        return version.id


def test_a_page_image_failure_is_shown_with_its_reason_and_can_be_retried(make_app, make_staff):
    from tests.conftest import Portal

    app = make_app(**LIMITS)
    version_id = _draft_with_source(app, make_staff, corpus("self_drawing_form"))
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        assert version.images_status == "failed"
        assert "Drawing the pages" in version.images_error
        assert version.images_attempts == 1
    portal = Portal(app, app.test_client())
    portal.sign_in(make_staff("compliance"))
    editor = html.unescape(portal.client.get(f"/library/versions/{version_id}/editor").text)
    assert "The pages could not be shown. Drawing the pages" in editor
    assert "Try again" in editor
    retried = portal.htmx_post(f"/library/versions/{version_id}/images/retry")
    assert retried.status_code == 200
    assert "The pages could not be shown" in html.unescape(retried.text)  # failed again
    events = audit_events(app, "template.images_retried")
    assert len(events) == 1 and "Drawing the pages" in events[0].data["previous_error"]
    with app.app_context():
        assert db.session.get(TemplateVersion, version_id).images_attempts == 1


def test_page_images_never_stay_pending(make_app, make_staff, monkeypatch) -> None:
    from tests.test_documents import good_pdf

    app = make_app(**LIMITS, JOBS_INLINE=False, REDIS_URL="")
    # No queue reachable: the request is recorded, nothing renders it.
    monkeypatch.setattr("portal.jobs._dispatch", lambda app, requests: None)
    version_id = _draft_with_source(app, make_staff, good_pdf())
    later = clock.utcnow() + timedelta(minutes=images.SWEEP_MINUTES + 1)
    with app.app_context():
        assert db.session.get(TemplateVersion, version_id).images_status == "pending"
        asked: list[int] = []
        monkeypatch.setattr("portal.jobs._dispatch", lambda app, reqs: asked.extend(
            r.args[0] for r in reqs))  # fmt: skip
        for attempt in range(images.MAX_ATTEMPTS):
            now = later + timedelta(hours=attempt)
            monkeypatch.setattr(clock, "utcnow", lambda now=now: now)
            images.sweep_version_images()
            version = db.session.get(TemplateVersion, version_id)
            version.images_attempts = attempt + 1  # as if each job had died mid-render
            db.session.commit()
        assert asked == [version_id] * images.MAX_ATTEMPTS
        monkeypatch.setattr(clock, "utcnow", lambda: later + timedelta(days=1))
        images.sweep_version_images()
        version = db.session.get(TemplateVersion, version_id)
        assert version.images_status == "failed"
        assert f"after {images.MAX_ATTEMPTS} tries" in version.images_error


# ---------------------------------------------------------------- a real server


def _gunicorn(url: str, instance: Path, log: IO[bytes]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PORTAL_INSTANCE": str(instance),
        "SECRET_KEY": "hostile-test",
        "DATA_KEY": "00" * 32,
        "SANDBOX_CPU_SECONDS": "1",  # the slow file below needs a few seconds: too long
        "SANDBOX_MEMORY_MB": "512",
    }
    env.pop("REDIS_URL", None)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = subprocess.Popen(
        [gunicorn, "--workers", "2", "--bind", f"127.0.0.1:{port}", "--timeout", "60",
         "--chdir", str(Path(__file__).resolve().parents[1]), "wsgi:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _get(port, "/healthz")[0] == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def _get(port: int, path: str, cookie: str = "") -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = conn.getresponse()
    body = response.read().decode("utf-8", "replace")
    conn.close()
    return response.status, body, response.getheader("Set-Cookie") or ""


def _post_verify(port: int, data: bytes) -> tuple[int, str]:
    _status, page, cookie = _get(port, "/verify")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    boundary, body = encode_multipart(
        {"csrf_token": token, "document": FileStorage(io.BytesIO(data), "doc.pdf")}
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST", "/verify", body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                 "Cookie": cookie.split(";")[0]},
    )  # fmt: skip
    response = conn.getresponse()
    text = response.read().decode("utf-8", "replace")
    conn.close()
    return response.status, text


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _workers(master: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == master:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[int, int]]:
    with open(tmp_path / "gunicorn.log", "wb") as log:
        process, port = _gunicorn(database_url, tmp_path / "instance", log)
        yield port, process.pid
        process.terminate()
        process.wait(10)


def test_a_real_server_stays_small_and_answers_health_checks_during_hostile_checks(server):
    port, master = server
    answers: list[tuple[int, str]] = []
    for name in REFUSED:
        if name != "slow_xref_stream":
            answers.append(_post_verify(port, corpus(name)))
    slow = threading.Thread(
        target=lambda: answers.append(_post_verify(port, corpus("slow_xref_stream")))
    )
    slow.start()
    time.sleep(0.5)
    waits = []
    while slow.is_alive():
        started = time.monotonic()
        status, _body, _ = _get(port, "/healthz")
        waits.append(time.monotonic() - started)
        assert status == 200
        time.sleep(0.2)
    slow.join()
    assert waits and max(waits) < 1.0, waits
    assert all(status == 200 for status, _ in answers)
    assert all('data-outcome="verified"' not in text for _, text in answers)
    assert "took too long to check" in html.unescape(answers[-1][1])
    peaks = {pid: _peak_rss_mb(pid) for pid in _workers(master)}
    assert peaks and max(peaks.values()) < 400, peaks


# ---------------------------------------------------------------- signer attachments


def _attach(signer, public_id: str, data: bytes, name: str, kind: str):
    boundary, body = encode_multipart(
        {
            "csrf_token": signer.csrf(),
            "adoption": "typed",
            "typed_name": "Zoë Nowak",
            "agree": "yes",
            "f-receipt_photo": FileStorage(io.BytesIO(data), name, content_type=kind),
        }
    )
    return signer.client.post(
        f"/sign/{public_id}/sign",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def test_a_signer_attachment_is_read_in_the_sandbox_before_it_is_kept(world) -> None:
    signer = hygiene._signer(world)
    photo = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(photo, format="JPEG")
    cut_off = photo.getvalue()[: len(photo.getvalue()) // 2]
    cases = (
        (corpus("javascript_uri_link"), "scan.pdf", "application/pdf",
         "This PDF contains scripts or attached files", "active content"),
        (corpus("self_drawing_form"), "loop.pdf", "application/pdf",
         "This file could not be read", "damaged"),
        (cut_off, "receipt.jpg", "image/jpeg", "This file could not be read", "damaged"),
    )  # fmt: skip
    for data, name, kind, message, reason in cases:
        response = _attach(signer, world.public_id, data, name, kind)
        assert response.status_code == 422, name
        assert message in html.unescape(response.get_data(as_text=True)), name
        event = audit_events(world.app, "recipient.attachment_refused")[-1]
        assert event.data["file"] == name and reason in event.data["reason"], event.data
    assert audit_events(world.app, "recipient.signed") == []
    good = _attach(signer, world.public_id, photo.getvalue(), "receipt.jpg", "image/jpeg")
    assert good.status_code == 302
    assert len(audit_events(world.app, "recipient.signed")) == 1
