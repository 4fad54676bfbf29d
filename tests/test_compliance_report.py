"""The sealed PDF compliance report (records centre) and the sealed per-envelope audit report:
numbers for a known set of envelopes, page N of M, the seal checked by pdfsig and by /verify,
the audit event, bad input, agents refused."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from portal import audit
from portal.documents.seal import check_seal
from portal.envelopes import sealing
from portal.extensions import db
from tests.conftest import audit_events, demo_agent
from tests.test_sealing import _sign, _verify
from tests.test_signing import _csrf, _path, sent  # noqa: F401

ARTIFACTS = Path(__file__).parent / "artifacts"
AGENT_403 = (
    "/records/report",
    "/records/report.pdf?period=today",
    "/records/access",
)


def _decline(app, link: str, public_id: str, reason: str) -> None:
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    client.post(f"/sign/{public_id}/decline", data={"csrf_token": token, "reason": reason})


@pytest.fixture
def known(app, sent):  # noqa: F811
    """Three refunds today: one signed and sealed, one declined, one waiting; and a few events
    the report counts (a failed code, a hold placed, a purge)."""
    done_id, done_pid, done_link = sent()
    _sign(app, done_link, done_pid)
    _declined_id, declined_pid, declined_link = sent()
    _decline(app, declined_link, declined_pid, "The amount is wrong")
    waiting_id, waiting_pid, _ = sent()
    with app.app_context():
        audit.record(
            "recipient.authentication_failed",
            actor="system",
            subject=("envelope", str(waiting_id), None),
            data={"attempts": 1},
        )
        audit.record("hold.placed", actor=demo_agent(), subject=("hold", "1", None), data={})
        audit.record("envelope.purged", actor="system", subject=("envelope", str(done_id), None))
        db.session.commit()
    return {"completed": done_pid, "declined": declined_pid, "waiting": waiting_pid}


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _pdfsig(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def test_the_report_counts_a_known_set_of_envelopes_and_is_sealed(app, known, signed_in, tmp_path):
    portal, officer = signed_in("compliance")
    response = portal.client.get("/records/report.pdf?period=today&scope=all")
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.headers["Content-Disposition"].startswith("attachment;")
    pdf = response.data
    text = _text(pdf)
    flat = re.sub(r"\s+", " ", text)
    assert "Compliance report" in flat and "Every team" in flat
    assert "Envelopes created 3" in flat and "Completed 1" in flat
    for status in ("Completed 1", "Declined 1"):
        assert status in flat, status
    assert "Refund authorization 3 1" in flat, "by template: envelopes, completed"
    assert "Declines 1" in flat and "The amount is wrong" in flat
    assert "Failed authentications (wrong codes) 1" in flat
    assert "Legal holds placed 1" in flat and "Envelopes purged 1" in flat
    assert "Sealing failures 0" in flat and "Bounced emails 0" in flat
    assert "Median time to complete" in flat and "No envelope completed" not in flat
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "compliance-report.pdf").write_bytes(pdf)
    for public_id in known.values():
        assert public_id[:12] in flat
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    assert re.search(rf"page 1 of {pages}\b", flat) and f"page {pages} of {pages}" in flat

    check = check_seal(pdf)
    assert check.outcome == "intact" and check.field_name == sealing.REPORT_SEAL_FIELD
    signature = _pdfsig(pdf, tmp_path)
    assert "Signature #1" in signature and "Signature is Valid" in signature, signature
    verdict = _verify(app, pdf).get_data(as_text=True)
    assert 'data-outcome="verified"' in verdict and "a report sealed by this portal" in verdict
    assert "Compliance report" in verdict

    exported = audit_events(app, "records.exported")
    assert len(exported) == 1 and exported[0].actor_id == str(officer.id)
    data = exported[0].data
    assert data["kind"] == "compliance_report" and data["rows"] == 3
    assert data["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert data["filters"] == {"period": "today", "scope": "all"}

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "compliance-report.pdf").write_bytes(pdf)


def test_a_changed_report_is_not_verified(app, known, signed_in):
    portal, _officer = signed_in("compliance")
    pdf = portal.client.get("/records/report.pdf?period=today").data
    at = pdf.index(b"stream", 400) + 30
    changed = pdf[:at] + bytes([pdf[at] ^ 0x01]) + pdf[at + 1 :]
    verdict = _verify(app, changed).get_data(as_text=True)
    assert 'data-outcome="modified"' in verdict


def test_scope_and_cap_are_stated(app, known, signed_in, make_staff):
    portal, _officer = signed_in("compliance")
    make_staff("agent", team="Billing")
    with app.app_context():
        from portal.accounts.models import Team

        billing = db.session.execute(db.select(Team).where(Team.name == "Billing")).scalar_one()
        billing_id = billing.id
    form = portal.client.get("/records/report").get_data(as_text=True)
    assert f'value="team:{billing_id}"' in form and "Every team" in form
    empty = portal.client.get(f"/records/report.pdf?period=today&scope=team:{billing_id}")
    flat = re.sub(r"\s+", " ", _text(empty.data))
    assert "Team Billing" in flat and "Envelopes created 0" in flat and "Declines 0" in flat
    assert "Legal holds placed * 1" in flat, "holds count for the whole portal, marked"
    app.config["REPORT_MAX_ENVELOPES"] = 2
    capped = re.sub(r"\s+", " ", _text(portal.client.get("/records/report.pdf?period=today").data))
    assert "lists the first 2 of 3 envelopes" in capped
    assert known["waiting"][:12] not in capped and known["completed"][:12] in capped


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("period=custom&from=2026-13-45&to=2026-01-01", "The start date is not a date"),
        ("period=custom&from=2026-02-01&to=2026-01-01", "The end date is before the start date"),
        ("period=custom&from=&to=", "The start date is not a date"),
        ("period=yesterday-ish", "Choose a period from the list"),
        ("period=today&scope=team:999999", "Choose the scope from the list"),
        ("period=today&scope=" + "9" * 5000, "Choose the scope from the list"),
        ("period=custom&from=" + "=HYPERLINK(1)" * 4000 + "&to=2026-01-01", "not a date"),
    ],
)
def test_bad_input_gives_a_message_not_a_file(app, signed_in, query, message):
    portal, _officer = signed_in("compliance")
    response = portal.client.get(f"/records/report.pdf?{query}")
    assert response.status_code == 422 and response.mimetype == "text/html"
    assert message in response.get_data(as_text=True)
    assert not audit_events(app, "records.exported")


def test_agents_get_403_on_the_report_pages(app, signed_in):
    portal, _agent = signed_in("agent")
    for url in AGENT_403:
        assert portal.client.get(url).status_code == 403, url


def test_the_audit_report_is_sealed_and_verified(app, known, signed_in, tmp_path):
    portal, _agent = signed_in("agent")
    for public_id, heading in ((known["completed"], "Audit report"),
                               (known["waiting"], "Interim audit report")):  # fmt: skip
        response = portal.client.get(f"/envelopes/{public_id}/audit-report.pdf")
        assert response.status_code == 200
        pdf = response.data
        assert heading in _text(pdf)
        check = check_seal(pdf)
        assert check.outcome == "intact" and check.field_name == sealing.REPORT_SEAL_FIELD
        assert "Signature is Valid" in _pdfsig(pdf, tmp_path)
        verdict = _verify(app, pdf).get_data(as_text=True)
        assert 'data-outcome="verified"' in verdict
        assert f"{heading} of envelope {public_id}" in verdict
    events = audit_events(app, "envelope.report_downloaded")
    assert len(events) == 2 and all(len(e.data["sha256"]) == 64 for e in events)


def test_verify_pdf_cli_names_a_sealed_report(app, known, signed_in, runner_for, tmp_path):
    portal, _officer = signed_in("compliance")
    path = tmp_path / "report.pdf"
    path.write_bytes(portal.client.get("/records/report.pdf?period=today").data)
    with app.app_context():
        done = runner_for(app).invoke(args=["portal", "verify-pdf", str(path)])
    assert done.exit_code == 0 and "VERIFIED" in done.output
    assert "report     Compliance report" in done.output


def test_median_time_to_complete_is_computed_by_the_database(app, sent, signed_in):  # noqa: F811
    """Four completed envelopes that took 1 h, 2 h, 4 h and 10 h: the median is 3 h (the mean
    of the middle two), on SQLite and PostgreSQL alike; the ones not completed do not count."""
    from datetime import timedelta

    from portal import clock
    from portal.envelopes.models import Envelope

    ids = [sent()[0] for _ in range(5)]
    now = clock.utcnow()
    with app.app_context():
        for envelope_id, hours in zip(ids, (1, 2, 4, 10, None), strict=True):
            envelope = db.session.get(Envelope, envelope_id)
            envelope.sent_at = now - timedelta(hours=12)
            if hours is not None:
                envelope.status = "completed"
                envelope.finished_at = envelope.sent_at + timedelta(hours=hours)
        db.session.commit()
    portal, _officer = signed_in("compliance")
    flat = re.sub(r"\s+", " ", _text(portal.client.get("/records/report.pdf?period=today").data))
    assert "Median time to complete 3 h 0 min" in flat
    assert "Completed 4" in flat and "Envelopes created 5" in flat


def test_quick_picks_are_whole_utc_days_and_typed_dates_win():
    from datetime import UTC, date, datetime

    from portal.records.periods import Period

    today = date(2026, 3, 15)
    assert (Period.of("last_month", today).first, Period.of("last_month", today).last) == (
        date(2026, 2, 1),
        date(2026, 2, 28),
    )
    assert Period.of("this_month", today).first == date(2026, 3, 1)
    week = Period.of("last_7_days", today)
    assert (week.first, week.last) == (date(2026, 3, 9), today)
    assert week.start == datetime(2026, 3, 9, tzinfo=UTC)
    assert week.end == datetime(2026, 3, 16, tzinfo=UTC)
    typed = Period.parse({"period": "today", "from": "2026-01-01", "to": "2026-01-31"})
    assert typed.pick == "custom" and not typed.errors and typed.last == date(2026, 1, 31)
    assert typed.params() == {"period": "custom", "from": "2026-01-01", "to": "2026-01-31"}
