"""Reads never block writers.

Only writing work may hold SQLite's database-wide write lock: requests that read (GET, HEAD,
OPTIONS and views marked ``read_only``) begin deferred transactions and take the lock with
``extensions.write_lock()`` just before they write, and ``verify-audit`` reads on a connection
of its own in one short transaction per batch. On PostgreSQL the same requests read in
autocommit mode and a plain read holds no row lock a writer could wait for: the same tests
assert that there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import has_request_context, request, url_for
from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.pool import NullPool

from portal import audit, cli, clock
from portal.accounts import sessions
from portal.audit import AuditEvent, AuditHead
from portal.envelopes import console, sealing
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db, write_lock
from portal.library import operations as library
from portal.mail import Message
from tests.conftest import Portal, audit_events, demo_template
from tests.test_sealing import _sign
from tests.test_signing import _csrf, _path, sent  # noqa: F401 - the fixture

WAIT = 1.0  # generous: the waits these tests guard against were 6 to 30 seconds
HOLD = 5.0  # a held reader lets go after this long even if nobody releases it


class Hold:
    """Keep a reader in the middle of its work until the test releases it (the first reader
    to get there; later ones go on)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()
        self._first = threading.Lock()

    def pause(self) -> None:
        if self._first.acquire(blocking=False):
            self.reached.set()
            self.released.wait(HOLD)


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=call()))
    thread.start()
    return thread, outcome


def _ready_to_sign(app, link: str, public_id: str):
    """A signer's client with the link opened and the disclosure accepted; its CSRF token."""
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    return client, token


# ---------------------------------------------------------------- writers and a slow search


@pytest.mark.parametrize("writer", ["signer signs", "staff voids"])
def test_a_writer_does_not_wait_for_a_slow_console_search(
    app,
    sent,  # noqa: F811
    signed_in,
    make_staff,
    monkeypatch,
    writer,
):
    envelope_id, public_id, link = sent("Service-change addendum")  # (signing seals nothing)
    signer, token = _ready_to_sign(app, link, public_id)
    compliance = Portal(app, app.test_client())
    compliance.sign_in(make_staff("compliance"))
    searcher, _agent = signed_in("agent")
    hold = Hold()
    search = console.page

    def slow_search(*args: Any, **kwargs: Any) -> console.Page:
        found = search(*args, **kwargs)  # read in the request's transaction, still open here
        hold.pause()
        return found

    monkeypatch.setattr(console, "page", slow_search)
    thread, page = _in_thread(lambda: searcher.client.get("/console?q=Jordan"))
    try:
        assert hold.reached.wait(30)
        if writer == "signer signs":
            data = {"csrf_token": token, "adoption": "typed", "typed_name": "Jordan Rivera"}
            done, waited = _timed(
                lambda: signer.post(f"/sign/{public_id}/sign", data={**data, "agree": "yes"})
            )
        else:
            done, waited = _timed(
                lambda: compliance.post(f"/envelopes/{public_id}/void", {"reason": "Wrong plan"})
            )
    finally:
        hold.released.set()
        thread.join(30)
    assert done.status_code == 302 and waited < WAIT
    assert page["result"].status_code == 200
    assert "Jordan Rivera" in page["result"].get_data(as_text=True)
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        if writer == "signer signs":
            assert envelope.recipients[0].status == "signed"
        else:
            assert envelope.status == "voided"


# ---------------------------------------------------------------- verify-audit


CHAIN = 200_000


def _fill_chain(app, count: int) -> None:
    """``count`` valid chained events, inserted in bulk, and the head pointing at the last."""
    prev = audit.GENESIS
    rows: list[dict[str, Any]] = []
    for seq in range(1, count + 1):
        fields = {
            "seq": seq, "occurred_at": "2026-01-05T09:00:00.000000Z", "event": "test.bulk",
            "actor_type": "system", "actor_id": None, "actor_label": None,
            "subject_type": "user", "subject_id": str(seq % 97), "ip": None, "user_agent": None,
            "data_json": f'{{"n":{seq}}}',
        }  # fmt: skip
        digest = audit.chain_hash(prev, audit.canonical(**fields))
        fields["data"] = fields.pop("data_json")
        rows.append({**fields, "prev_hash": prev, "hash": digest})
        prev = digest
    with app.app_context():
        for start in range(0, count, 20_000):
            db.session.execute(insert(AuditEvent.__table__), rows[start : start + 20_000])
        db.session.execute(
            update(AuditHead.__table__).where(AuditHead.id == 1).values(seq=count, hash=prev)
        )
        db.session.commit()


def _checkpoint(app) -> tuple[int, int, int]:
    """SQLite's passive WAL checkpoint: (busy, frames in the log, frames checkpointed)."""
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            return tuple(raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        finally:
            raw.close()


def test_writers_and_healthz_do_not_wait_for_verify_audit(app, monkeypatch, backend):
    _fill_chain(app, CHAIN)
    hold = Hold()

    def progress(checked: int) -> None:
        if checked >= CHAIN // 2:
            hold.pause()  # between two batches, half way through the chain

    monkeypatch.setattr(cli, "_progress_lines", lambda: progress)
    runner = app.test_cli_runner()
    thread, outcome = _in_thread(lambda: runner.invoke(args=["portal", "verify-audit"]))
    try:
        assert hold.reached.wait(60)

        def write() -> None:
            with app.app_context():
                audit.record("test.written_meanwhile")
                db.session.commit()

        _none, waited = _timed(write)
        health, answered_in = _timed(lambda: app.test_client().get("/healthz"))
        checkpoint = _checkpoint(app) if backend == "sqlite" else None
    finally:
        hold.released.set()
        thread.join(60)
    assert waited < WAIT
    assert health.status_code == 200 and answered_in < WAIT
    if checkpoint is not None:  # no reader holds an old snapshot: the whole WAL is copied back
        busy, frames, copied = checkpoint
        assert busy == 0 and frames == copied
    result = outcome["result"]
    # the event written while it ran is checked too
    assert result.exit_code == 0, result.output
    assert f"Audit chain intact: {CHAIN + 1} events." in result.output


def test_verify_checks_events_appended_while_it_runs_and_a_head_that_lags(ctx):
    for n in range(12):
        audit.record("test.event", data={"n": n})
    db.session.commit()

    def append(checked: int) -> None:
        if checked == 5:  # after the first batch, another writer appends two events
            with ctx.app_context():
                audit.record("test.late")
                audit.record("test.later")
                db.session.commit()

    result = audit.verify(batch=5, progress=append)
    assert result.ok and result.count == 14
    db.session.execute(update(AuditHead.__table__).values(seq=13))  # a head left behind
    db.session.commit()
    lagging = audit.verify(batch=5)
    assert not lagging.ok and lagging.first_bad_seq == 14
    assert lagging.reason == "the chain goes on past its head"


# ---------------------------------------------------------------- reads while a writer works


@contextmanager
def writer_holding_locks(app) -> Iterator[None]:
    """Another process in the middle of a write: SQLite's write lock; on PostgreSQL row locks
    on the chain head and on every staff account."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    writer = engine.connect()
    sqlite = engine.dialect.name == "sqlite"
    try:
        if sqlite:
            writer.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            writer.exec_driver_sql("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
            writer.exec_driver_sql("UPDATE user_account SET name = name")
        yield
    finally:
        if sqlite:
            writer.exec_driver_sql("ROLLBACK")
        else:
            writer.rollback()
        writer.close()
        engine.dispose()


def test_healthz_and_staff_pages_answer_while_a_writer_holds_its_lock(app, signed_in, monkeypatch):
    portal, _agent = signed_in("agent")
    anonymous = app.test_client()
    with writer_holding_locks(app):
        health, answered_in = _timed(lambda: anonymous.get("/healthz"))
        assert health.status_code == 200 and health.get_json()["status"] == "ok"
        assert answered_in < WAIT
        for path in ("/console?q=x", "/library/", "/account/", "/auth/login"):
            client = anonymous if path == "/auth/login" else portal.client
            page, answered_in = _timed(lambda client=client, path=path: client.get(path))
            assert page.status_code == 200 and answered_in < WAIT, path
        # a staff browser's session is due its once-a-minute touch: /healthz does not touch it
        real = clock.utcnow
        monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(minutes=2))
        health, answered_in = _timed(lambda: portal.client.get("/healthz"))
        assert health.status_code == 200 and answered_in < WAIT


# ---------------------------------------------------------------- GET requests that write


@pytest.mark.parametrize("how", ["flush", "update"])
def test_a_get_that_writes_without_the_write_lock_is_refused(make_app, how):
    app = make_app()

    @app.get("/_test/change")
    def change() -> str:
        if request.args.get("lock"):
            write_lock()
        if how == "update":  # the request's first statement
            db.session.execute(update(Recipient).values(name="x"))
        else:
            head = db.session.get(AuditHead, 1)
            assert head is not None
            head.hash = head.hash  # the same value again is no change
            db.session.flush()
            head.seq += 1
            db.session.flush()
        db.session.rollback()
        return "changed"

    client = app.test_client()
    with pytest.raises(RuntimeError, match="call write_lock"):
        client.get("/_test/change")
    assert client.get("/_test/change?lock=1").get_data(as_text=True) == "changed"


def test_after_its_write_a_get_reads_without_the_lock_again(app, signed_in, monkeypatch, backend):
    """The staff session's once-a-minute touch writes; the page after it only reads."""
    from portal import extensions

    portal, _agent = signed_in("agent")
    modes = []
    search = console.page

    def watched(*args: Any, **kwargs: Any) -> console.Page:
        found = search(*args, **kwargs)
        modes.append(extensions._read_only(db.session()))
        return found

    monkeypatch.setattr(console, "page", watched)
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(minutes=2))
    assert portal.client.get("/console").status_code == 200
    assert modes == ["deferred" if backend == "sqlite" else "autocommit"]


def _writing_requests(app) -> dict[str, set[str]]:
    """Record, per endpoint, the statements run in a transaction that may write (SQLite: one
    begun with BEGIN IMMEDIATE; PostgreSQL: not in autocommit mode)."""
    seen: dict[str, set[str]] = {}
    with app.app_context():
        engine = db.engine
    sqlite = engine.dialect.name == "sqlite"

    def record(conn, _cursor, statement, *_args) -> None:
        if not has_request_context():
            return
        if sqlite:
            writing = not conn.info.get("portal_sqlite_deferred")
        else:
            writing = conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
        if writing:
            seen.setdefault(str(request.endpoint), set()).add(statement.split()[0])

    event.listen(engine, "before_cursor_execute", record)
    return seen


# Pages that only read: none of their statements may run in a writing transaction. (The
# envelope page is not one: staff views are recorded, under the write lock.)
READ_ONLY_PAGES = {
    "health.healthz", "auth.login", "auth.code", "console.home",
    "console.new", "library.index", "library.version", "library.editor", "library.new",
    "library.page_image", "library.source_pdf", "admin.users", "admin.user_detail",
    "admin.new_user", "account.overview", "account.password", "mailbox.index",
    "mailbox.show", "mailbox.html", "public.verify",
}  # fmt: skip


def test_every_get_route_reads_first_and_writes_only_under_the_write_lock(
    app,
    sent,  # noqa: F811
    make_staff,
    monkeypatch,
):
    """Walk every GET route of the URL map with data behind it; the guard turns a write
    without ``write_lock()`` into an error, which the test client raises."""
    monkeypatch.setattr(sessions, "TOUCH_EVERY", timedelta(hours=1))  # none during the walk
    envelope_id, public_id, link = sent()
    signer = _sign(app, link, public_id)  # completed and sealed
    _other_id, fresh_public_id, fresh_link = sent()
    overdue_id, overdue_public_id, overdue_link = sent()
    overdue_signer, _token = _ready_to_sign(app, overdue_link, overdue_public_id)
    admin = Portal(app, app.test_client())
    admin_staff = make_staff("admin")
    admin.sign_in(admin_staff)
    enrolling = Portal(app, app.test_client())
    enrolling.password_step(make_staff("agent", enrolled=False).email, "correct horse battery")
    coding = Portal(app, app.test_client())
    coding.password_step(make_staff("agent").email, "correct horse battery")
    with app.test_request_context():
        envelope = db.session.get(Envelope, envelope_id)
        copy_token = sealing.copy_link(envelope.recipients[0]).rsplit("/", 1)[1]
        version = library.approved_version(demo_template())
        values = {
            "public_id": public_id, "version_id": version.id, "template_id": version.template_id,
            "user_id": admin_staff.id, "number": 1, "token": copy_token,
            "filename": "css/portal.css",
            "message_id": db.session.execute(select(Message.id).limit(1)).scalar_one(),
            # the records centre's (a hold or export that does not exist answers 404)
            "envelope_id": envelope_id, "policy_id": 1, "hold_id": 1, "export_id": 1,
            # a language variant's pages; integrations (keys, webhooks; the API answers 401
            # without a key, its problem pages are public)
            "locale": "es", "key_id": 1, "endpoint_id": 1, "recipient_id": 1, "batch_id": 1,
            "field_id": 1, "kind": "unauthorized", "key": "x", "name": "x", "width": 800,
        }  # fmt: skip
    anonymous = app.test_client()
    clients = {"signing": signer, "public": anonymous, "health": anonymous, "static": anonymous}
    auth_clients = {"auth.enrol": enrolling.client, "auth.code": coding.client}
    writing = _writing_requests(app)
    walked = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        blueprint = rule.endpoint.partition(".")[0]
        client = auth_clients.get(rule.endpoint) or clients.get(blueprint) or admin.client
        if rule.endpoint == "auth.login":
            client = anonymous
        with app.test_request_context():
            url = url_for(rule.endpoint, **{arg: values[arg] for arg in rule.arguments})
        response = client.get(url)
        response.close()  # (a static file's)
        assert response.status_code < 500, (rule.endpoint, response.status_code)
        walked.add(rule.endpoint)
    first_open = anonymous.get(_path(fresh_link))  # the first open of a link is recorded
    assert first_open.headers["Location"] == f"/sign/{fresh_public_id}"
    assert not writing.keys() & READ_ONLY_PAGES, writing

    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(days=31))
    assert "This link has expired" in overdue_signer.get(f"/sign/{overdue_public_id}").get_data(
        as_text=True
    )  # noticed on the way, so expired at once
    timed_out = admin.client.get("/console")  # and the staff session has run out
    assert timed_out.status_code == 302 and "/auth/login" in timed_out.headers["Location"]

    assert walked == {r.endpoint for r in app.url_map.iter_rules() if "GET" in r.methods}
    events = [e.event for e in audit_events(app)]
    for name in (
        "envelope.document_downloaded",  # console.sealed_document
        "envelope.report_downloaded",  # console.audit_report
        "recipient.copy_downloaded",  # public.copy and signing.signed_copy
        "auth.mfa.enrolment_started",  # auth.enrol
        "recipient.opened",  # signing.link
        "envelope.viewed",  # console.envelope, console.original_document, console.page_image
        "envelope.expired",  # signing.document, on an overdue envelope
        "auth.session.timed_out",  # any staff page
    ):
        assert name in events, name
    assert events.count("recipient.copy_downloaded") == 2
    with app.app_context():
        assert db.session.get(Envelope, overdue_id).status == "expired"
