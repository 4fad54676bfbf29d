"""Delivering webhook messages (the ``webhooks`` queue): signing, HTTP, retries, disabling.

The message row is the truth and the queue only a nudge: ``next_attempt_at`` says when a
message is due, ``sweep_webhooks`` asks again for whatever is due (Redis was down, a worker
died, a retry's time came), so nothing depends on Redis keeping a job.

One try: the URL is checked again (``ssrf.check``: resolved once, the checked address is the
one connected to), the body is POSTed exactly as stored with the Standard Webhooks headers
(``webhook-id`` stable across tries, ``webhook-timestamp``, ``webhook-signature`` with one
``v1,`` signature per valid secret), within ``WEBHOOK_TIMEOUT_SECONDS`` in all (connect,
send, and a receiver that answers a byte at a time), redirects not followed, at most 1 KB of
the answer kept. 2xx is delivered; anything else is retried after ``RETRY_DELAYS`` (plus up
to 10% jitter), about 3 days, then the message is ``failed``. An endpoint whose deliveries
have failed for ``DISABLE_AFTER`` without one success is disabled and its team's admins are
emailed. Attempts are kept at most ``KEEP_ATTEMPTS`` per message and ``KEEP_DAYS`` days.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, or_, select
from standardwebhooks import Webhook

from portal import audit, clock, jobs, mail
from portal.accounts.models import Role, User
from portal.extensions import db
from portal.integrations import ssrf
from portal.integrations.webhooks import (
    MessageStatus,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    signing_secrets,
)

# Seconds to wait after the 1st, 2nd, ... failed try; after the last one the message fails.
RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.1
DISABLE_AFTER = timedelta(days=3)
KEEP_ATTEMPTS = 20
KEEP_DAYS = 30
RESPONSE_BYTES = 1024
BATCH = 50
SWEEP_BATCH = 500
INLINE_SECONDS = 30  # embedded mode: how long one nudge keeps sending an endpoint's backlog
USER_AGENT = "portal-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    """What one try gave."""

    outcome: str  # delivered | failed | timeout | refused
    status_code: int | None
    duration_ms: int
    error: str | None
    response: str | None
    retry_after: int | None = None  # seconds a 429 or 503 asked for


def _headers(message: WebhookMessage, endpoint: WebhookEndpoint, now: datetime) -> dict[str, str]:
    signatures = " ".join(
        Webhook(secret).sign(message.public_id, now, message.body.encode())
        for secret in signing_secrets(endpoint, now)
    )
    return {
        "webhook-id": message.public_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


class _Pinned(http.client.HTTPSConnection):
    """A connection to the checked address, with the URL's host as Host and TLS name."""

    def __init__(self, target: ssrf.Target, timeout: float) -> None:
        self.target = target
        context = ssl.create_default_context() if target.scheme == "https" else None
        super().__init__(target.host, target.port, timeout=timeout, context=context)

    def connect(self) -> None:
        sock = socket.create_connection((self.target.address, self.target.port), self.timeout)
        if self.target.scheme == "https":
            sock = self._context.wrap_socket(sock, server_hostname=self.target.host)  # type: ignore[attr-defined]
        self.sock = sock


def post(target: ssrf.Target, body: bytes, headers: dict[str, str], limit: float) -> Outcome:
    """POST ``body`` to the checked target within ``limit`` seconds in all."""
    started = time.monotonic()
    conn = _Pinned(target, limit)
    # Each socket operation has ``limit`` as timeout; the timer ends a receiver that keeps
    # answering a byte at a time past the whole limit.
    cut = threading.Event()
    timer = threading.Timer(limit, _cut, args=(conn, cut))
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        excerpt = response.read(RESPONSE_BYTES)
        code = response.status
        if cut.is_set():
            raise TimeoutError
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        took = int((time.monotonic() - started) * 1000)
        timed_out = isinstance(exc, TimeoutError) or cut.is_set()
        kind = "timeout" if timed_out else "failed"
        error = f"No answer within {limit:g} s" if timed_out else f"{type(exc).__name__}: {exc}"
        return Outcome(kind, None, took, error[:300], None)
    finally:
        timer.cancel()
        conn.close()
    took = int((time.monotonic() - started) * 1000)
    text = excerpt.decode("utf-8", "replace")
    if 200 <= code < 300:
        return Outcome("delivered", code, took, None, text)
    error = f"HTTP {code}"
    if 300 <= code < 400:
        error = f"HTTP {code}: redirects are not followed"
    wait = response.getheader("Retry-After", "") if code in (429, 503) else ""
    after = int(wait) if wait.isascii() and wait.isdigit() and len(wait) < 7 else None
    return Outcome("failed", code, took, error, text, after)


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _try(message: WebhookMessage, endpoint: WebhookEndpoint) -> Outcome:
    now = clock.utcnow()
    headers = _headers(message, endpoint, now)
    body = message.body.encode()
    url = endpoint.url
    db.session.commit()  # hold no transaction (nor SQLite's write lock) over the network
    started = time.monotonic()
    try:
        target = ssrf.check(url)
    except ssrf.Refused as exc:
        took = int((time.monotonic() - started) * 1000)
        return Outcome("refused", None, took, f"Refused: {exc}"[:300], None)
    limit = float(current_app.config.get("WEBHOOK_TIMEOUT_SECONDS") or 10)
    return post(target, body, headers, limit)


def _lock(message_id: int) -> WebhookMessage | None:
    return db.session.execute(
        select(WebhookMessage)
        .where(WebhookMessage.id == message_id)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()


def _due(message: WebhookMessage, now: datetime) -> bool:
    return message.status == MessageStatus.PENDING.value and (
        message.next_attempt_at is None or clock.as_utc(message.next_attempt_at) <= now
    )


def deliver_one(message_id: int) -> str:
    """Try one message if it is due (idempotent: delivered, failed or leased ones are left)."""
    now = clock.utcnow()
    message = _lock(message_id)
    if message is None or not _due(message, now):
        db.session.rollback()
        return "nothing to do"
    endpoint = db.session.get(WebhookEndpoint, message.endpoint_id)
    if endpoint is None or not endpoint.enabled:
        db.session.rollback()
        return "endpoint disabled"
    limit = float(current_app.config.get("WEBHOOK_TIMEOUT_SECONDS") or 10)
    # A lease: another worker (or the sweep) leaves it alone while this one tries.
    message.next_attempt_at = now + timedelta(seconds=limit + 60)
    db.session.commit()
    message = db.session.get(WebhookMessage, message_id)
    endpoint = db.session.get(WebhookEndpoint, message.endpoint_id) if message else None
    if message is None or endpoint is None:
        return "gone"
    outcome = _try(message, endpoint)
    _note(message_id, outcome)
    return outcome.outcome


def _note(message_id: int, outcome: Outcome) -> None:
    message = db.session.get(WebhookMessage, message_id, with_for_update=True)
    if message is None:  # deleted meanwhile (endpoint deleted, envelope purged)
        db.session.rollback()
        return
    endpoint = db.session.get(WebhookEndpoint, message.endpoint_id)
    assert endpoint is not None
    now = clock.utcnow()
    db.session.add(
        WebhookAttempt(
            message_id=message.id,
            attempted_at=now,
            outcome=outcome.outcome,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            error=outcome.error,
            response=outcome.response,
        )
    )
    message.attempts += 1
    message.last_attempt_at = now
    message.last_error = outcome.error
    if outcome.status_code == 410 and endpoint.enabled:  # the receiver says: never again
        disable(endpoint, "The receiver answered 410 Gone.")
    if outcome.outcome == "delivered":
        message.status = MessageStatus.DELIVERED.value
        message.delivered_at = now
        message.next_attempt_at = None
        endpoint.failing_since = None
    else:
        _failed(message, endpoint, now, outcome.retry_after)
    db.session.flush()
    _bound_attempts(message.id)
    db.session.commit()


def _failed(
    message: WebhookMessage, endpoint: WebhookEndpoint, now: datetime, asked: int | None
) -> None:
    if message.attempts > len(RETRY_DELAYS):
        message.status = MessageStatus.FAILED.value
        message.next_attempt_at = None
    else:
        delay = RETRY_DELAYS[message.attempts - 1]
        # A receiver's Retry-After is honoured up to the longest wait of the schedule.
        delay = max(delay, min(asked or 0, RETRY_DELAYS[-1]))
        message.next_attempt_at = now + timedelta(
            seconds=delay * (1 + random.uniform(0, JITTER))  # noqa: S311 (spreading, not secrecy)
        )
    if endpoint.failing_since is None:
        endpoint.failing_since = message.last_attempt_at
    elif endpoint.enabled and now - clock.as_utc(endpoint.failing_since) >= DISABLE_AFTER:
        disable(endpoint, "Deliveries have failed for 3 days.")


def disable(endpoint: WebhookEndpoint, reason: str) -> None:
    """Disable a failing endpoint, record why and email its team's admins."""
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    audit.record(
        "webhook.endpoint_disabled",
        actor="system",
        subject=endpoint,
        data={"url": endpoint.url, "reason": reason},
    )
    admins = list(
        db.session.execute(
            select(User).where(
                User.role == Role.ADMIN.value,
                User.active.is_(True),
                or_(User.team_id == endpoint.team_id, User.team_id.is_(None)),
            )
        ).scalars()
    )
    base = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    for admin in admins:
        subject, text, html = mail.render(
            "webhook_disabled",
            "en",
            admin_name=admin.name,
            url=endpoint.url,
            reason=reason,
            page=f"{base}/admin/integrations/webhooks/{endpoint.id}",
        )
        mail.queue(admin.email, admin.name, subject, text, html, kind="notice")


def _bound_attempts(message_id: int) -> None:
    keep = (
        select(WebhookAttempt.id)
        .where(WebhookAttempt.message_id == message_id)
        .order_by(WebhookAttempt.id.desc())
        .limit(KEEP_ATTEMPTS)
    )
    kept = list(db.session.execute(keep).scalars())
    if len(kept) == KEEP_ATTEMPTS:
        db.session.execute(
            delete(WebhookAttempt).where(
                WebhookAttempt.message_id == message_id, WebhookAttempt.id < min(kept)
            )
        )


def _due_ids(endpoint_id: int | None, now: datetime, limit: int) -> list[int]:
    stmt = (
        select(WebhookMessage.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
        .where(
            WebhookMessage.status == MessageStatus.PENDING.value,
            WebhookMessage.next_attempt_at <= now,
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(WebhookMessage.id)
        .limit(limit)
    )
    if endpoint_id is not None:
        stmt = stmt.where(WebhookMessage.endpoint_id == endpoint_id)
    return list(db.session.execute(stmt).scalars())


@jobs.job(queue="webhooks", retry=(30,), timeout=BATCH * 15)
def deliver_endpoint(endpoint_id: int) -> str:
    """Try the endpoint's due messages, oldest first (a batch; then asks for the rest)."""
    inline = current_app.config.get("JOBS_INLINE", True)
    stop = time.monotonic() + INLINE_SECONDS
    results: list[str] = []
    while True:
        ids = _due_ids(endpoint_id, clock.utcnow(), BATCH)
        db.session.rollback()
        results += [deliver_one(message_id) for message_id in ids]
        if len(ids) < BATCH:
            break
        if not inline:  # the rest in a job of its own (other endpoints' jobs go meanwhile)
            jobs.enqueue(deliver_endpoint, endpoint_id)
            db.session.commit()
            break
        if time.monotonic() > stop:  # embedded mode: the sweep sends the rest
            break
    return f"{results.count('delivered')} of {len(results)} delivered"


@jobs.periodic(every=60)
def sweep_webhooks() -> str:
    """Ask for every endpoint's due messages (retries whose time came; nudges Redis lost)."""
    now = clock.utcnow()
    endpoints = list(
        db.session.execute(
            select(WebhookMessage.endpoint_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
            .where(
                WebhookMessage.status == MessageStatus.PENDING.value,
                WebhookMessage.next_attempt_at <= now,
                WebhookEndpoint.enabled.is_(True),
            )
            .distinct()
            .order_by(WebhookMessage.endpoint_id)
            .limit(SWEEP_BATCH)
        ).scalars()
    )
    for endpoint_id in endpoints:
        jobs.enqueue(deliver_endpoint, endpoint_id)
    db.session.commit()  # inline mode: the deliveries run now
    return f"{len(endpoints)} webhook endpoints with due messages"


@jobs.periodic(every=86400)
def prune_webhooks() -> str:
    """Delete attempts older than ``KEEP_DAYS`` days, and messages done that long ago."""
    cutoff = clock.utcnow() - timedelta(days=KEEP_DAYS)
    result = db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.attempted_at < cutoff))
    attempts = int(result.rowcount or 0)  # type: ignore[attr-defined]
    done = select(WebhookMessage.id).where(
        WebhookMessage.status != MessageStatus.PENDING.value,
        WebhookMessage.created_at < cutoff,
        func.coalesce(WebhookMessage.last_attempt_at, WebhookMessage.created_at) < cutoff,
    )
    messages = 0
    while old := list(db.session.execute(done.limit(1000)).scalars()):
        db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(old)))
        db.session.execute(delete(WebhookMessage).where(WebhookMessage.id.in_(old)))
        messages += len(old)
    db.session.commit()
    return f"{attempts} webhook attempts and {messages} messages pruned"
