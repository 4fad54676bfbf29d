"""The console's lists at scale: keyset pages, sort orders, filters, "needs attention",
search (merge values, phones), capped counts, the CSV export, constant statement counts and
team scoping."""

from __future__ import annotations

import base64
import csv
import html
import io
import itertools
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, text, update

from portal import clock, storage
from portal.accounts.models import Team, User
from portal.envelopes import console
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.library.models import Template, TemplateVersion
from portal.mail import Message
from tests.conftest import Portal, audit_events, query_plan

ROW = re.compile(r'href="/envelopes/([0-9a-f]{32})"')
NOW = clock.utcnow().replace(microsecond=0)


def ids_on(page: str) -> list[str]:
    """The envelopes a list page shows, in order."""
    return ROW.findall(page)


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)"[^>]*rel="{rel}"', page)
    return html.unescape(found.group(1)) if found else None


class World:
    """Teams, staff, templates and envelopes made straight in the database (fast)."""

    def __init__(self, app, make_staff) -> None:
        self.app = app
        self.make_staff = make_staff
        self.numbers = itertools.count(1)
        with app.app_context():
            self.blob = storage.put(b"%PDF-1.7 test", kind="envelope_document")
            db.session.commit()

    def staff(self, role: str = "agent", team: str | None = "Customer Care"):
        return self.make_staff(role, team=team)

    def template(self, name: str, team: str = "Customer Care") -> int:
        """An approved template of the team; returns its approved version's id."""
        with self.app.app_context():
            team_row = db.session.execute(select(Team).where(Team.name == team)).scalar_one()
            template = Template(name=name, document_type="other", team_id=team_row.id)
            version = TemplateVersion(
                template=template,
                number=1,
                status="approved",
                source_kind="pdf",
                source_blob_id=self.blob,
                page_count=1,
                roles=[{"key": "customer", "name": "Customer", "kind": "signer", "order": 1}],
            )
            db.session.add_all([template, version])
            db.session.commit()
            return version.id

    def envelope(
        self,
        version_id: int,
        sender_id: int,
        *,
        at: datetime,
        status: str = "sent",
        title: str | None = None,
        merge: dict[str, str] | None = None,
        people: list[tuple[str, str, str | None]] | None = None,
        **columns: object,
    ) -> str:
        """An envelope sent at ``at`` (through the ORM, so its search text is kept)."""
        number = next(self.numbers)
        with self.app.app_context():
            version = db.session.get(TemplateVersion, version_id)
            sender = db.session.get(User, sender_id)
            envelope = Envelope(
                public_id=uuid.uuid4().hex,
                template_version_id=version_id,
                team_id=version.template.team_id,
                created_by_id=sender.id,
                title=title or version.template.name,
                status=status,
                merge_data=merge or {"order.number": f"ORD-{number:05d}"},
                document_blob_id=self.blob,
                original_sha256="0" * 64,
                page_count=1,
                created_at=at,
                sent_at=at,
                **{"expires_at": at + timedelta(days=30), **columns},
            )
            for name, email, phone in people or [
                (f"Customer {number}", f"customer{number}@example.com", None)
            ]:
                envelope.recipients.append(
                    Recipient(
                        role="customer",
                        role_name="Customer",
                        kind="signer",
                        name=name,
                        email=email,
                        phone=phone,
                        status="sent",
                    )
                )
            db.session.add(envelope)
            db.session.commit()
            return envelope.public_id

    def many(self, version_id: int, sender_id: int, count: int, start: datetime) -> list[str]:
        """``count`` envelopes a minute apart from ``start``, newest first."""
        made = [
            self.envelope(version_id, sender_id, at=start + timedelta(minutes=i))
            for i in range(count)
        ]
        return made[::-1]


@pytest.fixture
def world(app, make_staff) -> World:
    return World(app, make_staff)


def signed_in_as(app, staff) -> Portal:
    portal = Portal(app, app.test_client())
    response = portal.sign_in(staff)
    assert response.status_code == 302, response.get_data(as_text=True)
    return portal


def get(portal: Portal, url: str) -> str:
    response = portal.client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


# ---------------------------------------------------------------- pages and sort orders


def test_pages_forward_and_back_in_a_stable_order(app, world):
    agent = world.staff()
    version = world.template("Refund authorization")
    newest_first = world.many(version, agent.id, 120, NOW - timedelta(days=1))
    portal = signed_in_as(app, agent)

    first = get(portal, "/console")
    assert ids_on(first) == newest_first[:50]
    assert "Showing 50 of 120 envelopes" in text_of(first)
    assert link(first, "prev") is None
    # an envelope sent meanwhile does not shift the next page (keyset, not OFFSET)
    latest = world.envelope(version, agent.id, at=NOW)
    second = get(portal, link(first, "next"))
    assert ids_on(second) == newest_first[50:100]
    third = get(portal, link(second, "next"))
    assert ids_on(third) == newest_first[100:]
    assert link(third, "next") is None
    back = get(portal, link(third, "prev"))
    assert ids_on(back) == newest_first[50:100]
    back_again = get(portal, link(back, "prev"))
    assert ids_on(back_again) == newest_first[:50]
    newer = get(portal, link(back_again, "prev"))
    assert ids_on(newer) == [latest], "before the old first page: what was sent since"
    assert link(newer, "prev") is None and link(newer, "next")


def test_columns_sort_both_ways_and_pages_follow_the_sort(app, world, monkeypatch):
    monkeypatch.setattr(console, "PAGE_SIZE", 2)
    agent = world.staff()
    version = world.template("Refund authorization")
    made = {
        title: world.envelope(version, agent.id, at=NOW - timedelta(hours=h), title=title, status=s)
        for title, h, s in [
            ("Beta", 5, "sent"),
            ("alpha", 4, "completed"),
            ("Delta", 3, "sent"),
            ("Gamma", 2, "declined"),
            ("Epsilon", 1, "voided"),
        ]
    }
    portal = signed_in_as(app, agent)

    def every_page(url: str) -> list[str]:
        shown: list[str] = []
        while url:
            page = get(portal, url)
            shown += ids_on(page)
            url = link(page, "next")
        return shown

    titles = {v: k for k, v in made.items()}
    by_document = [titles[i] for i in every_page("/console?sort=document")]
    assert by_document == sorted(made, key=lambda t: (t, made[t]))  # the database's order
    assert [titles[i] for i in every_page("/console?sort=-document")] == by_document[::-1]
    assert [titles[i] for i in every_page("/console?sort=status")] == [
        "alpha",
        "Gamma",
        "Beta",
        "Delta",
        "Epsilon",
    ]  # fmt: skip  (completed, declined, sent (oldest first), voided)
    assert [titles[i] for i in every_page("/console?sort=sent")] == [
        "Beta", "alpha", "Delta", "Gamma", "Epsilon",
    ]  # fmt: skip
    page = get(portal, "/console?sort=document")
    assert 'aria-sort="ascending"' in page and "sort=-document" in page, "click again: reverse"
    first = [made["Epsilon"], made["Gamma"]]
    for nonsense in [
        "sort=drop+table&after=not-a-cursor",
        "before=" + console.cursor_of(["2026-01-01", "not an id"]),
        "after=" + console.cursor_of(["x"] * 3),
        "after=" + "W" * 5000,  # (deeply nested brackets: refused unread)
        "after=" + base64.urlsafe_b64encode(b"[" * 800).decode(),
        "template=%C2%B2&team=1e9",
    ]:
        assert ids_on(get(portal, f"/console?{nonsense}")) == first, nonsense


# ---------------------------------------------------------------- filters


def test_every_filter_narrows_the_list(app, world):
    agent = world.staff()
    colleague = world.staff()
    refund = world.template("Refund authorization")
    addendum = world.template("Service-change addendum")
    mine_old = world.envelope(refund, agent.id, at=datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
    mine_mid = world.envelope(
        addendum, agent.id, at=datetime(2026, 3, 2, 0, 0, tzinfo=UTC), status="completed"
    )
    theirs = world.envelope(refund, colleague.id, at=datetime(2026, 3, 3, 12, 0, tzinfo=UTC))
    portal = signed_in_as(app, agent)

    def shown(query: str) -> set[str]:
        return set(ids_on(get(portal, f"/console?{query}")))

    assert shown("") == {mine_old, mine_mid, theirs}
    assert shown("status=completed") == {mine_mid}
    assert shown("status=sent") == {mine_old, theirs}
    with app.app_context():
        addendum_template = db.session.get(TemplateVersion, addendum).template_id
    assert shown(f"template={addendum_template}") == {mine_mid}
    assert shown("mine=1") == {mine_old, mine_mid}
    assert shown("sent_from=2026-03-02") == {mine_mid, theirs}, "from: the whole UTC day"
    assert shown("sent_to=2026-03-02") == {mine_old, mine_mid}, "to: the whole UTC day"
    assert shown("sent_from=2026-03-02&sent_to=2026-03-02") == {mine_mid}
    assert shown("mine=1&status=sent") == {mine_old}
    page = get(portal, "/console?sent_from=2026-02-30&status=sent")
    assert "Sent from must be a date such as 2026-12-31; it was left out." in text_of(page)
    assert set(ids_on(page)) == {mine_old, theirs}
    assert 'value="completed" selected' in get(portal, "/console?status=completed")


def test_team_filter_is_for_those_who_see_every_team(app, world):
    care = world.staff("agent", team="Customer Care")
    billing = world.staff("agent", team="Billing")
    compliance = world.staff("compliance", team="Compliance")
    ours = world.envelope(world.template("Refund authorization"), care.id, at=NOW)
    theirs = world.envelope(world.template("Invoice", team="Billing"), billing.id, at=NOW)
    with app.app_context():
        billing_id = db.session.execute(select(Team.id).where(Team.name == "Billing")).scalar()

    reviewer = signed_in_as(app, compliance)
    page = get(reviewer, "/console")
    assert set(ids_on(page)) == {ours, theirs} and ">Team</label>" in page
    assert set(ids_on(get(reviewer, f"/console?team={billing_id}"))) == {theirs}

    agent = signed_in_as(app, care)
    page = get(agent, f"/console?team={billing_id}")
    assert ids_on(page) == [ours], "an agent's team= is ignored: still only their team"
    assert ">Team</label>" not in page


def test_needs_attention_lists_what_an_agent_must_act_on(app, world):
    agent = world.staff()
    version = world.template("Refund authorization")
    at = NOW - timedelta(days=3)

    def make(**columns: object) -> str:
        return world.envelope(version, agent.id, at=at, **columns)

    fine = make()
    bounced = make(people=[("Bo Unce", "bo@example.com", None)])
    failed = make(people=[("Fay Led", "fay@example.com", None)])
    resent_ok = make(people=[("Re Sent", "re@example.com", None)])
    locked = make(people=[("Lock Ed", "lock@example.com", None)])
    seal_failed = make(status="completed", seal_status="failed", seal_error="no certificate")
    expiring = make(expires_at=NOW + timedelta(days=1))
    not_yet = make(expires_at=NOW + timedelta(days=3))
    declined_today = make(status="declined", finished_at=NOW)
    declined_before = make(status="declined", finished_at=NOW - timedelta(days=2))
    voided_bounce = make(status="voided", people=[("Vo Id", "void@example.com", None)])
    with app.app_context():

        def mail_to(public_id: str, *statuses: str) -> None:
            envelope = db.session.execute(
                select(Envelope).where(Envelope.public_id == public_id)
            ).scalar_one()
            recipient = envelope.recipients[0]
            for status in statuses:
                db.session.add(
                    Message(
                        to_address=recipient.email,
                        subject="Please sign",
                        text_body="...",
                        kind="signing_request",
                        envelope_id=envelope.id,
                        recipient_id=recipient.id,
                        status=status,
                    )
                )
            # a notice to the agent about it is not an email to the recipient
            db.session.add(
                Message(
                    to_address="agent@example.com",
                    subject="Bounced",
                    text_body="...",
                    kind="notice",
                    envelope_id=envelope.id,
                    recipient_id=recipient.id,
                    status="sent",
                )
            )
            db.session.commit()

        mail_to(bounced, "sent", "bounced")
        mail_to(failed, "failed")
        mail_to(resent_ok, "bounced", "sent")
        mail_to(voided_bounce, "bounced")
        db.session.execute(
            update(Recipient)
            .where(Recipient.email == "lock@example.com")
            .values(locked_at=NOW - timedelta(minutes=5))
        )
        db.session.commit()
    portal = signed_in_as(app, agent)

    page = get(portal, "/console?attention=1")
    assert set(ids_on(page)) == {bounced, failed, locked, seal_failed, expiring, declined_today}, (
        "not: fine, resent_ok, not_yet, declined_before, voided_bounce"
    )
    words = text_of(page)
    assert "Email bounced: Bo Unce" in words and "Email failed: Fay Led" in words
    assert "Locked: Lock Ed" in words and "Expires soon" in words and "Sealing failed" in words
    assert "Showing 6 of 6 envelopes" in words
    # the reasons show in the whole list too, and the filter combines with the others
    assert "Email bounced: Bo Unce" in text_of(get(portal, "/console"))
    assert set(ids_on(get(portal, "/console?attention=1&status=declined"))) == {declined_today}
    assert fine and not_yet and declined_before and resent_ok


# ---------------------------------------------------------------- search


def test_search_finds_merge_values_phones_names_emails_titles_and_tickets(app, world):
    agent = world.staff()
    version = world.template("Refund authorization")
    order = world.envelope(
        version,
        agent.id,
        at=NOW,
        merge={"order.number": "ORD-77123", "account.number": "AC-558120"},
        people=[("Zoë Łukasiewicz", "Zoe.L@Example.com", "+44 20 7946-0000")],
        ticket_id="T-1001",
    )
    other = world.envelope(version, agent.id, at=NOW, title="Service-change addendum")
    portal = signed_in_as(app, agent)

    def found(term: str) -> list[str]:
        response = portal.client.get("/console", query_string={"q": term})
        return ids_on(response.get_data(as_text=True))

    for term in [
        "ORD-77123", "ord-771", "AC-558120", "558120",  # merge values, any part, any case
        "+44 20 7946-0000", "7946-0000", "79460000", "442079460000",  # the phone, typed or not
        "ŁUKASIEWICZ", "zoë", "zoe.l@example", "t-1001",  # name, email, ticket
    ]:  # fmt: skip
        assert found(term) == [order], term
    assert found("addendum") == [other]
    assert found("ORD-99999") == [] and found("100%") == [] and found("ORD_77123") == []
    assert set(found("  ")) == {order, other}


def test_search_text_is_kept_when_an_email_is_corrected(ctx, world):
    from portal.envelopes import operations as ops
    from portal.envelopes import search

    agent = world.staff()
    version = world.template("Refund authorization")
    public_id = world.envelope(version, agent.id, at=NOW, people=[("Ann", "ann@old.example", None)])
    envelope = db.session.execute(
        select(Envelope).where(Envelope.public_id == public_id)
    ).scalar_one()
    assert "ann@old.example" in envelope.search_text
    ops.correct_email(envelope.recipients[0], "ann@new.example", by=db.session.get(User, agent.id))
    db.session.expire_all()
    envelope = db.session.get(Envelope, envelope.id)
    assert "ann@new.example" in envelope.search_text
    assert "ann@old.example" not in envelope.search_text
    people = [(r.name, r.email, r.phone) for r in envelope.recipients]
    expected = search.search_text_for(
        envelope.title, envelope.ticket_id, envelope.merge_data, people
    )
    assert envelope.search_text == expected, "the one definition, for Core inserts too"


def test_a_search_shows_its_rows_first_and_counts_them_in_a_request_of_its_own(app, world):
    agent = world.staff()
    version = world.template("Refund authorization")
    world.many(version, agent.id, 55, NOW - timedelta(hours=2))
    portal = signed_in_as(app, agent)

    rows = portal.client.get("/console?q=customer", headers={"HX-Request": "true"})
    fragment = rows.get_data(as_text=True)
    assert len(ids_on(fragment)) == 50 and "<html" not in fragment
    assert "Showing 50 envelopes; counting the others" in text_of(fragment)
    counting = html.unescape(re.search(r'hx-get="(/console/count[^"]+)"', fragment).group(1))
    assert "q=customer" in counting and "shown=50" in counting
    assert text_of(get(portal, counting)) == "Showing 50 of 55 envelopes"
    # a search that fits on the page needs no count; without htmx the page counts at once
    one = portal.client.get("/console?q=ORD-00007", headers={"HX-Request": "true"})
    assert "Showing 1 of 1 envelope" in text_of(one.get_data(as_text=True))
    assert "Showing 50 of 55 envelopes" in text_of(get(portal, "/console?q=customer"))


def test_search_fires_on_input_so_a_paste_searches(app, world):
    page = get(signed_in_as(app, world.staff()), "/console")
    trigger = re.search(r'hx-trigger="([^"]+)"', page).group(1)
    assert "input changed" in trigger and "from:#envelope-search" in trigger
    assert "keyup" not in trigger, "a paste with the mouse fires no keyup"


# ---------------------------------------------------------------- counts


def test_counts_stop_at_the_cap(app, world, monkeypatch):
    monkeypatch.setattr(console, "COUNT_CAP", 4)
    monkeypatch.setattr(console, "PAGE_SIZE", 3)
    agent = world.staff()
    version = world.template("Refund authorization")
    world.many(version, agent.id, 6, NOW - timedelta(hours=1))
    portal = signed_in_as(app, agent)
    assert "Showing 3 of more than 4 envelopes" in text_of(get(portal, "/console"))
    with app.app_context():
        assert console.count(console.ListQuery(), db.session.get(User, agent.id)) == 5
    assert "Showing 1 of 1 envelope" in text_of(get(portal, "/console?q=ORD-00006"))


# ---------------------------------------------------------------- CSV export


def test_export_has_every_matching_row_escaped_and_is_audited(app, world, monkeypatch):
    monkeypatch.setattr(console, "PAGE_SIZE", 2)
    from portal.envelopes import export

    monkeypatch.setattr(export, "BATCH", 2)  # several batches, each its own read
    agent = world.staff()
    version = world.template("Refund authorization")
    hostile = world.envelope(
        version,
        agent.id,
        at=NOW - timedelta(hours=1),
        people=[('=HYPERLINK("http://evil.example","x")', "h@example.com", "+1 555 0100")],
        ticket_id="@SUM(1+1)",
    )
    plain = world.many(version, agent.id, 4, NOW - timedelta(hours=3))
    world.envelope(version, agent.id, at=NOW, status="voided")
    portal = signed_in_as(app, agent)

    response = portal.client.get("/console/envelopes.csv?status=sent")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 with a BOM, for spreadsheets"
    table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert table[0][:3] == ["Envelope", "Document", "Status"]
    assert [row[0] for row in table[1:]] == [hostile, *plain], "all pages, the list's order"
    first = table[1]
    assert first[4] == "'@SUM(1+1)"
    assert first[-1].startswith("'=HYPERLINK(") and "+1 555 0100" in first[-1]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in table for cell in row)
    (recorded,) = audit_events(app, "envelope.list_exported")
    assert recorded.actor_id == str(agent.id)
    assert recorded.data == {"filters": {"status": "sent"}, "rows": 5, "complete": True}
    page = get(portal, "/console?status=sent")
    assert "/console/envelopes.csv?status=sent" in html.unescape(page), "exports what is shown"


def test_safe_cell_neutralises_formulas_only():
    from portal.exports import safe_cell

    assert safe_cell("=1+1") == "'=1+1"
    assert safe_cell("+44 20") == "'+44 20"
    assert safe_cell("-5") == "'-5"
    assert safe_cell("@cmd") == "'@cmd"
    assert safe_cell("\t=1") == "'\t=1"
    assert safe_cell("\r=1") == "'\r=1"
    assert safe_cell("Zoë = happy") == "Zoë = happy"
    assert safe_cell(None) == "" and safe_cell(42) == "42"


# ---------------------------------------------------------------- statement counts


@contextmanager
def counted(app) -> Iterator[list[str]]:
    """The SQL statements the app's engine runs meanwhile."""
    statements: list[str] = []

    def listener(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        with app.app_context():
            event.remove(db.engine, "before_cursor_execute", listener)


def _statements_for(app, world, size: int, role: str) -> tuple[int, int]:
    team = f"Team {size} {role}"
    person = world.staff(role, team=team)
    for number in range(size):
        version = world.template(f"Template {number:03d}", team=team)
        world.envelope(version, person.id, at=NOW - timedelta(minutes=number))
    portal = signed_in_as(app, person)
    url = "/console?mine=1"  # (compliance sees every team's, the other sizes' too)
    get(portal, url)  # the session's first page touches it; count the next ones
    with counted(app) as console_statements:
        page = get(portal, url)
    assert len(ids_on(page)) == min(size, console.PAGE_SIZE)
    with counted(app) as library_statements:
        page = get(portal, "/library/")
    assert len(re.findall(r'href="/library/\d+"', page)) >= size
    return len(console_statements), len(library_statements)


@pytest.mark.parametrize("role", ["agent", "compliance"])
def test_console_and_library_cost_the_same_statements_for_5_or_50(app, world, role):
    five = _statements_for(app, world, 5, role)
    fifty = _statements_for(app, world, 50, role)
    assert five == fifty, f"console, library statements: 5 -> {five}, 50 -> {fifty}"
    assert five[0] <= 12 and five[1] <= 6, five


# ---------------------------------------------------------------- team scoping


def test_an_agent_never_sees_another_teams_envelopes(app, world):
    care = world.staff("agent", team="Customer Care")
    billing = world.staff("agent", team="Billing")
    shared = {"order.number": "ORD-SHARED"}
    ours = world.envelope(world.template("Refund authorization"), care.id, at=NOW, merge=shared)
    invoice = world.template("Invoice", team="Billing")
    theirs = [world.envelope(invoice, billing.id, at=NOW, merge=shared) for _ in range(3)]
    portal = signed_in_as(app, care)

    for url in [
        "/console",
        "/console?q=ORD-SHARED",
        "/console?mine=1",
        "/console?attention=1",
        "/console?sort=document",
    ]:
        page = get(portal, url)
        assert not set(ids_on(page)) & set(theirs), url
    assert ids_on(get(portal, "/console?q=ORD-SHARED")) == [ours]
    assert "Showing 1 of 1 envelope" in text_of(get(portal, "/console?q=ORD-SHARED"))
    assert text_of(get(portal, "/console/count?q=ORD-SHARED&shown=1")) == (
        "Showing 1 of 1 envelope"
    )
    exported = portal.client.get("/console/envelopes.csv?q=ORD-SHARED").get_data(as_text=True)
    assert ours in exported and not any(t in exported for t in theirs)
    with app.app_context():
        invoice_template = db.session.get(TemplateVersion, invoice).template_id
    assert ids_on(get(portal, f"/console?template={invoice_template}")) == []
    assert "Invoice" not in get(portal, "/console"), "nor another team's templates to filter by"


# ---------------------------------------------------------------- PostgreSQL's plans


@pytest.mark.postgresql_only
def test_postgresql_answers_search_and_team_lists_from_their_indexes(app, world):
    agent = world.staff()
    version = world.template("Refund authorization")
    with app.app_context():
        user = db.session.get(User, agent.id)
        db.session.execute(
            text(
                "INSERT INTO envelope (public_id, template_version_id, team_id, created_by_id,"
                " title, status, merge_data, routing, settings, document_blob_id,"
                " original_sha256, page_count, pages, images_status, created_at, search_text)"
                " SELECT md5(i::text), :version, CASE WHEN i % 50 = 0 THEN :team ELSE NULL END,"
                " :sender, 'Refund authorization', 'sent', '{}', 'sequential', '{}', :blob,"
                " repeat('0', 64), 1, '[]', 'ready', now() - i * interval '1 minute',"
                " 'refund authorization' || chr(10) || 'ord-' || lpad(i::text, 7, '0')"
                " || chr(10) || 'customer' || i || '@example.com'"
                " FROM generate_series(1, 40000) AS i"
            ),
            {"version": version, "team": user.team_id, "sender": agent.id, "blob": world.blob},
        )
        db.session.commit()
        with db.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE envelope")
        db.session.expire_all()
        user = db.session.get(User, agent.id)

        def plans(**args: str) -> tuple[str, str]:
            query = console.ListQuery.parse(args, all_teams=False)
            page = console.keyset(
                console.matching(select(Envelope), query, user), query, None, False
            )
            ids = console.matching(select(Envelope.id), query, user).limit(console.COUNT_CAP + 1)
            return query_plan(page.limit(console.PAGE_SIZE + 1)), query_plan(ids)

        for plan in plans(q="ORD-0012350"):
            assert "ix_envelope_search_text" in plan, plan
            assert "Seq Scan" not in plan, plan
        for plan in plans():
            assert "ix_envelope_team_created" in plan or "ix_envelope_team_" in plan, plan
            assert "Seq Scan" not in plan, plan
        page, _count = plans(sort="document")
        assert "ix_envelope_team_title" in page, page
        page, _count = plans(status="sent")
        assert "ix_envelope_team_status" in page, page
