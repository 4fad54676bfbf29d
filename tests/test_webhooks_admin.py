"""Webhooks: the admin pages, and a Redis outage during a signature."""

from __future__ import annotations

import re

from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import select

from portal.accounts.models import Team
from portal.extensions import db
from portal.integrations import delivery
from portal.integrations.webhooks import WebhookEndpoint, WebhookMessage
from tests import test_webhooks as base
from tests.conftest import audit_events
from tests.test_webhooks import add_endpoint, messages, send_refund, send_test, sign

# The receiver and the app that may reach it (fixtures of test_webhooks)
receiver = base.receiver
hook_app = base.hook_app


def _team_id(app) -> int:
    with app.app_context():
        return db.session.execute(select(Team.id).where(Team.name == "Customer Care")).scalar_one()


def _endpoint_id(app) -> int:
    with app.app_context():
        return db.session.execute(select(WebhookEndpoint.id)).scalars().one()


def test_admin_adds_an_endpoint_shows_and_rotates_its_secret_and_sends_a_test(
    make_app, signed_in, receiver
):
    portal, _staff = signed_in("admin")
    portal.app.config["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    client = portal.client
    index = client.get("/admin/integrations/").get_data(as_text=True)
    assert "/admin/integrations/webhooks" in index
    assert "No webhook endpoints yet." in client.get("/admin/integrations/webhooks").get_data(
        as_text=True
    )
    team = str(_team_id(portal.app))
    refused = portal.post(
        "/admin/integrations/webhooks/new",
        {"team": team, "url": "http://169.254.169.254/latest/", "events": "*"},
    )
    assert refused.status_code == 422
    assert "link-local" in refused.get_data(as_text=True)
    none = portal.post("/admin/integrations/webhooks/new", {"team": team, "url": receiver.url})
    assert none.status_code == 422 and "Choose at least one event" in none.get_data(as_text=True)
    added = portal.post(
        "/admin/integrations/webhooks/new",
        {"team": team, "url": receiver.url, "description": "Help desk", "events": "*"},
    )
    assert added.status_code == 302
    endpoint_id = _endpoint_id(portal.app)
    page = client.get(f"/admin/integrations/webhooks/{endpoint_id}").get_data(as_text=True)
    assert receiver.url in page and "Help desk" in page and "whsec_" not in page
    shown = portal.htmx_post(f"/admin/integrations/webhooks/{endpoint_id}/secret")
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", shown.get_data(as_text=True)).group(0)
    assert "<html" not in shown.get_data(as_text=True), "a fragment for htmx"
    receiver.secrets.append(secret)
    rotated = portal.htmx_post(f"/admin/integrations/webhooks/{endpoint_id}/rotate")
    fresh = re.search(r"whsec_[A-Za-z0-9+/=]+", rotated.get_data(as_text=True)).group(0)
    assert fresh != secret and "24 hours" in rotated.get_data(as_text=True)
    receiver.secrets.append(fresh)
    tested = portal.post(f"/admin/integrations/webhooks/{endpoint_id}/test")
    assert tested.status_code == 302
    assert receiver.types() == ["webhook.test"]
    assert receiver.verified_with == [{secret, fresh}]
    log = client.get(f"/admin/integrations/webhooks/{endpoint_id}").get_data(as_text=True)
    assert "webhook.test" in log and "Delivered" in log
    (message,) = messages(portal.app)
    detail = client.get(
        f"/admin/integrations/webhooks/{endpoint_id}/messages/{message.id}",
        headers={"HX-Request": "true"},
    ).get_data(as_text=True)
    assert message.public_id in detail and "delivered (204)" in detail
    again = portal.post(
        f"/admin/integrations/webhooks/{endpoint_id}/messages/{message.id}/redeliver"
    )
    assert again.status_code == 302 and len(receiver.deliveries) == 2
    bad = portal.post(f"/admin/integrations/webhooks/{endpoint_id}/replay", {"since": "soon"})
    assert bad.status_code == 422 and "is not a date and time" in bad.get_data(as_text=True)
    replay = portal.post(
        f"/admin/integrations/webhooks/{endpoint_id}/replay", {"since": "2000-01-01T00:00"}
    )
    assert replay.status_code == 302 and len(receiver.deliveries) == 3
    assert receiver.all_verified()
    for name in ("webhook.endpoint_created", "webhook.secret_revealed", "webhook.secret_rotated",
                 "webhook.test_sent", "webhook.redelivered", "webhook.replayed"):  # fmt: skip
        assert audit_events(portal.app, name), name


def test_admin_changes_disables_and_deletes_an_endpoint(signed_in, receiver):
    portal, _staff = signed_in("admin")
    portal.app.config["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    team = str(_team_id(portal.app))
    portal.post(
        "/admin/integrations/webhooks/new", {"team": team, "url": receiver.url, "events": "*"}
    )
    endpoint_id = _endpoint_id(portal.app)
    url = f"/admin/integrations/webhooks/{endpoint_id}"
    wrong = portal.post(url, {"url": "http://[::1]/x", "events": "*", "enabled": "yes"})
    assert wrong.status_code == 422 and "loopback" in wrong.get_data(as_text=True)
    saved = portal.post(url, {"url": receiver.url, "events": "envelope.completed"})
    assert saved.status_code == 302
    with portal.app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert endpoint.event_types == ["envelope.completed"] and not endpoint.enabled
    test = portal.post(f"{url}/test")
    assert test.status_code == 302 and receiver.deliveries == []
    assert "Enable the endpoint first." in portal.client.get(url).get_data(as_text=True)
    changed = audit_events(portal.app, "webhook.endpoint_changed")
    assert changed and changed[-1].data["enabled"] is False
    gone = portal.post(f"{url}/delete")
    assert gone.status_code == 302
    assert portal.client.get(url).status_code == 404
    assert audit_events(portal.app, "webhook.endpoint_deleted")


def test_agents_cannot_open_the_webhook_pages(signed_in):
    portal, _ = signed_in("agent")
    assert portal.client.get("/admin/integrations/webhooks").status_code == 403
    assert (
        portal.post("/admin/integrations/webhooks/new", {"url": "https://x.example"}).status_code
        == 403
    )


def test_a_redis_outage_during_a_signature_delays_the_webhook_until_redis_returns(
    hook_app, receiver, make_app, redis_server
):
    add_endpoint(hook_app, receiver)
    down = make_app(
        REDIS_URL="redis://127.0.0.1:1/0", JOBS_INLINE=False, WEBHOOK_ALLOWED_HOSTS="127.0.0.1"
    )
    _envelope_id, public_id, link = send_refund(down)
    sign(down, public_id, link)
    assert receiver.deliveries == [], "Redis is down: nothing sent yet"
    pending = [m.type for m in messages(down) if m.status == "pending"]
    assert "envelope.completed" in pending and "recipient.signed" in pending
    conn = Redis.from_url(redis_server.url)
    conn.flushdb()
    back = make_app(
        REDIS_URL=redis_server.url, JOBS_INLINE=False, WEBHOOK_ALLOWED_HOSTS="127.0.0.1"
    )
    with back.app_context():
        assert "1 webhook endpoints" in delivery.sweep_webhooks()
        assert Queue("webhooks", connection=conn).count == 1
        SimpleWorker([Queue("webhooks", connection=conn)], connection=conn).work(burst=True)
    conn.flushdb()
    conn.close()
    assert "envelope.completed" in receiver.types() and receiver.all_verified()
    completed = receiver.deliveries[receiver.types().index("envelope.completed")]["json"]
    assert completed["data"]["envelope"]["id"] == public_id
    with back.app_context():
        left = db.session.execute(
            select(WebhookMessage).where(WebhookMessage.status != "delivered")
        ).scalars()
        assert list(left) == []


def test_a_410_answer_disables_the_endpoint(hook_app, receiver):
    receiver.status = 410
    endpoint_id = add_endpoint(hook_app, receiver)
    send_test(hook_app, endpoint_id)
    with hook_app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert not endpoint.enabled and "410" in endpoint.disabled_reason
