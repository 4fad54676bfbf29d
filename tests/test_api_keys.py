"""API keys: made by admins, shown once, stored as a hash, expiring, revocable, last use."""

from __future__ import annotations

import hashlib
import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.accounts.models import User
from portal.extensions import db
from portal.integrations.models import ApiKey
from tests.api_helpers import Api, Key, make_key
from tests.conftest import audit_events

SECRET = re.compile(r'<p class="secret" id="api-key-secret">(psk_[A-Za-z0-9_-]+)</p>')


@pytest.fixture(autouse=True)
def _clock_back():
    yield
    clock.reset()


def _team_id(app, name: str = "Customer Care") -> int:
    from portal.accounts import admin

    with app.app_context():
        return admin.find_team(name).id


def _create(portal, app, **changes):
    data = {
        "name": "CRM sync",
        "team": str(_team_id(app)),
        "scopes": ["templates:read", "envelopes:read"],
        "expiry": "never",
        **changes,
    }
    return portal.post("/admin/integrations/keys/new", data)


def test_admin_creates_a_key_shown_once_and_stored_as_a_hash(app, signed_in):
    portal, admin_staff = signed_in("admin")
    page = _create(portal, app)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    secret = SECRET.search(text).group(1)
    assert "shown only this once" in text and 'data-copy="#api-key-secret"' in text
    assert len(secret) >= 40
    with app.app_context():
        key = db.session.execute(select(ApiKey)).scalar_one()
        assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (key.prefix, key.secret_hash)
        assert secret.startswith(key.prefix) and len(key.prefix) == 12
        assert key.scope_list == ["envelopes:read", "templates:read"]
        assert key.expires_at is None
        assert key.actor.name == "API key: CRM sync" and key.actor.service
        assert key.actor.team_id == key.team_id
    listing = portal.client.get("/admin/integrations/keys").get_data(as_text=True)
    assert key.prefix in listing and secret not in listing
    assert "Never" in listing and "envelopes:read, templates:read" in listing
    (event,) = audit_events(app, "api_key.created")
    assert event.actor_id == str(admin_staff.id)
    assert event.data["prefix"] == key.prefix and event.data["name"] == "CRM sync"
    assert secret not in str(event.data)


def test_new_key_form_refuses_what_is_missing(app, signed_in):
    portal, _ = signed_in("admin")
    no_scope = _create(portal, app, scopes=[])
    assert no_scope.status_code == 422
    assert "Choose at least one of the listed scopes." in no_scope.get_data(as_text=True)
    no_name = _create(portal, app, name="   ")
    assert no_name.status_code == 422 and "Give the key a name" in no_name.get_data(as_text=True)
    bad_team = _create(portal, app, team="999999999999")
    assert bad_team.status_code == 422
    with app.app_context():
        assert db.session.execute(select(ApiKey)).first() is None
    assert audit_events(app, "api_key.created") == []


def test_only_admins_see_the_key_pages(app, signed_in):
    portal, _ = signed_in("agent")
    assert portal.client.get("/admin/integrations/keys").status_code == 403
    assert portal.client.get("/admin/integrations/keys/new").status_code == 403


def test_the_key_works_and_its_user_cannot_sign_in_or_be_listed(app, portal, signed_in):
    key = make_key(app)
    api = Api(app.test_client(), key)
    assert api.get("/api/v1/templates").status_code == 200
    with app.app_context():
        actor = db.session.get(ApiKey, key.id).actor
        email = actor.email
    response = portal.password_step(email, "!")
    assert response.status_code != 302
    admin_portal, _ = signed_in("admin")
    users = admin_portal.client.get("/admin/users").get_data(as_text=True)
    assert "API key: CRM sync" not in users and email not in users
    with app.app_context():
        user_id = db.session.execute(select(User.id).where(User.email == email)).scalar_one()
    assert admin_portal.client.get(f"/admin/users/{user_id}").status_code == 404


def test_an_expired_key_gets_401_like_a_wrong_one(app):
    key = make_key(app, expiry="30")
    api = Api(app.test_client(), key)
    assert api.get("/api/v1/templates").status_code == 200
    clock.travel_to(clock.utcnow() + timedelta(days=30, minutes=1))
    expired = api.get("/api/v1/templates")
    wrong = Api(app.test_client(), Key(0, key.secret[:-2] + "zz", 0, "")).get("/api/v1/templates")
    assert expired.status_code == wrong.status_code == 401
    assert expired.get_json() == {**wrong.get_json()}


def test_revoking_with_confirmation_stops_the_key(app, signed_in):
    key = make_key(app)
    api = Api(app.test_client(), key)
    assert api.get("/api/v1/templates").status_code == 200
    portal, admin_staff = signed_in("admin")
    confirm = portal.client.get(f"/admin/integrations/keys/{key.id}/revoke")
    assert confirm.status_code == 200
    assert "Revoke CRM sync?" in html.unescape(confirm.get_data(as_text=True))
    with app.app_context():
        assert db.session.get(ApiKey, key.id).revoked_at is None, "asking changes nothing"
    done = portal.post(f"/admin/integrations/keys/{key.id}/revoke", follow_redirects=True)
    assert "is revoked" in done.get_data(as_text=True) and "Revoked" in done.get_data(as_text=True)
    assert api.get("/api/v1/templates").status_code == 401
    (event,) = audit_events(app, "api_key.revoked")
    assert event.actor_id == str(admin_staff.id) and event.data["name"] == "CRM sync"
    again = portal.post(f"/admin/integrations/keys/{key.id}/revoke")
    assert again.status_code == 303 and len(audit_events(app, "api_key.revoked")) == 1


def test_last_use_is_written_at_most_once_a_minute(app, signed_in):
    portal, _ = signed_in("admin")  # (before the clock moves: its code is of now)
    key = make_key(app)
    api = Api(app.test_client(), key)

    def last_used():
        with app.app_context():
            found = db.session.get(ApiKey, key.id)
            return found.last_used_at, found.last_used_ip

    assert last_used() == (None, None)
    api.get("/api/v1/templates")
    first, ip = last_used()
    assert first is not None and ip == "127.0.0.1"
    clock.travel_to(clock.utcnow() + timedelta(seconds=30))
    api.get("/api/v1/templates")
    assert last_used()[0] == first
    clock.travel_to(clock.utcnow() + timedelta(seconds=40))
    api.get("/api/v1/templates")
    assert clock.as_utc(last_used()[0]) > clock.as_utc(first)
    listing = portal.client.get("/admin/integrations/keys").get_data(as_text=True)
    assert "from 127.0.0.1" in listing


def test_keys_never_see_other_teams(app, runner_for):
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    from tests.api_helpers import refund_body

    ours = Api(app.test_client(), make_key(app))
    theirs = Api(app.test_client(), make_key(app, name="Billing CRM", team="Billing"))
    created = ours.post("/api/v1/envelopes", refund_body(app)).get_json()
    template_id = refund_body(app)["template_id"]
    for url in (f"/api/v1/envelopes/{created['id']}", f"/api/v1/templates/{template_id}"):
        response = theirs.get(url)
        assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert theirs.get("/api/v1/envelopes").get_json()["items"] == []
    assert theirs.get("/api/v1/templates").get_json()["items"] == []
    refused = theirs.post("/api/v1/envelopes", refund_body(app))
    assert refused.status_code == 422 and "template_id" in refused.get_json()["errors"]
