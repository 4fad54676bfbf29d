"""Webhooks at a contact centre's volume: an endpoint's log is read from its index."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from portal.extensions import db
from portal.integrations import webhooks
from tests import test_webhooks as base
from tests.conftest import query_plan
from tests.test_webhooks import add_endpoint

# The receiver and the app that may reach it (fixtures of test_webhooks)
receiver = base.receiver
hook_app = base.hook_app

BUSY_MESSAGES = 200_000


@pytest.mark.postgresql_only
def test_an_endpoints_log_is_read_newest_first_from_its_index_beside_a_busy_one(hook_app, receiver):
    busy = add_endpoint(hook_app, receiver)
    quiet = add_endpoint(hook_app, receiver)
    fill = text(
        "INSERT INTO webhook_message (public_id, endpoint_id, type, body, created_at, status,"
        " attempts) SELECT :tag || i, :endpoint, 'envelope.completed', '{}',"
        " now() - (:count - i) * interval '1 second', 'delivered', 1"
        " FROM generate_series(1, :count) AS i"
    )
    with hook_app.app_context():
        db.session.execute(fill, {"tag": "msg_busy_", "endpoint": busy, "count": BUSY_MESSAGES})
        db.session.execute(fill, {"tag": "msg_quiet_", "endpoint": quiet, "count": 10})
        db.session.execute(fill, {"tag": "msg_late_", "endpoint": busy, "count": 1000})
        db.session.commit()
        with db.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE webhook_message")
        for endpoint in (busy, quiet):
            plan = query_plan(webhooks.log_query(endpoint))
            assert "ix_webhook_message_endpoint_order" in plan, plan
            assert "Sort" not in plan and "Seq Scan" not in plan, plan
        shown = webhooks.messages_of(db.session.get(webhooks.WebhookEndpoint, quiet))
        assert [m.public_id for m in shown] == [f"msg_quiet_{i}" for i in range(10, 0, -1)]
        newest = webhooks.messages_of(db.session.get(webhooks.WebhookEndpoint, busy), limit=3)
        assert [m.public_id for m in newest] == ["msg_late_1000", "msg_late_999", "msg_late_998"]
