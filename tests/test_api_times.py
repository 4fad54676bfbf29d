"""Every time the API writes is ISO 8601 in UTC with ``Z``, whole seconds, from one field type
(``schemas.UtcDateTime``, by ``schemas.utc_text``)."""

from __future__ import annotations

import importlib
import inspect
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import marshmallow as ma
import pytest

from portal import clock
from portal.integrations.schemas import UtcDateTime
from tests.api_helpers import Api, make_key, refund_body

UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
API_MODULES = ("schemas", "api_actions", "api_bulk", "api_envelopes", "api_templates")


@pytest.fixture(autouse=True)
def _real_time():
    yield
    clock.reset()


def _times(value: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every ``*_at`` / ``at`` value in a JSON document, with its key."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _times(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v, key)]
    return [(key, value)] if key == "at" or key.endswith("_at") else []


def _inner(field: ma.fields.Field) -> list[ma.fields.Field]:
    if isinstance(field, ma.fields.List):
        return [field, *_inner(field.inner)]
    if isinstance(field, ma.fields.Dict) and field.value_field is not None:
        return [field, *_inner(field.value_field)]
    return [field]


def test_every_time_field_of_the_api_is_the_one_utc_type():
    seen = 0
    for name in API_MODULES:
        module = importlib.import_module(f"portal.integrations.{name}")
        for schema in vars(module).values():
            if not (inspect.isclass(schema) and issubclass(schema, ma.Schema)):
                continue
            for attr, declared in schema._declared_fields.items():
                for field in _inner(declared):
                    if isinstance(field, ma.fields.DateTime | ma.fields.Date | ma.fields.Time):
                        seen += 1
                        assert isinstance(field, UtcDateTime), f"{schema.__name__}.{attr}"
    assert seen >= 10  # the envelope's, its recipients', the timeline's, the batch's, ...


def test_an_envelope_and_its_timeline_write_utc_with_z(app, runner_for):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    api = Api(app.test_client(), make_key(app))
    # a moment with microseconds and, in local terms, another day: the API says it in UTC
    clock.travel_to(datetime(2026, 12, 5, 23, 59, 58, 987654, tzinfo=UTC))
    created = api.post("/api/v1/envelopes", refund_body(app, expiry_days=7))
    assert created.status_code == 201, created.get_data(as_text=True)
    envelope_id = created.get_json()["id"]
    api.post(f"/api/v1/envelopes/{envelope_id}/void", {"reason": "Duplicate"})

    envelope = api.get(f"/api/v1/envelopes/{envelope_id}").get_json()
    timeline = api.get(f"/api/v1/envelopes/{envelope_id}/events").get_json()
    listed = api.get("/api/v1/envelopes?created_since=2026-12-06T00:59:00%2B01:00").get_json()
    for document in (created.get_json(), envelope, timeline, listed):
        written = [(k, v) for k, v in _times(document) if v is not None]
        assert written, document
        assert all(UTC_Z.match(v) for _k, v in written), written
    keys = {k for k, _v in _times(envelope)}
    assert {"created_at", "sent_at", "expires_at", "finished_at"} <= keys
    sent = datetime.fromisoformat(envelope["sent_at"])
    assert sent.tzinfo == UTC and timedelta(0) <= sent - datetime(
        2026, 12, 5, 23, 59, 58, tzinfo=UTC
    ) < timedelta(minutes=5)
    assert [e["at"] for e in timeline["items"]] and [i["id"] for i in listed["items"]] == [
        envelope_id
    ]
