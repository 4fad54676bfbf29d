"""API actions on an envelope: each the console's operation, its audit events naming the key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal import clock
from tests.api_helpers import Api, make_key, refund_body
from tests.conftest import audit_events

KEY_ACTOR = "API key: CRM sync"


@pytest.fixture(autouse=True)
def _real_time():
    yield
    clock.reset()


@pytest.fixture
def api(app, runner_for) -> Api:
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    return Api(app.test_client(), make_key(app))


def _sent(app, api: Api) -> tuple[str, int]:
    created = api.post("/api/v1/envelopes", refund_body(app))
    assert created.status_code == 201, created.get_data(as_text=True)
    envelope = created.get_json()
    return envelope["id"], envelope["recipients"][0]["id"]


def _by_key(app, event: str) -> list:
    found = [e for e in audit_events(app, event) if e.actor_label == KEY_ACTOR]
    assert found, f"no {event} by the key"
    return found


def test_void_through_the_api_names_the_key_and_refuses_a_second_time(app, api):
    envelope_id, _rid = _sent(app, api)
    blank = api.post(f"/api/v1/envelopes/{envelope_id}/void", {"reason": "   "})
    assert blank.status_code == 422 and "reason" in blank.get_json()["errors"]
    unknown = api.post(f"/api/v1/envelopes/{envelope_id}/void", {"reason": "x", "why": "y"})
    assert unknown.status_code == 422 and "why" in unknown.get_json()["errors"]

    voided = api.post(f"/api/v1/envelopes/{envelope_id}/void", {"reason": "Wrong amount"})
    assert voided.status_code == 200
    body = voided.get_json()
    assert body["status"] == "voided" and body["void_reason"] == "Wrong amount"
    assert body["finished_at"].endswith("Z")
    [event] = _by_key(app, "envelope.voided")
    assert event.data["reason"] == "Wrong amount"

    again = api.post(f"/api/v1/envelopes/{envelope_id}/void", {"reason": "Twice"})
    assert again.status_code == 409
    problem = again.get_json()
    assert again.mimetype == "application/problem+json"
    assert problem["detail"] == "This envelope is voided and can no longer change."
    assert problem["type"].endswith("/problems/conflict")
    assert len(audit_events(app, "envelope.voided")) == 1


def test_resend_remind_and_correct_email_are_the_consoles_verbs(app, api):
    envelope_id, rid = _sent(app, api)
    base = f"/api/v1/envelopes/{envelope_id}/recipients/{rid}"

    soon = api.post(f"{base}/remind")
    assert soon.status_code == 409 and "you can remind them again in" in soon.get_json()["detail"]
    clock.travel_to(clock.utcnow() + timedelta(minutes=31))
    reminded = api.post(f"{base}/remind")
    assert reminded.status_code == 200 and reminded.get_json()["status"] == "sent"
    _by_key(app, "envelope.reminder_sent")

    resent = api.post(f"{base}/resend")
    assert resent.status_code == 200 and resent.get_json()["id"] == rid
    _by_key(app, "envelope.link_sent")

    bad = api.post(f"{base}/email", {"email": "ana-at-example.com"})
    assert bad.status_code == 422 and "@" in bad.get_json()["errors"]["email"][0]
    fixed = api.post(f"{base}/email", {"email": "ana.new@example.com"})
    assert fixed.status_code == 200 and fixed.get_json()["email"] == "ana.new@example.com"
    [corrected] = _by_key(app, "envelope.recipient_corrected")
    assert corrected.data["recipient"] == rid

    api.post(f"/api/v1/envelopes/{envelope_id}/void", {"reason": "Customer changed mind"})
    for action in ("remind", "resend"):
        late = api.post(f"{base}/{action}")
        assert late.status_code == 409 and "voided" in late.get_json()["detail"]


def test_embedded_link_through_the_api(app, api):
    envelope_id, rid = _sent(app, api)
    made = api.post(f"/api/v1/envelopes/{envelope_id}/recipients/{rid}/embedded-link")
    assert made.status_code == 201
    link = made.get_json()
    assert link["url"].startswith("http://127.0.0.1:5000/s/embedded/")
    assert link["expires_at"].endswith("Z")
    [issued] = _by_key(app, "recipient.embedded_link_issued")
    assert issued.data["recipient"] == rid
    browser = app.test_client()
    opened = browser.get(link["url"].removeprefix("http://127.0.0.1:5000"))
    assert opened.status_code == 302
    assert browser.get(link["url"].removeprefix("http://127.0.0.1:5000")).status_code == 410


def test_downloads_are_recorded_as_the_consoles(app, api):
    envelope_id, _rid = _sent(app, api)
    original = api.get(f"/api/v1/envelopes/{envelope_id}/document")
    assert original.status_code == 200 and original.mimetype == "application/pdf"
    assert original.data.startswith(b"%PDF")
    [viewed] = _by_key(app, "envelope.viewed")
    assert viewed.data == {"what": "original"}

    sealed = api.get(f"/api/v1/envelopes/{envelope_id}/sealed")
    assert sealed.status_code == 409 and sealed.mimetype == "application/problem+json"
    assert "sealed" in sealed.get_json()["detail"]

    report = api.get(f"/api/v1/envelopes/{envelope_id}/audit-report")
    assert report.status_code == 200 and report.data.startswith(b"%PDF")
    [downloaded] = _by_key(app, "envelope.report_downloaded")
    assert downloaded.data["interim"] is True


def test_events_are_the_consoles_timeline_in_utc(app, api):
    envelope_id, _rid = _sent(app, api)
    api.post(f"/api/v1/envelopes/{envelope_id}/void", {"reason": "Duplicate"})
    got = api.get(f"/api/v1/envelopes/{envelope_id}/events")
    assert got.status_code == 200 and got.headers.get("ETag")
    items = got.get_json()["items"]
    names = [item["event"] for item in items]
    assert names[0] == "envelope.created" and "envelope.voided" in names
    voided = items[names.index("envelope.voided")]
    assert voided["who"] == KEY_ACTOR and "reason: Duplicate" in voided["detail"]
    assert all(item["at"].endswith("Z") for item in items)
    cached = api.get(
        f"/api/v1/envelopes/{envelope_id}/events", headers={"If-None-Match": got.headers["ETag"]}
    )
    assert cached.status_code == 304


def test_other_teams_and_unknown_ids_are_not_found(app, api):
    envelope_id, rid = _sent(app, api)
    stranger = Api(app.test_client(), make_key(app, name="Other CRM", team="Field Sales"))
    base = f"/api/v1/envelopes/{envelope_id}"
    for method, url in (
        ("post", f"{base}/void"),
        ("post", f"{base}/recipients/{rid}/resend"),
        ("post", f"{base}/recipients/{rid}/embedded-link"),
        ("get", f"{base}/document"),
        ("get", f"{base}/audit-report"),
        ("get", f"{base}/events"),
    ):
        body = {"reason": "Mine now"} if url.endswith("void") else None
        answer = getattr(stranger, method)(url, body) if body else getattr(stranger, method)(url)
        assert answer.status_code == 404, url
        assert answer.mimetype == "application/problem+json"
    assert api.post(f"{base}/recipients/{rid + 999}/remind").status_code == 404
    assert not audit_events(app, "envelope.voided")
    assert not audit_events(app, "envelope.viewed")


def test_read_only_keys_cannot_act(app, api):
    envelope_id, _rid = _sent(app, api)
    reader = Api(app.test_client(), make_key(app, name="Reader", scopes=["envelopes:read"]))
    denied = reader.post(f"/api/v1/envelopes/{envelope_id}/void", {"reason": "No"})
    assert denied.status_code == 403
    assert reader.get(f"/api/v1/envelopes/{envelope_id}/events").status_code == 200
