"""Webhooks end to end: a real HTTP receiver verifies every delivery with ``standardwebhooks``."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import standardwebhooks.webhooks as swh
from sqlalchemy import func, select
from standardwebhooks import Webhook

from portal import audit, clock
from portal.accounts.models import User
from portal.envelopes import sending
from portal.envelopes.operations import RecipientInput
from portal.extensions import db
from portal.integrations import delivery, webhooks
from portal.integrations.webhooks import WebhookAttempt, WebhookEndpoint, WebhookMessage
from portal.library import operations as library
from tests.conftest import audit_events, demo_agent, demo_template
from tests.test_envelopes import REFUND_VALUES

TICKET = ("CS-4711", "https://crm.example/tickets/4711")


class _ReceiverClock(datetime):
    """The receiver's clock is the portal's (tests move the portal's clock by days)."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return clock.utcnow().astimezone(tz) if tz else clock.utcnow()


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that verifies each delivery with every secret it
    is given (``secrets``) and answers ``status`` after ``delay`` seconds."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.status = 204
        self.delay = 0.0
        self.location: str | None = None
        self.retry_after: str | None = None
        self.deliveries: list[dict[str, Any]] = []
        self.verified_with: list[set[str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = set()
                for secret in receiver.secrets:
                    try:
                        Webhook(secret).verify(body, headers)
                        ok.add(secret)
                    except swh.WebhookVerificationError:
                        pass
                receiver.deliveries.append(
                    {"headers": headers, "body": body, "json": json.loads(body), "path": self.path}
                )
                receiver.verified_with.append(ok)
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                if receiver.retry_after:
                    self.send_header("Retry-After", receiver.retry_after)
                answer = b"x" * 3000 if receiver.status >= 500 else b"ok"
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def types(self) -> list[str]:
        return [d["json"]["type"] for d in self.deliveries]

    def all_verified(self) -> bool:
        return all(self.verified_with) and len(self.verified_with) == len(self.deliveries)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Receiver]:
    monkeypatch.setattr(swh, "datetime", _ReceiverClock)
    server = Receiver()
    yield server
    server.stop()
    clock.reset()


@pytest.fixture
def hook_app(make_app, runner_for):
    """The demo data, and webhooks allowed to reach 127.0.0.1 (the test's receiver)."""
    app = make_app(WEBHOOK_ALLOWED_HOSTS="127.0.0.1", WEBHOOK_TIMEOUT_SECONDS=2)
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    return app


def admin() -> User:
    return db.session.execute(select(User).where(User.role == "admin")).scalars().first()


def add_endpoint(app, receiver: Receiver, types=("*",), url: str | None = None) -> int:
    """An endpoint for the demo agent's team; the receiver learns its secret."""
    with app.app_context():
        team = demo_agent().team
        endpoint, secret = webhooks.create_endpoint(
            team, url or receiver.url, "CRM", types, by=admin()
        )
        db.session.commit()
        receiver.secrets.append(secret)
        return endpoint.id


def send_refund(app, ticket: tuple[str, str] = TICKET) -> tuple[int, str, str]:
    with app.app_context():
        version = library.approved_version(demo_template())
        people = [RecipientInput(role="customer", name="Zoë Łukasiewicz", email="zoe@example.com")]
        envelope, links = sending.create_and_send(
            version, REFUND_VALUES, people, by=demo_agent(), ticket_id=ticket[0],
            ticket_url=ticket[1],
        )  # fmt: skip
        return envelope.id, envelope.public_id, next(iter(links.values()))


def sign(app, public_id: str, link: str) -> None:
    client = app.test_client()
    assert client.get(link.replace("http://127.0.0.1:5000", "")).status_code == 302
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    done = client.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Zoë Łukasiewicz",
              "agree": "yes"},
    )  # fmt: skip
    assert done.status_code == 302, done.get_data(as_text=True)


def send_test(app, endpoint_id: int) -> None:
    """The admin's "Send test event" (delivered inline, right after the commit)."""
    with app.app_context():
        webhooks.send_test(db.session.get(WebhookEndpoint, endpoint_id), by=admin())
        db.session.commit()


def messages(app) -> list[WebhookMessage]:
    with app.app_context():
        found = list(
            db.session.execute(select(WebhookMessage).order_by(WebhookMessage.id)).scalars()
        )
        db.session.expunge_all()
        return found


# ---------------------------------------------------------------- the flow


def test_signing_delivers_verified_events_with_the_ticket_and_no_personal_data(hook_app, receiver):
    add_endpoint(hook_app, receiver)
    _envelope_id, public_id, link = send_refund(hook_app)
    sign(hook_app, public_id, link)
    types = receiver.types()
    for wanted in ("envelope.created", "envelope.sent", "recipient.viewed", "envelope.viewed",
                   "recipient.signed", "envelope.completed", "envelope.sealed"):  # fmt: skip
        assert wanted in types, (wanted, types)
    assert types.index("envelope.completed") < types.index("envelope.sealed")
    assert receiver.all_verified(), "every delivery verifies with standardwebhooks"
    sealed = receiver.deliveries[types.index("envelope.sealed")]
    data = sealed["json"]["data"]["envelope"]
    assert data["id"] == public_id and data["status"] == "completed"
    assert data["seal_status"] == "sealed" and data["sealed_sha256"]
    assert (data["ticket_id"], data["ticket_url"]) == TICKET
    assert sealed["json"]["timestamp"].endswith("Z")
    signed = receiver.deliveries[types.index("recipient.signed")]["json"]["data"]["recipient"]
    assert signed["role"] == "customer" and signed["kind"] == "signer"
    assert signed["status"] == "signed"
    everything = b"".join(d["body"] for d in receiver.deliveries).decode()
    for personal in ("Zoë", "zoe@example.com", "Łukasiewicz", "127.0.0.1", "ORD-77"):
        assert personal not in everything
    ids = [d["headers"]["webhook-id"] for d in receiver.deliveries]
    assert len(set(ids)) == len(ids) and all(i.startswith("msg_") for i in ids)
    assert all(m.status == "delivered" and m.attempts == 1 for m in messages(hook_app))


def test_an_endpoint_gets_only_the_types_it_chose_and_other_teams_nothing(hook_app, receiver):
    add_endpoint(hook_app, receiver, types=("envelope.completed",))
    with hook_app.app_context():
        from portal.accounts import admin as accounts

        other = accounts.create_team("Other team", by="test")
        webhooks.create_endpoint(other, receiver.url, "", ["*"], by=admin())
        db.session.commit()
    _envelope_id, public_id, link = send_refund(hook_app)
    sign(hook_app, public_id, link)
    assert receiver.types() == ["envelope.completed"]


def test_nothing_is_written_or_sent_for_a_rolled_back_change(hook_app, receiver):
    from portal.envelopes.models import Envelope

    add_endpoint(hook_app, receiver)
    envelope_id, _public_id, _link = send_refund(hook_app)
    before = len(messages(hook_app))
    sent_before = len(receiver.deliveries)
    assert before == sent_before == 2  # created, sent
    with hook_app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        envelope.status = "voided"
        audit.record("envelope.voided", subject=envelope, data={"reason": "x"})
        assert db.session.scalar(select(func.count()).select_from(WebhookMessage)) == before + 1
        db.session.rollback()
    assert len(messages(hook_app)) == before and len(receiver.deliveries) == sent_before


def test_a_team_without_endpoints_costs_one_query_per_record_call(hook_app, receiver):
    from sqlalchemy import event

    add_endpoint(hook_app, receiver)
    with hook_app.app_context():
        db.session.execute(db.delete(WebhookEndpoint))  # no endpoint at all: nothing to write
        db.session.commit()
        team_id = demo_agent().team_id
        statements: list[str] = []

        def count(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            items = [
                audit.Pending("envelope.created", subject=("bulk_batch", str(i), None))
                for i in range(1000)
            ]
            webhooks._outbox(items, [{"team_id": team_id, "envelope_id": None}] * 1000)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        db.session.rollback()
    assert len([s for s in statements if "webhook_endpoint" in s]) == 1
    assert len(statements) == 1


# ---------------------------------------------------------------- secrets


def test_secret_is_whsec_random_stored_encrypted_and_revealed_audited(hook_app, receiver):
    endpoint_id = add_endpoint(hook_app, receiver)
    secret = receiver.secrets[0]
    assert secret.startswith("whsec_") and len(Webhook(secret)._whsecret) >= 24
    with hook_app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert secret.encode() not in endpoint.secret_wrapped
        assert secret[6:].encode() not in endpoint.secret_wrapped
        assert webhooks.reveal_secret(endpoint, by=admin()) == secret
        db.session.commit()
    assert audit_events(hook_app, "webhook.secret_revealed")


def test_rotation_signs_with_both_secrets_for_24_hours_then_only_the_new(hook_app, receiver):
    endpoint_id = add_endpoint(hook_app, receiver)
    old = receiver.secrets[0]
    with hook_app.app_context():
        new = webhooks.rotate_secret(db.session.get(WebhookEndpoint, endpoint_id), by=admin())
        db.session.commit()
    receiver.secrets.append(new)
    assert audit_events(hook_app, "webhook.secret_rotated")
    send_test(hook_app, endpoint_id)
    assert receiver.verified_with[-1] == {old, new}
    assert len(receiver.deliveries[-1]["headers"]["webhook-signature"].split(" ")) == 2
    clock.travel_to(clock.utcnow() + timedelta(hours=24, minutes=1))
    send_test(hook_app, endpoint_id)
    assert receiver.verified_with[-1] == {new}
    assert len(receiver.deliveries[-1]["headers"]["webhook-signature"].split(" ")) == 1
    assert receiver.types() == ["webhook.test", "webhook.test"]


# ---------------------------------------------------------------- retries


def _sweep_at(app, moment: datetime) -> None:
    clock.travel_to(moment)
    with app.app_context():
        delivery.sweep_webhooks()


def test_a_receiver_answering_500_is_retried_on_schedule_then_failed_and_disabled(
    hook_app, receiver
):
    receiver.status = 500
    endpoint_id = add_endpoint(hook_app, receiver)
    start = datetime.now(UTC)
    clock.travel_to(start)
    send_test(hook_app, endpoint_id)
    assert len(receiver.deliveries) == 1
    times = [start]
    for delay in delivery.RETRY_DELAYS:
        (message,) = messages(hook_app)
        due = clock.as_utc(message.next_attempt_at)
        last = times[-1]
        assert timedelta(seconds=delay) <= due - last <= timedelta(seconds=delay * 1.1 + 2)
        _sweep_at(hook_app, due - timedelta(seconds=1))  # not due yet: nothing sent
        assert len(receiver.deliveries) == len(times)
        _sweep_at(hook_app, due + timedelta(seconds=1))
        assert len(receiver.deliveries) == len(times) + 1
        times.append(due + timedelta(seconds=1))
    (message,) = messages(hook_app)
    assert message.status == "failed" and message.attempts == len(delivery.RETRY_DELAYS) + 1
    assert times[-1] - start >= timedelta(days=3)
    assert receiver.all_verified()
    assert len({d["headers"]["webhook-id"] for d in receiver.deliveries}) == 1, "stable id"
    with hook_app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert not endpoint.enabled and "3 days" in endpoint.disabled_reason
        attempts = list(db.session.execute(select(WebhookAttempt)).scalars())
        assert len(attempts) == len(times)
        assert {a.status_code for a in attempts} == {500}
        assert all(len(a.response) == 1024 for a in attempts), "first 1 KB kept"
        from portal.mail import Message

        told = list(db.session.execute(select(Message).where(Message.kind == "notice")).scalars())
        assert told and all(m.to_address.endswith("@demo.example") for m in told)
        assert any("disabled" in m.subject for m in told)
    assert audit_events(hook_app, "webhook.endpoint_disabled")
    _sweep_at(hook_app, times[-1] + timedelta(days=1))
    assert len(receiver.deliveries) == len(times), "a disabled endpoint gets nothing"


def test_success_after_failures_delivers_and_redeliver_sends_again(hook_app, receiver):
    receiver.status = 503
    endpoint_id = add_endpoint(hook_app, receiver)
    send_test(hook_app, endpoint_id)
    receiver.status = 200
    _sweep_at(hook_app, clock.utcnow() + timedelta(seconds=10))
    (message,) = messages(hook_app)
    assert message.status == "delivered" and message.attempts == 2
    with hook_app.app_context():
        webhooks.redeliver(db.session.get(WebhookMessage, message.id), by=admin())
        db.session.commit()
    assert len(receiver.deliveries) == 3 and receiver.all_verified()
    assert len({d["headers"]["webhook-id"] for d in receiver.deliveries}) == 1
    assert audit_events(hook_app, "webhook.redelivered")


def test_a_retry_after_is_honoured_up_to_a_day(hook_app, receiver):
    receiver.status = 429
    receiver.retry_after = "3600"
    endpoint_id = add_endpoint(hook_app, receiver)
    before = clock.utcnow()
    send_test(hook_app, endpoint_id)
    (message,) = messages(hook_app)
    wait = clock.as_utc(message.next_attempt_at) - before
    assert timedelta(hours=1) <= wait <= timedelta(hours=1.2)
    assert message.last_error == "HTTP 429"


def test_replay_since_sends_the_endpoints_messages_since_then_again(hook_app, receiver):
    endpoint_id = add_endpoint(hook_app, receiver)
    start = datetime.now(UTC)
    clock.travel_to(start)
    send_test(hook_app, endpoint_id)
    clock.travel_to(start + timedelta(hours=1))
    send_test(hook_app, endpoint_id)
    with hook_app.app_context():
        count = webhooks.replay_since(
            db.session.get(WebhookEndpoint, endpoint_id), start + timedelta(minutes=30), by=admin()
        )
        db.session.commit()
    assert count == 1 and len(receiver.deliveries) == 3
    assert (
        receiver.deliveries[2]["headers"]["webhook-id"]
        == receiver.deliveries[1]["headers"]["webhook-id"]
    )


def test_a_slow_receiver_is_logged_as_timeout(hook_app, receiver):
    receiver.delay = 6  # the app's timeout is 2 s
    endpoint_id = add_endpoint(hook_app, receiver)
    started = time.monotonic()
    send_test(hook_app, endpoint_id)
    assert time.monotonic() - started < 5.5, "not waiting for the receiver"
    with hook_app.app_context():
        (attempt,) = db.session.execute(select(WebhookAttempt)).scalars()
        assert attempt.outcome == "timeout" and attempt.status_code is None
        assert 1900 <= attempt.duration_ms < 4000
    (message,) = messages(hook_app)
    assert message.status == "pending" and message.attempts == 1


def test_a_slow_drip_receiver_is_cut_at_the_timeout(hook_app):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"X-Drip: 1\r\n")
            except OSError:
                break
            time.sleep(0.5)
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    with hook_app.app_context():
        endpoint, _ = webhooks.create_endpoint(demo_agent().team, url, "", ["*"], by=admin())
        db.session.commit()
        started = time.monotonic()
        webhooks.send_test(endpoint, by=admin())
        db.session.commit()
        took = time.monotonic() - started
        (attempt,) = db.session.execute(select(WebhookAttempt)).scalars()
    stop.set()
    listener.close()
    assert took < 5.5 and attempt.outcome == "timeout"
    assert 1900 <= attempt.duration_ms < 4000


def test_a_redirect_is_not_followed(hook_app, receiver):
    receiver.status = 302
    receiver.location = "http://169.254.169.254/latest/meta-data/"
    endpoint_id = add_endpoint(hook_app, receiver)
    send_test(hook_app, endpoint_id)
    with hook_app.app_context():
        (attempt,) = db.session.execute(select(WebhookAttempt)).scalars()
    assert len(receiver.deliveries) == 1 and receiver.deliveries[0]["path"] == "/hooks"
    assert attempt.outcome == "failed" and attempt.status_code == 302
    assert "redirects are not followed" in attempt.error


# ---------------------------------------------------------------- SSRF


SSRF_URLS = (
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hook",
    "http://localhost:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://192.168.1.10/hook",
    "http://[fd00::1]/hook",
)


@pytest.mark.parametrize("url", SSRF_URLS)
def test_private_and_loopback_urls_are_refused_at_save(make_app, runner_for, url):
    app = make_app()
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    with app.app_context():
        with pytest.raises(webhooks.EndpointError, match="private, loopback or link-local"):
            webhooks.create_endpoint(demo_agent().team, url, "", ["*"], by=admin())
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


@pytest.mark.parametrize("url", SSRF_URLS[:5])
def test_private_and_loopback_urls_are_refused_at_send(hook_app, receiver, url):
    """An endpoint whose URL changed behind the pages' back (the database edited): the
    delivery checks again and logs the attempt as refused."""
    endpoint_id = add_endpoint(hook_app, receiver)
    hook_app.config["WEBHOOK_ALLOWED_HOSTS"] = ""
    with hook_app.app_context():
        db.session.get(WebhookEndpoint, endpoint_id).url = url
        db.session.commit()
    send_test(hook_app, endpoint_id)
    with hook_app.app_context():
        (attempt,) = db.session.execute(select(WebhookAttempt)).scalars()
    assert attempt.outcome == "refused" and "private, loopback or link-local" in attempt.error
    (message,) = messages(hook_app)
    assert message.status == "pending" and message.next_attempt_at is not None
    assert receiver.deliveries == []


def test_an_allowed_endpoint_whose_host_is_no_longer_allowed_is_refused_at_send(hook_app, receiver):
    endpoint_id = add_endpoint(hook_app, receiver)
    hook_app.config["WEBHOOK_ALLOWED_HOSTS"] = ""
    send_test(hook_app, endpoint_id)
    with hook_app.app_context():
        (attempt,) = db.session.execute(select(WebhookAttempt)).scalars()
    assert receiver.deliveries == []
    assert attempt.outcome == "refused" and "127.0.0.1" in attempt.error


def fake_dns(monkeypatch, answers: dict[str, str], lookups: list[str] | None = None) -> None:
    """``socket.getaddrinfo`` answering ``answers`` (name -> IPv4) and the real one otherwise."""
    import socket

    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in answers:
            if lookups is not None:
                lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_dns_resolving_to_loopback_is_refused_at_send(hook_app, receiver, monkeypatch):
    """A name that resolved to a public address when saved, then to loopback (rebinding)."""
    answers = {"crm.example.test": "93.184.215.14"}
    fake_dns(monkeypatch, answers)
    with hook_app.app_context():
        endpoint, _ = webhooks.create_endpoint(
            demo_agent().team, f"http://crm.example.test:{receiver.port}/hooks", "", ["*"],
            by=admin(),
        )  # fmt: skip
        db.session.commit()
        answers["crm.example.test"] = "127.0.0.1"
        hook_app.config["WEBHOOK_ALLOWED_HOSTS"] = ""
        webhooks.send_test(endpoint, by=admin())
        db.session.commit()
        (attempt,) = db.session.execute(select(WebhookAttempt)).scalars()
    assert receiver.deliveries == [] and attempt.outcome == "refused"
    assert "resolves to 127.0.0.1" in attempt.error


def test_an_allowed_name_is_reached_at_the_checked_address_with_its_host_header(
    hook_app, receiver, monkeypatch
):
    """Allow-listed by name; the delivery connects to the address checked (no second lookup)."""
    lookups: list[str] = []
    fake_dns(monkeypatch, {"crm.internal.test": "127.0.0.1"}, lookups)
    hook_app.config["WEBHOOK_ALLOWED_HOSTS"] = "crm.internal.test"
    with hook_app.app_context():
        endpoint, secret = webhooks.create_endpoint(
            demo_agent().team, f"http://crm.internal.test:{receiver.port}/hooks", "", ["*"],
            by=admin(),
        )  # fmt: skip
        db.session.commit()
        receiver.secrets.append(secret)
        lookups.clear()
        webhooks.send_test(endpoint, by=admin())
        db.session.commit()
    assert lookups == ["crm.internal.test"], "resolved once, at the check"
    assert receiver.deliveries[0]["headers"]["host"] == f"crm.internal.test:{receiver.port}"
    assert receiver.all_verified()


def test_https_only_in_production(hook_app):
    from portal.integrations import ssrf

    hook_app.config["PRODUCTION"] = True
    with hook_app.app_context():
        with pytest.raises(ssrf.Refused, match="https"):
            ssrf.parse("http://crm.example.com/hook")
        assert ssrf.parse("https://crm.example.com/h?x=1") == (
            "https", "crm.example.com", 443, "/h?x=1"
        )  # fmt: skip


# ---------------------------------------------------------------- bounded


def test_attempts_older_than_30_days_are_pruned(hook_app, receiver):
    receiver.status = 500
    endpoint_id = add_endpoint(hook_app, receiver)
    start = datetime.now(UTC)
    clock.travel_to(start)
    send_test(hook_app, endpoint_id)
    clock.travel_to(start + timedelta(days=29))
    with hook_app.app_context():
        delivery.prune_webhooks()
        assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 1
    clock.travel_to(start + timedelta(days=31))
    with hook_app.app_context():
        delivery.prune_webhooks()
        assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0


def test_purging_an_envelope_deletes_its_webhook_messages(hook_app, receiver):
    from portal.envelopes.models import Envelope
    from portal.records import purge

    add_endpoint(hook_app, receiver)
    envelope_id, public_id, link = send_refund(hook_app)
    sign(hook_app, public_id, link)
    assert any(m.envelope_id == envelope_id for m in messages(hook_app))
    with hook_app.app_context():
        until = clock.as_utc(db.session.get(Envelope, envelope_id).retention_until)
    clock.travel_to(until + timedelta(days=1))
    with hook_app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        purge.purge_envelope(envelope, reason="test", actor=None, action="both")
    assert not any(m.envelope_id == envelope_id for m in messages(hook_app))


def _readme_receiver(root, tmp_path):
    """The receiver exactly as the README shows it."""
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    shown = [b for b in blocks if "def post_ticket_note" in b]
    assert shown, "the README shows no receiver (a python block with def post_ticket_note)"
    script = tmp_path / "webhook_receiver.py"
    script.write_text(shown[0], encoding="utf-8")
    return script


def test_the_readmes_receiver_verifies_deliveries_and_notes_them_on_the_ticket(hook_app, tmp_path):
    """The README's example receiver, run as its own process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.services import free_port

    script = _readme_receiver(Path(__file__).resolve().parent.parent, tmp_path)
    port = free_port()
    with hook_app.app_context():
        _endpoint, secret = webhooks.create_endpoint(
            demo_agent().team, f"http://127.0.0.1:{port}/", "README", ["*"], by=admin()
        )
        db.session.commit()
    env = {**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        _envelope_id, public_id, link = send_refund(hook_app)
        sign(hook_app, public_id, link)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert f"note on {TICKET[1]}: envelope.completed: envelope {public_id} is completed" in out
    assert f"note on {TICKET[1]}: envelope.sealed: envelope {public_id} is completed" in out
    assert all(m.status == "delivered" for m in messages(hook_app))


def test_declining_the_disclosure_tells_recipient_declined_and_envelope_declined(
    hook_app, receiver
):
    add_endpoint(hook_app, receiver, types=("recipient.declined", "envelope.declined"))
    _envelope_id, public_id, link = send_refund(hook_app)
    client = hook_app.test_client()
    client.get(link.replace("http://127.0.0.1:5000", ""))
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "decline"})
    assert receiver.types() == ["recipient.declined", "envelope.declined"]
    declined = receiver.deliveries[1]["json"]["data"]
    assert declined["envelope"]["status"] == "declined"
    assert declined["envelope"]["ticket_id"] == TICKET[0]
    assert "reason" not in json.dumps(declined), "a typed reason is personal"
    assert receiver.all_verified()


def test_rotate_data_key_rewraps_the_endpoint_secrets(hook_app, receiver, runner_for):
    import os

    endpoint_id = add_endpoint(hook_app, receiver)
    with hook_app.app_context():
        rotated = webhooks.rotate_secret(db.session.get(WebhookEndpoint, endpoint_id), by=admin())
        db.session.commit()
    receiver.secrets.append(rotated)
    old_key = hook_app.config["DATA_KEY"]
    hook_app.config["DATA_KEY"] = os.urandom(32)
    with hook_app.app_context():
        result = runner_for(hook_app).invoke(
            args=["portal", "rotate-data-key", "--old-key", old_key.hex()]
        )
    assert result.exit_code == 0, result.output
    assert "Re-wrapped 2 webhook secrets" in result.output
    send_test(hook_app, endpoint_id)
    assert receiver.verified_with == [set(receiver.secrets)], "both secrets, under the new key"


def test_a_message_keeps_only_its_latest_attempts(hook_app, receiver, monkeypatch):
    monkeypatch.setattr(delivery, "KEEP_ATTEMPTS", 3)
    endpoint_id = add_endpoint(hook_app, receiver)
    send_test(hook_app, endpoint_id)
    (message,) = messages(hook_app)
    for _ in range(4):
        with hook_app.app_context():
            webhooks.redeliver(db.session.get(WebhookMessage, message.id), by=admin())
            db.session.commit()
    assert len(receiver.deliveries) == 5
    with hook_app.app_context():
        kept = webhooks.attempts_of(db.session.get(WebhookMessage, message.id))
        assert len(kept) == 3 and kept[0].id > kept[-1].id, "the newest, newest first"
