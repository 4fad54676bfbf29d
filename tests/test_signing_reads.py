"""The signer's pages read without locking and with few queries, and still write safely.

GET pages of the signing blueprint call ``extensions.reads_first()``: SQLite transactions
begin deferred (readers do not queue for the write lock), PostgreSQL reads in autocommit
mode. Whatever such a request writes (the first open of a link, a lazy expiry) goes through
``extensions.write_lock()`` and is checked again under the lock, so it happens once.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from flask import current_app, g, url_for
from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.pool import NullPool

from portal.envelopes.models import Recipient
from portal.extensions import READER, db, limiter, reads_first, write_lock
from tests.conftest import audit_events, demo_template
from tests.test_signing import _csrf, _path, sent  # noqa: F401 - the fixture


def _consented(app, sent):  # noqa: F811
    """A signer's client on the document page (link opened, disclosure accepted)."""
    envelope_id, public_id, link = sent()
    client = app.test_client()
    assert client.get(_path(link)).status_code == 302
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    return envelope_id, public_id, link, client


def _statements(app):
    """Count the SQL statements the app's engines run (a list that grows): the session's
    engine and, on PostgreSQL, the autocommit reader."""
    seen: list[str] = []
    with app.app_context():
        engines = [db.engine, *([app.extensions[READER]] if READER in app.extensions else [])]

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    return seen


def test_the_document_page_is_one_query(app, sent):  # noqa: F811
    _id, public_id, _link, client = _consented(app, sent)
    first = client.get(f"/sign/{public_id}")
    assert first.status_code == 200 and "Adopt and sign" in first.get_data(as_text=True)
    seen = _statements(app)
    again = client.get(f"/sign/{public_id}")
    assert again.status_code == 200 and again.get_data() == first.get_data().replace(
        _meta_token(first), _meta_token(again)
    )
    assert len(seen) == 1, seen  # recipient + envelope + sender; the fields are cached


def _meta_token(response) -> bytes:
    page = response.get_data()
    start = page.index(b'name="csrf-token" content="') + len(b'name="csrf-token" content="')
    return page[start : page.index(b'"', start)]


def test_the_document_page_reads_while_a_writer_holds_a_lock(app, sent, backend):  # noqa: F811
    """Another process in the middle of a write: SQLite's database-wide write lock, or on
    PostgreSQL an uncommitted change of this very recipient's row. (The first view is a write:
    it records ``recipient.document_viewed``; the views after it only read.)"""
    _id, public_id, _link, client = _consented(app, sent)
    assert client.get(f"/sign/{public_id}").status_code == 200
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    writer = engine.connect()
    try:
        if backend == "sqlite":
            writer.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            writer.exec_driver_sql("SET lock_timeout = '5s'")
            writer.exec_driver_sql("UPDATE recipient SET name = name")
        started = time.monotonic()
        page = client.get(f"/sign/{public_id}")
        assert page.status_code == 200 and "Adopt and sign" in page.get_data(as_text=True)
        assert time.monotonic() - started < 5  # it did not wait for the lock
    finally:
        if backend == "sqlite":
            writer.exec_driver_sql("ROLLBACK")
        else:
            writer.rollback()
        writer.close()
        engine.dispose()


def _together(*calls):
    """Run the calls in threads released at the same moment; their results, in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_two_tabs_opening_a_new_link_record_one_open(app, sent):  # noqa: F811
    _id, _public_id, link = sent()
    tabs = [app.test_client() for _ in range(3)]
    responses = _together(*(lambda tab=tab: tab.get(_path(link)) for tab in tabs))
    assert [r.status_code for r in responses] == [302, 302, 302]
    assert len(audit_events(app, "recipient.opened")) == 1
    with app.app_context():
        recipient = db.session.execute(select(Recipient)).scalars().one()
        assert recipient.status == "viewed" and recipient.viewed_at is not None


def test_an_overdue_envelope_seen_by_two_views_expires_once(app, sent, monkeypatch):  # noqa: F811
    from portal import clock

    _id, public_id, _link, first = _consented(app, sent)
    second = app.test_client()
    with first.session_transaction() as state:
        signer = dict(state["signer"])
    with second.session_transaction() as state:
        state["signer"] = signer
    real = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(days=31))
    responses = _together(
        lambda: first.get(f"/sign/{public_id}"), lambda: second.get(f"/sign/{public_id}")
    )
    assert [r.status_code for r in responses] == [410, 410]
    assert all("This link has expired" in r.get_data(as_text=True) for r in responses)
    assert len(audit_events(app, "envelope.expired")) == 1


def test_a_change_in_a_read_only_request_needs_the_write_lock(app, sent):  # noqa: F811
    _id, public_id, _link, _client = _consented(app, sent)
    with app.test_request_context(f"/sign/{public_id}"):
        reads_first()
        recipient = db.session.execute(select(Recipient)).scalars().one()
        recipient.name = "Changed"
        # PostgreSQL's autocommit: not atomic with anything else; SQLite's deferred
        # transaction: taking the write lock mid-read fails when a writer committed meanwhile
        with pytest.raises(RuntimeError, match="write_lock"):
            db.session.flush()
        db.session.rollback()
        db.session.remove()
    with app.test_request_context(f"/sign/{public_id}"):
        reads_first()
        recipient = db.session.execute(select(Recipient)).scalars().one()
        recipient.name = "Changed"
        with pytest.raises(RuntimeError, match="before the first change"):
            write_lock()  # too late: restarting would lose the change
        db.session.rollback()
        db.session.remove()


def test_a_locking_read_in_a_read_only_request_restarts_as_a_writer(app, sent):  # noqa: F811
    _id, public_id, _link, _client = _consented(app, sent)
    with app.test_request_context(f"/sign/{public_id}"):
        reads_first()
        recipient = db.session.execute(select(Recipient)).scalars().one()
        locked = db.session.execute(select(Recipient).with_for_update()).scalars().one()
        assert locked is recipient and g.portal_writing is True
        locked.name = "Renamed"
        db.session.commit()
        db.session.remove()
    with app.app_context():
        assert db.session.execute(select(Recipient.name)).scalar_one() == "Renamed"


def test_document_links_are_the_routes_urls(app):
    from portal.signing.routes import Links

    with app.test_request_context("/"):
        links = Links.of("abc123")
        assert links.original == url_for("signing.original", public_id="abc123")
        assert links.sign == url_for("signing.sign", public_id="abc123")
        assert links.review == url_for("signing.review", public_id="abc123")
        assert links.decline == url_for("signing.decline", public_id="abc123")
        assert f"{links.pages}7.png" == url_for("signing.page_image", public_id="abc123", number=7)


def test_fields_of_approved_versions_are_read_once_per_app(app, make_app, sent):  # noqa: F811
    from portal.library import queries

    with app.app_context():
        template = demo_template()
        version = next(v for v in template.versions if v.status == "approved")
        fields = queries.sent_fields(version.id)
        assert [f.key for f in fields] == [f.key for f in version.fields]
        assert all(inspect(f).transient for f in fields)  # copies that belong to no session
        seen = _statements(app)
        assert queries.sent_fields(version.id) is fields and not seen
        app.extensions[queries.FIXED_FIELDS_KEY].clear()
        version.status = "draft"  # (in this session only) a draft may still change:
        assert queries.sent_fields(version.id) is not queries.sent_fields(version.id)
        assert not app.extensions[queries.FIXED_FIELDS_KEY]
        db.session.rollback()
    with make_app().app_context():
        assert queries.FIXED_FIELDS_KEY not in current_app.extensions  # one cache per app


def test_rate_limits_on_views_apply_without_the_per_request_check(app, sent):  # noqa: F811
    assert limiter._check_request_limit not in app.before_request_funcs.get(None, [])
    _id, _public_id, link = sent()
    client = app.test_client()
    codes = [client.get(_path(link)).status_code for _ in range(31)]
    assert codes[:30] == [302] * 30 and codes[30] == 429


def test_a_connection_idle_for_a_while_is_tested_and_replaced_if_dead(make_app, monkeypatch):
    from portal import extensions

    app = make_app()
    with app.app_context():
        engine = db.engine
        pings = []
        real_ping = engine.dialect.do_ping

        def ping(dbapi_connection):
            pings.append(dbapi_connection)
            if len(pings) == 1:
                raise OSError("server closed the connection")
            return real_ping(dbapi_connection)

        monkeypatch.setattr(engine.dialect, "do_ping", ping)
        assert db.session.execute(select(1)).scalar_one() == 1
        db.session.remove()
        assert db.session.execute(select(1)).scalar_one() == 1
        db.session.remove()
        assert pings == []  # handed back a moment ago: not tested
        monkeypatch.setattr(extensions, "PING_AFTER_IDLE", -1.0)  # every connection is "idle"
        assert db.session.execute(select(1)).scalar_one() == 1  # dead one replaced, transparently
        db.session.remove()
        assert len(pings) == 2 and pings[0] is not pings[1]
