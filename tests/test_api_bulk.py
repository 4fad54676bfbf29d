"""Bulk batches from the API: JSON rows or a CSV upload, checked and sent like the console's."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from portal.bulk import drafts
from portal.bulk.models import BulkBatch, BulkRow
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import operations as library
from tests.bulk_helpers import Bulk, bulk_threads_end, counts, refund_row  # noqa: F401
from tests.conftest import audit_events, demo_agent, demo_template


def json_row(number: int, **changes: str) -> dict:
    """A refund row as the API takes it (the customer's name and email from the merge keys)."""
    values = refund_row(number, **changes)
    return {
        "merge_data": values,
        "recipients": [{"role": "customer", "locale": "es" if number % 2 else "en"}],
        "ticket_id": f"CRM-{number}",
        "ticket_url": f"https://crm.example.com/t/{number}",
    }


@pytest.fixture
def seeded(app, runner_for):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    return app


def test_json_rows_become_a_checked_draft_as_a_file_would(seeded):
    app = seeded
    with app.app_context():
        version = library.approved_version(demo_template())
        rows = [json_row(1), json_row(2, **{"customer.email": "not-an-email"}), json_row(3)]
        batch = drafts.from_rows(version, rows, by=demo_agent())
        assert batch.file_name == drafts.JSON_ROWS_FILE and batch.state == "draft"
        assert (batch.total_rows, batch.ready_rows, batch.invalid_rows) == (3, 2, 1)
        stored = db.session.execute(
            select(BulkRow).where(BulkRow.batch_id == batch.id).order_by(BulkRow.number)
        ).scalars()
        by_number = {row.number: row for row in stored}
        assert by_number[2].merge_data["order.number"] == "ORD-00001", "row i is number i + 2"
        assert by_number[2].people[0]["locale"] == "es" and by_number[3].people[0]["locale"] == "en"
        assert by_number[3].problems == [
            {"column": "Customer: email", "message": by_number[3].problems[0]["message"]}
        ]
        assert "@" in by_number[3].problems[0]["message"]
        assert by_number[4].ticket_url == "https://crm.example.com/t/3"
    created = audit_events(app, "bulk.created")[0]
    assert created.data["file"] == drafts.JSON_ROWS_FILE and created.data["rows"] == 3


def test_json_rows_naming_what_the_template_lacks_are_refused(seeded):
    app = seeded
    with app.app_context():
        version = library.approved_version(demo_template())
        row = json_row(1)
        row["merge_data"]["colour"] = "red"
        row["recipients"].append({"role": "notary", "name": "N", "email": "n@example.com"})
        with pytest.raises(drafts.BulkError) as refused:
            drafts.from_rows(version, [row], by=demo_agent())
        message = str(refused.value)
        assert "rows[0].merge_data.colour" in message
        assert "rows[0].recipients[notary].name" in message
        assert db.session.execute(select(BulkBatch)).first() is None


def test_json_rows_are_sent_by_the_batch_job(seeded):
    app = seeded
    with app.app_context():
        version = library.approved_version(demo_template())
        batch = drafts.from_rows(version, [json_row(n) for n in range(1, 6)], by=demo_agent())
        assert drafts.start(batch, by=demo_agent(), exclude_problems=False) == 5
        public_id = batch.public_id
    bulk = Bulk(app, None, version_id=0)  # type: ignore[arg-type]
    assert bulk.wait(public_id).state == "finished"
    assert counts(app) == (5, 5)
    with app.app_context():
        tickets = db.session.execute(select(Envelope.ticket_id)).scalars().all()
        assert sorted(tickets) == [f"CRM-{n}" for n in range(1, 6)]


# ---------------------------------------------------------------- through the API


@pytest.fixture
def api(seeded):
    from tests.api_helpers import Api, make_key

    return Api(seeded.test_client(), make_key(seeded))


def _template_id(app) -> int:
    with app.app_context():
        return demo_template().id


def _finished(app, api, batch_id: str) -> dict:
    bulk = Bulk(app, None, version_id=0)  # type: ignore[arg-type]
    bulk.wait(batch_id)
    got = api.get(f"/api/v1/bulk/{batch_id}")
    assert got.status_code == 200
    return got.get_json()


def test_api_batch_from_json_rows_is_sent_and_reported_in_pages(seeded, api):
    app = seeded
    rows = [json_row(n) for n in range(1, 6)]
    made = api.post("/api/v1/bulk", {"template_id": _template_id(app), "rows": rows})
    assert made.status_code == 201, made.get_data(as_text=True)
    batch = made.get_json()
    assert made.headers["Location"] == f"/api/v1/bulk/{batch['id']}"
    status = _finished(app, api, batch["id"])
    assert status["state"] == "finished" and status["counts"]["created"] == 5
    assert status["counts"]["total"] == 5
    assert counts(app) == (5, 5)

    first = api.get(f"/api/v1/bulk/{batch['id']}/rows?limit=2")
    page = first.get_json()
    assert [r["index"] for r in page["items"]] == [0, 1] and page["next_cursor"]
    assert 'rel="next"' in first.headers["Link"]
    seen = page["items"]
    while page["next_cursor"]:
        page = api.get(
            f"/api/v1/bulk/{batch['id']}/rows?limit=2&cursor={page['next_cursor']}"
        ).get_json()
        seen += page["items"]
    assert [r["index"] for r in seen] == [0, 1, 2, 3, 4]
    assert all(r["state"] == "created" and r["envelope_status"] == "sent" for r in seen)
    assert seen[2]["ticket_id"] == "CRM-3" and seen[2]["envelope_id"]
    assert api.get(f"/api/v1/bulk/{batch['id']}/rows?cursor=abc").status_code == 422

    [created] = audit_events(app, "bulk.created")
    assert created.actor_label == "API key: CRM sync"
    sent_by = {e.actor_label for e in audit_events(app, "envelope.created")}
    assert sent_by == {"API key: CRM sync"}


def test_api_batch_with_a_bad_row_sends_nothing_unless_told_to_skip_it(seeded, api):
    app = seeded
    rows = [json_row(1), json_row(2, **{"customer.email": "two-at-example.com"}), json_row(3)]
    refused = api.post("/api/v1/bulk", {"template_id": _template_id(app), "rows": rows})
    assert refused.status_code == 422
    problem = refused.get_json()
    assert "1 of 3 rows have problems; nothing was sent" in problem["detail"]
    assert list(problem["errors"]["rows"]) == ["1"]
    assert "@" in problem["errors"]["rows"]["1"]["Customer: email"][0]
    assert counts(app) == (0, 0)
    assert audit_events(app, "bulk.discarded")

    skipped = api.post(
        "/api/v1/bulk", {"template_id": _template_id(app), "rows": rows, "skip_invalid": True}
    )
    assert skipped.status_code == 201
    status = _finished(app, api, skipped.get_json()["id"])
    assert status["counts"]["created"] == 2 and status["counts"]["invalid"] == 1
    assert counts(app) == (2, 2)


def test_api_batch_from_a_csv_upload(seeded, api):
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    app = seeded
    with app.app_context():
        from portal.bulk import columns as cols

        version = library.approved_version(demo_template())
        data = cols.rows_csv(version, [json_row(n) for n in range(1, 4)])
    boundary, body = encode_multipart(
        {
            "template_id": str(_template_id(app)),
            "file": FileStorage(io.BytesIO(data), "customers.csv"),
        }
    )
    made = api.post(
        "/api/v1/bulk", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    status = _finished(app, api, made.get_json()["id"])
    assert status["file_name"] == "customers.csv" and status["counts"]["created"] == 3
    rows = api.get(f"/api/v1/bulk/{status['id']}/rows").get_json()["items"]
    assert [r["number"] for r in rows] == [2, 3, 4] and rows[0]["index"] is None

    boundary, body = encode_multipart(
        {
            "template_id": str(_template_id(app)),
            "file": FileStorage(io.BytesIO(b"\x00\x01PNG"), "x.csv"),
        }
    )
    binary = api.post(
        "/api/v1/bulk", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert binary.status_code == 422 and "Nothing was sent" in binary.get_json()["detail"]
    assert audit_events(app, "bulk.upload_refused")


def test_api_batch_refusals_name_the_field(seeded, api):
    app = seeded
    row = json_row(1)
    row["merge_data"]["colour"] = "red"
    unknown = api.post("/api/v1/bulk", {"template_id": _template_id(app), "rows": [row]})
    assert (
        unknown.status_code == 422 and "rows[0].merge_data.colour" in unknown.get_json()["detail"]
    )
    wrong_type = api.post("/api/v1/bulk", {"template_id": "7", "rows": "all"})
    assert wrong_type.status_code == 422
    assert set(wrong_type.get_json()["errors"]) == {"template_id", "rows"}
    no_template = api.post("/api/v1/bulk", {"template_id": 99999, "rows": [json_row(1)]})
    assert no_template.status_code == 422 and "template_id" in no_template.get_json()["errors"]
    assert counts(app) == (0, 0)


def test_other_teams_batches_are_not_found(seeded, api):
    from tests.api_helpers import Api, make_key

    app = seeded
    made = api.post("/api/v1/bulk", {"template_id": _template_id(app), "rows": [json_row(1)]})
    batch_id = made.get_json()["id"]
    _finished(app, api, batch_id)
    stranger = Api(app.test_client(), make_key(app, name="Other", team="Field Sales"))
    assert stranger.get(f"/api/v1/bulk/{batch_id}").status_code == 404
    assert stranger.get(f"/api/v1/bulk/{batch_id}/rows").status_code == 404
