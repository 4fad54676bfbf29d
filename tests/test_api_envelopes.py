"""The envelopes resource: send from a template, list with filters and cursor pages, read one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from tests.api_helpers import Api, make_key, refund_body
from tests.conftest import audit_events, demo_template


@pytest.fixture
def seeded(app, runner_for):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    return app


@pytest.fixture
def api(seeded) -> Api:
    return Api(seeded.test_client(), make_key(seeded))


def test_templates_list_and_detail(seeded, api):
    listed = api.get("/api/v1/templates").get_json()["items"]
    names = [t["name"] for t in listed]
    assert "Refund authorization" in names
    refund = next(t for t in listed if t["name"] == "Refund authorization")
    assert refund["version"] >= 1 and refund["approved_at"].endswith("Z")
    detail = api.get(f"/api/v1/templates/{refund['id']}").get_json()
    assert detail["roles"][0]["key"] == "customer"
    keys = {k["key"]: k for k in detail["merge_keys"]}
    assert keys["customer.name"]["label"] == "Customer name" and keys["customer.name"]["required"]
    assert any(f["type"] == "signature" and f["role"] == "customer" for f in detail["fields"])
    assert detail["settings"]["expiry_days"] >= 1
    missing = api.get("/api/v1/templates/987654")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_create_from_the_refund_template_with_merge_data(seeded, api):
    body = refund_body(seeded, message="Thanks for calling", expiry_days=7)
    response = api.post("/api/v1/envelopes", body)
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/envelopes/{created['id']}")
    assert created["status"] == "sent" and created["title"] == "Refund authorization"
    assert created["ticket_id"] == "CRM-1001"
    assert created["ticket_url"] == "https://crm.example.com/tickets/1001"
    assert created["template"]["name"] == "Refund authorization"
    (person,) = created["recipients"]
    assert person["email"] == "ana0@example.com" and person["status"] == "sent"
    assert created["seal"]["status"] is None
    assert created["links"]["sealed"] == f"/api/v1/envelopes/{created['id']}/sealed"
    with seeded.app_context():
        envelope = db.session.execute(
            select(Envelope).where(Envelope.public_id == created["id"])
        ).scalar_one()
        assert envelope.merge_data == body["merge_data"]
        assert envelope.settings["expiry_days"] == 7
        assert envelope.created_by.name == "API key: CRM sync"
    for name in ("envelope.created", "envelope.sent"):
        (event,) = audit_events(seeded, name)
        assert event.actor_label == "API key: CRM sync", name
    again = api.get(f"/api/v1/envelopes/{created['id']}")
    assert again.status_code == 200 and again.get_json() == created


def test_send_refusals_use_the_consoles_checks(seeded, api):
    too_long = api.post("/api/v1/envelopes", refund_body(seeded, expiry_days=400))
    assert too_long.status_code == 422
    assert "Expiry must be between" in too_long.get_json()["detail"]
    body = refund_body(seeded)
    body["merge_data"].pop("customer.name")
    missing = api.post("/api/v1/envelopes", body)
    assert missing.status_code == 422 and "Customer name" in missing.get_json()["detail"]
    body = refund_body(seeded)
    body["recipients"][0]["email"] = "not-an-email"
    assert "not valid" in api.post("/api/v1/envelopes", body).get_json()["detail"]
    body = refund_body(seeded)
    body["recipients"][0]["role"] = "accountant"
    wrong_role = api.post("/api/v1/envelopes", body).get_json()
    assert "Not a role" in wrong_role["errors"]["recipients"]["0"]["role"][0]
    bad_url = api.post("/api/v1/envelopes", refund_body(seeded, ticket_url="javascript:alert(1)"))
    assert "https://" in bad_url.get_json()["detail"]
    assert audit_events(seeded, "envelope.created") == []


def test_write_scope_is_needed_to_send(seeded):
    reader = Api(seeded.test_client(), make_key(seeded, scopes=["envelopes:read"]))
    response = reader.post("/api/v1/envelopes", refund_body(seeded))
    assert response.status_code == 403
    assert audit_events(seeded, "envelope.created") == []


def test_list_filters(seeded, api):
    first = api.post("/api/v1/envelopes", refund_body(seeded)).get_json()
    body = refund_body(seeded, ticket_id="CRM-2002")
    body["recipients"][0]["email"] = "bo@example.com"
    second = api.post("/api/v1/envelopes", body).get_json()

    def ids(query: str) -> list[str]:
        response = api.get(f"/api/v1/envelopes?{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return [e["id"] for e in response.get_json()["items"]]

    assert ids("") == [second["id"], first["id"]], "newest first"
    assert ids("ticket_id=CRM-2002") == [second["id"]]
    assert ids("recipient_email=bo@example.com") == [second["id"]]
    assert ids("status=sent") == [second["id"], first["id"]]
    assert ids("status=completed") == []
    assert ids(f"template_id={first['template']['id']}") == [second["id"], first["id"]]
    assert ids("template_id=987654") == []
    later = (clock.utcnow() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(f"created_since={later}") == []
    assert ids(f"created_until={later}") == [second["id"], first["id"]]
    bad = api.get("/api/v1/envelopes?status=lost&limit=500&created_since=yesterday")
    assert bad.status_code == 422
    assert {"status", "limit", "created_since"} <= set(bad.get_json()["errors"]["query"])


def _many_envelopes(app, count: int) -> set[str]:
    """``count`` envelopes of the team, many sharing one creation time (ties on created_at)."""
    from portal.accounts import admin
    from portal.library import queries

    with app.app_context():
        team = admin.find_team("Customer Care")
        version = queries.approved_version(demo_template())
        sender = db.session.execute(select(Envelope.created_by_id).limit(1)).scalar_one_or_none()
        from portal.accounts.models import User

        if sender is None:
            sender = db.session.execute(
                select(User.id).where(User.email == "agent@demo.example")
            ).scalar_one()
        moment = clock.utcnow() - timedelta(days=1)
        made = []
        for n in range(count):
            envelope = Envelope(
                public_id=f"{n:032x}",
                template_version_id=version.id,
                team_id=team.id,
                created_by_id=sender,
                title="Refund authorization",
                status="sent",
                merge_data={},
                settings={},
                original_sha256="0" * 64,
                page_count=1,
                created_at=moment - timedelta(minutes=n // 7),  # runs of 7 share a time
            )
            envelope.recipients.append(
                Recipient(
                    role="customer",
                    role_name="Customer",
                    kind="signer",
                    order=1,
                    name=f"Customer {n}",
                    email=f"c{n}@example.com",
                )
            )
            made.append(envelope)
        db.session.add_all(made)
        db.session.commit()
        return {e.public_id for e in made}


def test_pages_of_over_100_envelopes_have_no_duplicates_or_gaps(seeded, api):
    expected = _many_envelopes(seeded, 130)
    seen: list[str] = []
    url = "/api/v1/envelopes?limit=100"
    pages = 0
    while url:
        response = api.get(url)
        assert response.status_code == 200
        body = response.get_json()
        seen += [e["id"] for e in body["items"]]
        pages += 1
        if body["next_cursor"]:
            link = response.headers["Link"]
            assert link.endswith('>; rel="next"') and body["next_cursor"] in link
            url = link[1 : link.index(">")].replace("http://localhost", "")
        else:
            assert "Link" not in response.headers
            url = ""
    assert pages == 2
    assert len(seen) == len(set(seen)) == 130 and set(seen) == expected
    small = api.get("/api/v1/envelopes?limit=25").get_json()
    assert len(small["items"]) == 25 and small["next_cursor"]
    assert api.get("/api/v1/envelopes?limit=0").status_code == 422
    assert api.get("/api/v1/envelopes?limit=101").status_code == 422
    bad = api.get("/api/v1/envelopes?cursor=bm90LWEtY3Vyc29y")
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    assert "cursor" in bad.get_json()["errors"]["query"]


def test_unknown_envelope_is_404(api):
    response = api.get("/api/v1/envelopes/" + "f" * 32)
    assert response.status_code == 404
    assert response.get_json()["type"].endswith("/problems/not-found")
