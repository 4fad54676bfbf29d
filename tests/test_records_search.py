"""The audit trail search (/records/audit): each filter, keyset pages, the bounded count, bad
input named instead of failing, links, scoping, and PostgreSQL's plans from the indexes."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from portal import audit, clock
from portal.accounts.models import User
from portal.audit import AuditEvent
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.records import search
from tests.conftest import Portal, query_plan
from tests.test_console_lists import World, get, signed_in_as, text_of

SEQ = re.compile(r'<td class="num">(\d+)</td>')
DAY = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def seqs(page: str) -> list[int]:
    return [int(n) for n in SEQ.findall(page)]


class Trail:
    """A world with envelopes and audit events recorded through ``audit.record``."""

    def __init__(self, app, make_staff) -> None:
        self.app = app
        self.world = World(app, make_staff)
        self.agent = self.world.staff("agent")
        self.officer = self.world.staff("compliance")
        self.version = self.world.template("Refund authorization")

    def envelope(self, name: str, email: str, ticket: str | None = None) -> tuple[str, int]:
        public_id = self.world.envelope(
            self.version,
            self.agent.id,
            at=DAY,
            people=[(name, email, None)],
            ticket_id=ticket,
        )
        with self.app.app_context():
            envelope = db.session.execute(
                select(Envelope).where(Envelope.public_id == public_id)
            ).scalar_one()
            return public_id, envelope.id

    def event(
        self,
        name: str,
        *,
        at: datetime = DAY,
        envelope_id: int | None = None,
        actor: int | None = None,
        ip: str | None = None,
        data: dict | None = None,
    ) -> int:
        with pytest.MonkeyPatch.context() as patch, self.app.app_context():
            patch.setattr(clock, "utcnow", lambda: at)
            who = db.session.get(User, actor) if actor else "system"
            subject = ("envelope", str(envelope_id), None) if envelope_id else None
            entry = audit.record(name, actor=who, subject=subject, data=data, ip=ip)
            seq = entry.seq
            db.session.commit()
            return seq

    def portal(self, role: str = "compliance") -> Portal:
        staff = self.officer if role == "compliance" else self.world.staff(role)
        return signed_in_as(self.app, staff)


@pytest.fixture
def trail(app, make_staff) -> Trail:
    return Trail(app, make_staff)


def found(portal: Portal, query: str) -> list[int]:
    return seqs(get(portal, f"/records/audit?{query}"))


def test_each_filter_finds_its_events(app, trail):
    ana, ana_id = trail.envelope("Ana Lopez", "ana@example.com", ticket="TCK-1")
    ben, ben_id = trail.envelope("Ben Okafor", "ben@example.com", ticket="TCK-2")
    viewed = trail.event("recipient.opened", envelope_id=ana_id, ip="203.0.113.7")
    voided = trail.event("envelope.voided", envelope_id=ben_id, actor=trail.agent.id,
                         data={"reason": "wrong customer"})  # fmt: skip
    login = trail.event("auth.login.succeeded", actor=trail.agent.id, ip="198.51.100.1",
                        at=DAY - timedelta(days=30))  # fmt: skip
    portal = trail.portal()

    assert found(portal, f"envelope={ana}") == [viewed]
    assert found(portal, "customer=ana@example.com") == [viewed]
    assert found(portal, "customer=ANA@EXAMPLE.COM") == [viewed], "emails whatever their case"
    assert found(portal, "customer=okafor") == [voided], "part of a name"
    assert found(portal, "customer=nobody@example.com") == []
    assert found(portal, f"staff={trail.agent.id}") == [login, voided]
    assert found(portal, "event=envelope.voided") == [voided]
    assert found(portal, "ip=203.0.113.7") == [viewed]
    assert found(portal, "ticket=TCK-2") == [voided]
    assert found(portal, "from=2026-10-01&to=2026-10-31") == [login]
    assert found(portal, f"from=2026-11-20&to=2026-11-20&staff={trail.agent.id}") == [voided]
    # the page reads the events through reveal: personal data shows in clear
    page = get(portal, f"/records/audit?envelope={ben}")
    assert "wrong customer" in html.unescape(page)
    assert f'href="/envelopes/{ben}"' in page, "each row links to its envelope"
    assert f"/records/audit?staff={trail.agent.id}" in html.unescape(page), "and its staff member"


def test_quick_picks_are_today_the_last_7_days_and_last_month(trail, monkeypatch):
    now = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    today = trail.event("auth.logout", at=now - timedelta(hours=1))
    week = trail.event("auth.logout", at=now - timedelta(days=6))
    november = trail.event("auth.logout", at=datetime(2026, 11, 2, tzinfo=UTC))
    october = trail.event("auth.logout", at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    portal = trail.portal()
    monkeypatch.setattr(clock, "utcnow", lambda: now)
    assert found(portal, "event=auth.logout&period=today") == [today]
    # the compliance report's quick picks (periods.py): one URL value for one pick
    assert found(portal, "event=auth.logout&period=last_7_days") == [week, today]  # newest first
    assert found(portal, "event=auth.logout&period=last_month") == [november, week]  # Nov 28
    assert found(portal, "event=auth.logout&period=this_month") == [today]
    # the search's first names still work (bookmarks), and are shown as the new ones
    assert found(portal, "event=auth.logout&period=7d") == [week, today]
    page = get(portal, "/records/audit?event=auth.logout&period=month")
    assert seqs(page) == [november, week]
    assert '<option value="last_month" selected>' in page
    assert 'value="month"' not in page and 'value="7d"' not in page
    assert found(portal, "event=auth.logout") == [october, november, week, today]
    assert search.period_range("month", datetime(2026, 1, 10).date()) == (
        datetime(2025, 12, 1).date(),
        datetime(2025, 12, 31).date(),
    )


def test_details_are_a_short_line_with_the_data_one_tap_away(trail):
    _, envelope_id = trail.envelope("Ana Lopez", "ana@example.com")
    sha = "ab" * 32
    data = {"kind": "audit", "rows": 1234, "sha256": sha, "filters": {"ip": "1.2.3.4"}}
    trail.event("records.exported", actor=trail.officer.id, data=data)
    trail.event("recipient.declined", envelope_id=envelope_id,
                data={"reason": "Wrong <amount> & fee", "recipient": 1})  # fmt: skip
    page = get(trail.portal(), "/records/audit")
    text = html.unescape(page)
    assert f"audit, 1234 rows, SHA-256 {sha[:16]}…" in text, "as the staff access report says"
    assert sha not in text.replace(f'"sha256": "{sha}"', ""), "the whole hash only in the data"
    assert "reason: Wrong <amount> & fee" in text
    assert "&lt;amount&gt;" in page, "escaped"
    # the full data is in a disclosure, indented, as written (not \u-escaped)
    assert '<details class="audit-json"><summary>Data' in page
    assert '\n  "reason": "Wrong <amount> & fee"' in text
    assert '"filters": {\n    "ip": "1.2.3.4"\n  }' in text


def test_pages_of_100_with_next_and_a_bounded_count(app, trail, monkeypatch):
    monkeypatch.setattr(search, "COUNT_CAP", 150)
    with app.app_context():
        audit.record_many(audit.Pending("auth.logout") for _ in range(230))
        db.session.commit()
    portal = trail.portal()
    first = get(portal, "/records/audit?event=auth.logout")
    assert len(seqs(first)) == 100 and seqs(first) == sorted(seqs(first), reverse=True)
    assert "Showing 100 of more than 150 events" in text_of(first)
    following = html.unescape(re.search(r'<a href="([^"]+)"[^>]*rel="next"', first).group(1))
    assert "Next 100" in text_of(first) and "event=auth.logout" in following
    second = get(portal, following)
    assert seqs(second)[0] == seqs(first)[-1] - 1 and len(seqs(second)) == 100
    third = get(portal, html.unescape(re.search(r'href="([^"]+)"[^>]*rel="next"', second)[1]))
    assert len(seqs(third)) == 30 and 'rel="next"' not in third
    every = seqs(first) + seqs(second) + seqs(third)
    assert len(set(every)) == 230
    # htmx: the rows at once, the count in a request of its own
    fragment = portal.client.get("/records/audit?event=auth.logout", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and "counting the others" in text_of(body)
    counting = html.unescape(re.search(r'hx-get="(/records/audit/count[^"]+)"', body).group(1))
    assert text_of(get(portal, counting)) == "Showing 100 of more than 150 events"
    monkeypatch.setattr(search, "COUNT_CAP", 10_000)
    assert text_of(get(portal, counting)) == "Showing 100 of 230 events"


def test_search_fires_on_input_so_a_paste_searches(trail):
    page = get(trail.portal(), "/records/audit")
    trigger = re.search(r'hx-trigger="([^"]+)"', page).group(1)
    assert "input changed" in trigger and "keyup" not in trigger
    assert "from:(#audit-filters input)" in trigger, "every text box of the form, pasted into too"
    assert 'hx-target="#audit-results"' in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-13-45", "From must be a date such as 2026-12-31"),
        ("from=yesterday&to=2026-01-01", "From must be a date such as 2026-12-31"),
        ("from=2026-11-30&to=2026-11-01", "The range ends (2026-11-01) before it starts"),
        ("event=auth.teleported", "There is no event type “auth.teleported”"),
        ("ip=999.1.1.1", "is not an IP address"),
        ("envelope=../../etc/passwd", "The envelope id is the 32 letters and digits"),
        ("staff=abc", "Choose the staff member from the list"),
        ("period=decade", "Choose the dates from the list of periods"),
        ("customer=" + "x" * 1_000_000, "The customer is longer than any real one"),
        ("customer=an", "Type at least 3 characters of the customer's email or name"),
        ("ticket==HYPERLINK(%22http://x%22)", ""),
    ],
)
def test_bad_input_gives_a_message_not_an_error(trail, query, message):
    trail.event("auth.logout")
    response = trail.portal().client.get(f"/records/audit?{query}")
    assert response.status_code == 200
    page = text_of(response.get_data(as_text=True))
    assert message in page
    if message:
        assert "flash" in response.get_data(as_text=True)


def test_agents_get_403_on_every_search_and_export_page(trail):
    agent = signed_in_as(trail.app, trail.agent)
    for url in ("/records/audit", "/records/audit/count", "/records/exports"):
        assert agent.client.get(url).status_code == 403, url
    assert agent.post("/records/exports", {"kind": "audit"}).status_code == 403
    admin = trail.portal("admin")
    assert admin.client.get("/records/audit").status_code == 200
    assert "Audit trail search" in get(admin, "/records/")


def test_scope_follows_the_teams_the_user_may_see(app, trail):
    """Officers see every team; a narrower user would see only their team's events."""
    lender = trail.world.staff("agent", team="Mortgages")
    other = trail.world.template("Loan", team="Mortgages")
    theirs = trail.world.envelope(other, lender.id, at=DAY)
    with app.app_context():
        envelope_id = db.session.execute(
            select(Envelope.id).where(Envelope.public_id == theirs)
        ).scalar_one()
    seq = trail.event("envelope.voided", envelope_id=envelope_id, actor=lender.id)
    _ours, our_id = trail.envelope("Ana Lopez", "ana@example.com")
    ours = trail.event("envelope.voided", envelope_id=our_id, actor=trail.agent.id)
    assert found(trail.portal(), "event=envelope.voided") == [ours, seq]
    with app.app_context():
        agent = db.session.get(User, trail.agent.id)
        query = search.AuditQuery.parse({"event": "envelope.voided"})
        assert [r.event.seq for r in search.page(query, agent).rows] == [ours]
        assert search.count(query, agent) == 1


# ---------------------------------------------------------------- PostgreSQL's plans


@pytest.mark.postgresql_only
def test_postgresql_answers_each_filter_from_its_index(app, trail):
    _public, envelope_id = trail.envelope("Ana Lopez", "ana@example.com", ticket="TCK-9")
    with app.app_context():
        # 200,000 events: staff sign-ins, events of 20,000 envelopes, each with an IP
        db.session.execute(
            text(
                "INSERT INTO audit_event (seq, occurred_at, event, actor_type, actor_id,"
                " subject_type, subject_id, ip, data, prev_hash, hash)"
                " SELECT i + 1000, to_char(timestamp '2025-01-01' + i * interval '1 minute',"
                ' \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'),'
                " CASE WHEN i % 997 = 0 THEN 'envelope.voided' ELSE (ARRAY["
                "'auth.login.succeeded','recipient.opened','mail.sent','envelope.sent',"
                "'auth.logout'])[1 + i % 5] END, 'user', (i % 300)::text,"
                " 'envelope', (i % 20000 + 100000)::text, NULL, '{}', md5(i::text),"
                " md5(i::text) || md5((i + 1)::text)"
                " FROM generate_series(1, 200000) AS i"
            )
        )
        db.session.execute(
            text(
                "INSERT INTO audit_ref (seq, envelope_id, team_id, ip)"
                " SELECT i + 1000, i % 20000 + 100000, NULL,"
                " '10.' || (i % 250) || '.' || (i % 199) || '.' || (i % 97)"
                " FROM generate_series(1, 200000) AS i"
            )
        )
        db.session.commit()
        with db.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE audit_event")
            connection.exec_driver_sql("ANALYZE audit_ref")
            connection.exec_driver_sql("ANALYZE envelope")
            connection.commit()
        officer = db.session.get(User, trail.officer.id)

        def plan(**args: str) -> tuple[str, str]:
            query = search.AuditQuery.parse(args)
            rows = search.matching(select(AuditEvent), query, officer)
            rows = rows.order_by(AuditEvent.seq.desc()).limit(search.PAGE_SIZE + 1)
            ids = search.matching(select(AuditEvent.seq), query, officer)
            return query_plan(rows), query_plan(ids.limit(search.COUNT_CAP + 1))

        page, count = plan(event="envelope.voided")  # a rare one (common ones: the newest)
        assert "Index Scan Backward using ix_audit_event_event_seq" in page, page
        assert "ix_audit_event_event" in count, count
        for page in plan(staff="17"):
            assert "ix_audit_event_actor" in page, page
        for page in (*plan(ticket="TCK-9"), *plan(customer="ana@example.com")):
            assert "using ix_audit_event_subject on audit_event" in page, page
        for page in plan(ip="10.3.3.3"):
            assert "ix_audit_ref_ip" in page, page
        for page in plan(**{"from": "2025-02-01", "to": "2025-02-02"}):
            assert "ix_audit_event_occurred_at" in page, page
        for page in plan(envelope=_public, event="recipient.opened"):
            assert "using ix_audit_event_subject on audit_event" in page, page
        for args in ({"staff": "17"}, {"event": "mail.sent"}, {"ip": "10.3.3.3"}):
            for page in plan(**args):
                assert "Seq Scan" not in page, page
        assert envelope_id


@pytest.mark.browser
def test_desktop_search_answers_a_paste_in_place_and_exports_what_it_shows(desktop, trail):
    from playwright.sync_api import expect

    _public, ana_id = trail.envelope("Ana Lopez", "ana@example.com", ticket="TCK-1")
    trail.event("recipient.opened", envelope_id=ana_id, ip="203.0.113.7")
    trail.event("auth.logout", actor=trail.agent.id)
    page = desktop.page
    desktop.sign_in(trail.officer)
    desktop.goto("/records/audit")
    rows = page.locator("#audit-rows tr")
    expect(page.locator("#audit-rows")).to_contain_text("Signed out")
    page.evaluate("window.__sameDocument = true")
    page.get_by_label("Customer email or name").fill("ana@example.com")  # a paste: no key
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Link opened")
    expect(page).to_have_url(re.compile(r"/records/audit\?customer=ana%40example.com"))
    expect(page.locator("#audit-count")).to_have_text("Showing 1 of 1 event")
    assert page.evaluate("window.__sameDocument === true"), "the search reloaded the page"
    desktop.screenshot("desktop-audit-search.png")
    with page.expect_download() as info:
        page.get_by_role("button", name="Export events (CSV)").click()
    content = info.value.path().read_bytes()
    assert content.startswith(b"\xef\xbb\xbf") and b"203.0.113.7" in content
    assert content.count(b"\r\n") == 2, "the header and the one event shown"
    page.get_by_label("Event type").select_option("auth.logout")
    expect(page.locator("#audit-rows")).to_contain_text("No events match.")
    desktop.assert_clean()
