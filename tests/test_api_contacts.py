"""An envelope sent through the API is "sent" by the key's service user, whose address is made
up: mail meant for the sender reaches the admin who made the key, and signers see the key's
team named as the sender (``portal.accounts.contacts``)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.mail import Message
from tests.api_helpers import Api, make_key, refund_body
from tests.test_signing import _csrf

CREATOR_NAME = "Keys Admin"  # tests.api_helpers.make_key's admin


@pytest.fixture
def api_sent(app, runner_for):
    """Send the refund through the API; returns (public_id, the signing path, creator's address)."""
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    key = make_key(app)
    created = Api(app.test_client(), key).post("/api/v1/envelopes", refund_body(app))
    assert created.status_code == 201, created.get_data(as_text=True)
    public_id = created.get_json()["id"]
    with app.app_context():
        request = db.session.execute(
            select(Message).where(Message.kind == "signing_request")
        ).scalar_one()
        link = re.search(r"/s/[A-Za-z0-9_-]+", request.text_body).group(0)
        # the customer's email names the team, not the key or its made-up address
        assert "Customer Care" in request.text_body and "API key" not in request.text_body
        assert "api-keys.invalid" not in request.text_body
    return public_id, link, f"keys-admin-{key.team_id}@example.test"


def _notices(app) -> list[Message]:
    with app.app_context():
        found = db.session.execute(select(Message).where(Message.kind == "notice")).scalars()
        return list(found)


def _opened(app, public_id: str, link: str):
    customer = app.test_client()
    assert customer.get(link).headers["Location"] == f"/sign/{public_id}"
    token = _csrf(customer, f"/sign/{public_id}")
    consent = customer.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Customer Care sent you" in consent, consent
    customer.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    page = customer.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Contact Customer Care, who sent it to you" in page
    assert "API key" not in page and "api-keys.invalid" not in page
    return customer, token


def test_a_decline_reaches_the_admin_who_made_the_key(app, api_sent):
    public_id, link, creator = api_sent
    customer, token = _opened(app, public_id, link)
    customer.post(f"/sign/{public_id}/decline", data={"csrf_token": token, "reason": "Wrong sum"})
    done = customer.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "You declined this document" in done and "API key" not in done
    (notice,) = _notices(app)
    assert notice.to_address == creator and notice.to_name == CREATOR_NAME
    assert "Wrong sum" in notice.text_body and f"Hello {CREATOR_NAME}" in notice.text_body


def test_the_completion_notice_reaches_the_admin_who_made_the_key(app, api_sent):
    public_id, link, creator = api_sent
    customer, token = _opened(app, public_id, link)
    signed = customer.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Ana Muñoz", "agree": "yes"},
    )
    assert signed.status_code == 302, signed.get_data(as_text=True)
    notices = _notices(app)
    assert [n.to_address for n in notices] == [creator]
    assert "Refund authorization" in notices[0].text_body
    with app.app_context():
        copy = db.session.execute(select(Message).where(Message.kind == "completed")).scalar_one()
        assert copy.to_address == "ana0@example.com" and "API key" not in copy.text_body
