"""The API framework: keys and scopes, problems, limits, idempotency, ETags, cursor pages."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.api_helpers import Api, make_key, refund_body
from tests.conftest import audit_events

PROBLEM = "application/problem+json"


@pytest.fixture
def seeded(app, runner_for):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    return app


def api_for(app, **kwargs) -> Api:
    return Api(app.test_client(), make_key(app, **kwargs))


def assert_problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"].endswith(f"/api/v1/problems/{kind}")
    assert body["title"]
    return body


def test_openapi_document_is_3_1_and_names_the_resources(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"] == "3.1.0"
    assert "/api/v1/templates" in doc["paths"] and "/api/v1/envelopes" in doc["paths"]
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert "idempotency-key-reused" in doc["info"]["description"]


def test_reference_page_loads_vendored_assets_without_inline_script(app):
    client = app.test_client()
    page = client.get("/api/v1/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "<script>" not in html and "http" not in html.split("<body>")[1].split("noscript")[0]
    asset = client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200
    asset.close()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_problem_types_are_documented(app):
    response = app.test_client().get("/api/v1/problems/rate-limited")
    assert response.status_code == 200 and response.get_json()["status"] == 429
    assert_problem(app.test_client().get("/api/v1/problems/nonsense"), 404, "not-found")


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer psk_nonsense", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000],
)
def test_missing_or_bad_keys_get_401_problem(app, header):
    headers = {"Authorization": header} if header else {}
    response = app.test_client().get("/api/v1/templates", headers=headers)
    body = assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "psk_" not in body["detail"]


def test_unknown_url_and_wrong_method_are_problems(app):
    api = api_for(app)
    assert_problem(api.get("/api/v1/nothing-here"), 404, "not-found")
    response = api.client.delete("/api/v1/templates", headers=api.key.headers)
    assert_problem(response, 405, "method-not-allowed")


def test_missing_scope_is_403(seeded):
    api = api_for(seeded, scopes=["templates:read"])
    body = assert_problem(api.get("/api/v1/envelopes"), 403, "forbidden")
    assert "envelopes:read" in body["detail"]
    assert api.get("/api/v1/templates").status_code == 200


def test_session_cookies_are_ignored_and_none_are_set(app, signed_in):
    portal, _staff = signed_in("admin")
    response = portal.client.get("/api/v1/templates")
    assert_problem(response, 401, "unauthorized")
    assert "Set-Cookie" not in response.headers


def test_posts_need_no_csrf_token(seeded):
    api = api_for(seeded)
    response = api.post("/api/v1/envelopes", refund_body(seeded))
    assert response.status_code == 201, response.get_data(as_text=True)


def test_malformed_json_is_a_422_problem(seeded):
    api = api_for(seeded)
    response = api.post(
        "/api/v1/envelopes", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "invalid-json")


def test_wrong_types_and_unknown_fields_are_named(seeded):
    api = api_for(seeded)
    body = refund_body(seeded, template_id="seven", colour="blue")
    body["recipients"][0]["email"] = 42
    problem = assert_problem(api.post("/api/v1/envelopes", body), 422, "validation-failed")
    errors = problem["errors"]
    assert "template_id" in errors and "colour" in errors
    assert "email" in errors["recipients"]["0"]


def test_other_media_types_are_415(seeded):
    api = api_for(seeded)
    response = api.post(
        "/api/v1/envelopes", data="template_id=1", content_type="application/x-www-form-urlencoded"
    )
    assert_problem(response, 415, "unsupported-media-type")


def test_bodies_over_the_limit_are_413_and_change_nothing(seeded):
    api = api_for(seeded)
    huge = json.dumps({"message": "x" * (10 * 1024 * 1024)})
    response = api.post(
        "/api/v1/envelopes", data=huge, headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 413, "body-too-large")
    assert "MB" in body["detail"]
    assert audit_events(seeded, "envelope.created") == []


def test_idempotent_replay_returns_the_first_answer(seeded):
    api = api_for(seeded)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = refund_body(seeded)
    first = api.post("/api/v1/envelopes", body, headers=key)
    again = api.post("/api/v1/envelopes", body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert "Idempotent-Replayed" not in first.headers
    assert len(audit_events(seeded, "envelope.created")) == 1


def test_same_idempotency_key_with_another_body_is_422(seeded):
    api = api_for(seeded)
    key = {"Idempotency-Key": "order-77"}
    assert api.post("/api/v1/envelopes", refund_body(seeded), headers=key).status_code == 201
    other = refund_body(seeded, ticket_id="CRM-2002")
    assert_problem(api.post("/api/v1/envelopes", other, headers=key), 422, "idempotency-key-reused")
    assert len(audit_events(seeded, "envelope.created")) == 1


def test_idempotency_keys_belong_to_one_api_key(seeded):
    first, second = api_for(seeded), api_for(seeded, name="Help desk")
    key = {"Idempotency-Key": "shared-name"}
    assert first.post("/api/v1/envelopes", refund_body(seeded), headers=key).status_code == 201
    answer = second.post("/api/v1/envelopes", refund_body(seeded), headers=key)
    assert answer.status_code == 201 and "Idempotent-Replayed" not in answer.headers


def test_a_request_still_in_flight_is_409(seeded):
    from portal.clock import utcnow
    from portal.extensions import db
    from portal.integrations import idempotency
    from portal.integrations.models import IdempotentRequest

    api = api_for(seeded)
    body = refund_body(seeded)
    with seeded.test_request_context("/api/v1/envelopes", method="POST", json=body):
        asked = idempotency.request_hash()
        db.session.add(
            IdempotentRequest(
                api_key_id=api.key.id,
                key="busy",
                request_hash=asked,
                created_at=utcnow(),
                expires_at=utcnow() + idempotency.KEEP,
            )
        )
        db.session.commit()
    response = api.post("/api/v1/envelopes", body, headers={"Idempotency-Key": "busy"})
    assert_problem(response, 409, "request-in-flight")


def test_stored_answers_are_pruned_after_24_hours(seeded, runner_for):
    from datetime import timedelta

    from sqlalchemy import func, select

    from portal import clock
    from portal.extensions import db
    from portal.integrations import idempotency
    from portal.integrations.models import IdempotentRequest

    api = api_for(seeded)
    api.post("/api/v1/envelopes", refund_body(seeded), headers={"Idempotency-Key": "k1"})
    with seeded.app_context():
        assert idempotency.prune_idempotency_keys().startswith("0 ")
        clock.travel_to(clock.utcnow() + timedelta(hours=25))
        try:
            assert idempotency.prune_idempotency_keys().startswith("1 ")
        finally:
            clock.reset()
        assert db.session.execute(select(func.count(IdempotentRequest.id))).scalar_one() == 0


def test_rate_limit_answers_429_with_headers(make_app, runner_for):
    app = make_app(API_RATE_LIMIT="3 per minute")
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    api = api_for(app)
    answers = [api.get("/api/v1/templates") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"api";q=3;w=60'
    assert answers[0].headers["RateLimit"].startswith('"api";r=2;t=')
    limited = answers[3]
    assert_problem(limited, 429, "rate-limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit"].startswith('"api";r=0;')
    other = api_for(app, name="Another key")
    assert other.get("/api/v1/templates").status_code == 200, "limits are per key"


def test_send_limit_applies_to_creating_envelopes_only(make_app, runner_for):
    app = make_app(API_SEND_RATE_LIMIT="1 per minute")
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    api = api_for(app)
    assert api.post("/api/v1/envelopes", refund_body(app)).status_code == 201
    second = api.post("/api/v1/envelopes", refund_body(app))
    assert_problem(second, 429, "rate-limited")
    assert '"send";q=1;w=60' in second.headers["RateLimit-Policy"]
    assert api.get("/api/v1/envelopes").status_code == 200


def test_etag_gives_304_when_nothing_changed(seeded):
    api = api_for(seeded)
    first = api.get("/api/v1/templates")
    etag = first.headers["ETag"]
    again = api.get("/api/v1/templates", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    changed = api.get("/api/v1/templates", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200


def test_times_are_utc_with_z(seeded):
    api = api_for(seeded)
    created = api.post("/api/v1/envelopes", refund_body(seeded)).get_json()
    assert created["created_at"].endswith("Z") and "+" not in created["created_at"]
    assert created["recipients"][0]["sent_at"].endswith("Z")


def test_control_characters_are_refused_where_they_are(seeded):
    api = api_for(seeded)
    path = assert_problem(api.get("/api/v1/envelopes/%1F"), 422, "validation-failed")
    assert "envelope_id" in path["errors"]["path"]
    query = assert_problem(api.get("/api/v1/envelopes?ticket_id=a%00b"), 422, "validation-failed")
    assert "ticket_id" in query["errors"]["query"]
    body = refund_body(seeded)
    body["recipients"][0]["name"] = "Ana\x00Muñoz"
    named = assert_problem(api.post("/api/v1/envelopes", body), 422, "validation-failed")
    assert list(named["errors"]) == ["recipients.0.name"]
    assert audit_events(seeded, "envelope.created") == []


def test_deeply_nested_json_is_refused_not_a_crash(seeded):
    api = api_for(seeded)
    deep = "[" * 100_000 + "]" * 100_000
    response = api.post(
        "/api/v1/envelopes", data=deep, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "invalid-json")


def test_rate_limits_are_counted_in_redis(make_app, redis_server):
    from redis import Redis

    Redis.from_url(redis_server.url).flushdb()
    app = make_app(RATELIMIT_STORAGE_URI=redis_server.url, API_RATE_LIMIT="2 per minute")
    api = api_for(app)
    answers = [api.get("/api/v1/templates").status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert any(Redis.from_url(redis_server.url).scan_iter(match="*portal-api-api*"))


def test_calls_are_served_uncounted_while_redis_is_down(seeded, monkeypatch):
    from limits.strategies import MovingWindowRateLimiter
    from redis.exceptions import ConnectionError as RedisDown

    def down(*_args, **_kwargs):
        raise RedisDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(MovingWindowRateLimiter, "hit", down)
    response = api_for(seeded).get("/api/v1/templates")
    assert response.status_code == 200 and "RateLimit" not in response.headers


def test_a_chunked_body_over_the_limit_is_413(make_app):
    import io

    from werkzeug.test import EnvironBuilder, run_wsgi_app
    from werkzeug.wrappers import Response

    app = make_app(API_MAX_BODY_MB=0.01)
    key = make_key(app)
    body = json.dumps({"message": "x" * 64 * 1024}).encode()
    environ = EnvironBuilder(
        path="/api/v1/envelopes",
        method="POST",
        headers={**key.headers, "Content-Type": "application/json"},
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)  # a chunked upload: no length given
    environ.update(
        {
            "HTTP_TRANSFER_ENCODING": "chunked",
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
        }
    )
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    response = Response(b"".join(app_iter), status=status, headers=headers)
    assert_problem(response, 413, "body-too-large")
