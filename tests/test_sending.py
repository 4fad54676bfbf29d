"""Sending from the console: once per form, warned about repeats, prefilled from a CRM ticket,
with send-time options; following up (remind now, void after a confirmation) and the
envelope page's timeline, filled-in values and approvers' comments."""

from __future__ import annotations

import html
import re
import threading
from datetime import timedelta
from io import BytesIO

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from portal import clock
from portal.envelopes.handover import LinkHandover
from portal.envelopes.idempotency import SendKey
from portal.envelopes.models import Envelope, Recipient
from portal.extensions import db
from portal.library import operations as library
from portal.library.models import Template
from portal.mail import Message
from tests.conftest import Portal, audit_events, demo_template
from tests.test_envelopes import REFUND_VALUES

KEY = re.compile(r'name="send_key" value="([^"]+)"')
LINK = re.compile(r'id="link-\d+">([^<]+)<')


@pytest.fixture
def agent(app, runner_for, make_staff) -> tuple[Portal, int]:
    """An agent of the demo team, signed in, and the refund template's approved version."""
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        version_id = library.approved_version(demo_template()).id
    portal = Portal(app, app.test_client())
    assert portal.sign_in(make_staff("agent", team="Customer Care")).status_code == 302
    return portal, version_id


def form_key(portal: Portal, version_id: int, query: str = "") -> str:
    page = portal.client.get(f"/envelopes/new/{version_id}{query}").get_data(as_text=True)
    return KEY.search(page).group(1)


def refund_form(key: str, **overrides: str) -> dict[str, str]:
    data = {f"m-{k}": v for k, v in REFUND_VALUES.items()}
    data.update(
        {
            "send_key": key,
            "r-customer-name": "Zoë Łukasiewicz",
            "r-customer-email": "zoe@example.com",
            "r-customer-locale": "en",
            "r-customer-auth": "link",
            "ticket_id": "T-42",
        }
    )
    data.update(overrides)
    return data


def count(app, model) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# ---------------------------------------------------------------- no duplicate sends


def test_a_send_redirects_to_the_result_and_its_links_show_once(app, agent):
    portal, version_id = agent
    response = portal.post(
        f"/envelopes/new/{version_id}", refund_form(form_key(portal, version_id))
    )
    assert response.status_code == 303
    result = response.headers["Location"]
    with app.app_context():
        envelope = db.session.execute(select(Envelope)).scalar_one()
        assert result.endswith(f"/envelopes/{envelope.public_id}/sent")
        sealed = db.session.execute(select(LinkHandover.sealed)).scalar_one()
    first = portal.client.get(result)
    link = LINK.search(first.get_data(as_text=True)).group(1)
    assert first.status_code == 200 and "Sent" in first.get_data(as_text=True)
    assert "<svg" in first.get_data(as_text=True)  # the QR code
    token = link.rsplit("/", 1)[1]
    assert token.encode() not in sealed, "the link is kept encrypted, never as it is"
    assert count(app, LinkHandover) == 0, "shown, then gone"
    again = text_of(portal.client.get(result))
    assert "/s/" not in again and "shown once, right after sending" in again
    assert "Send Zoë Łukasiewicz a new link" in again
    # another staff session (a colleague, or after signing in again) never sees them
    assert count(app, Envelope) == 1


def test_reload_and_resubmit_of_the_same_form_send_once(app, agent):
    portal, version_id = agent
    data = refund_form(form_key(portal, version_id))
    first = portal.post(f"/envelopes/new/{version_id}", data)
    second = portal.post(f"/envelopes/new/{version_id}", data)  # a reload of the POST, a retry
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert count(app, Envelope) == 1 and count(app, Message) == 1
    assert len(audit_events(app, "envelope.created")) == 1
    shown = portal.client.get(first.headers["Location"]).get_data(as_text=True)
    assert LINK.search(shown), "the retried request lands on the result with its links"


def test_two_submits_at_the_same_moment_create_one_envelope(app, agent):
    portal, version_id = agent
    data = refund_form(form_key(portal, version_id))
    twin = app.test_client()
    with portal.client.session_transaction() as state:
        copied = dict(state)
    with twin.session_transaction() as state:
        state.update(copied)
    token = Portal(app, twin).csrf()
    barrier = threading.Barrier(2)
    answers: list[tuple[int, str]] = []

    def submit(client, csrf):
        barrier.wait()
        response = client.post(f"/envelopes/new/{version_id}", data={**data, "csrf_token": csrf})
        answers.append((response.status_code, response.headers.get("Location", "")))

    threads = [
        threading.Thread(target=submit, args=(client, csrf))
        for client, csrf in ((portal.client, portal.csrf()), (twin, token))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [status for status, _ in answers] == [303, 303]
    assert answers[0][1] == answers[1][1]
    assert count(app, Envelope) == 1 and count(app, Message) == 1 and count(app, SendKey) == 1


def test_a_sent_form_edited_and_sent_again_is_not_taken_for_a_retry(app, agent):
    portal, version_id = agent
    key = form_key(portal, version_id)
    portal.post(f"/envelopes/new/{version_id}", refund_form(key))
    with app.app_context():
        first = db.session.execute(select(Envelope.public_id)).scalar_one()
    # the agent went back to the page, typed another customer and sent the same form again
    edited = refund_form(key, **{"r-customer-email": "ana@example.com", "ticket_id": "T-77"})
    response = portal.post(f"/envelopes/new/{version_id}", edited)
    page = text_of(response)
    assert response.status_code == 422
    assert "This form already sent Refund authorization" in page and "nothing was sent" in page
    assert f'href="/envelopes/{first}"' in page and 'value="ana@example.com"' in page
    assert count(app, Envelope) == 1 and count(app, Message) == 1
    fresh = KEY.search(page).group(1)
    assert fresh != key
    assert (
        portal.post(f"/envelopes/new/{version_id}", {**edited, "send_key": fresh}).status_code
        == 303
    )
    with app.app_context():
        emails = set(db.session.execute(select(Recipient.email)).scalars())
    assert emails == {"zoe@example.com", "ana@example.com"}


def test_a_form_without_its_key_sends_nothing_and_comes_back_with_one(app, agent):
    portal, version_id = agent
    response = portal.post(f"/envelopes/new/{version_id}", refund_form(""))
    page = text_of(response)
    assert response.status_code == 422 and "This form has expired" in page
    assert KEY.search(page).group(1), "a fresh key to send with"
    assert 'value="ORD-77"' in page, "what was typed stays"
    assert count(app, Envelope) == 0


def test_a_repeat_within_24_hours_is_warned_about_and_sent_only_when_confirmed(app, agent):
    portal, version_id = agent
    portal.post(f"/envelopes/new/{version_id}", refund_form(form_key(portal, version_id)))
    with app.app_context():
        earlier = db.session.execute(select(Envelope.public_id)).scalar_one()
    key = form_key(portal, version_id)
    warned = portal.post(f"/envelopes/new/{version_id}", refund_form(key))
    page = text_of(warned)
    assert warned.status_code == 409 and "This looks like a repeat" in page
    assert f'href="/envelopes/{earlier}"' in page and "for ticket T-42" in page
    assert "Send it again" in page and count(app, Envelope) == 1 and count(app, Message) == 1
    sent = portal.post(f"/envelopes/new/{version_id}", refund_form(key, confirm_duplicate="yes"))
    assert sent.status_code == 303 and count(app, Envelope) == 2
    (confirmed,) = audit_events(app, "envelope.duplicate_confirmed")
    assert confirmed.data == {"earlier": [earlier]}


@pytest.mark.parametrize(
    "change",
    ["another ticket", "another email", "a day later", "earlier one voided"],
)
def test_no_repeat_warning_when_it_is_not_the_same_sending(app, agent, change):
    portal, version_id = agent
    portal.post(f"/envelopes/new/{version_id}", refund_form(form_key(portal, version_id)))
    overrides = {}
    if change == "another ticket":
        overrides = {"ticket_id": "T-43"}
    elif change == "another email":
        overrides = {"r-customer-email": "zoe.other@example.com"}
    elif change == "a day later":
        with app.app_context():
            earlier = db.session.execute(select(Envelope)).scalar_one()
            earlier.created_at = clock.utcnow() - timedelta(hours=24, minutes=1)
            db.session.commit()
    else:
        with app.app_context():
            public_id = db.session.execute(select(Envelope.public_id)).scalar_one()
        portal.post(f"/envelopes/{public_id}/void", {"reason": "Wrong order"})
    response = portal.post(
        f"/envelopes/new/{version_id}", refund_form(form_key(portal, version_id), **overrides)
    )
    assert response.status_code == 303, text_of(response)
    assert count(app, Envelope) == 2


# ---------------------------------------------------------------- faster sending


def test_recipient_and_merge_fields_fill_each_other_without_javascript(app, agent):
    portal, version_id = agent
    data = refund_form(
        form_key(portal, version_id), **{"r-customer-name": "", "m-customer.email": ""}
    )
    data["r-customer-email"] = "zoe.typed.once@example.com"
    assert portal.post(f"/envelopes/new/{version_id}", data).status_code == 303
    with app.app_context():
        envelope = db.session.execute(select(Envelope)).scalar_one()
        (customer,) = envelope.recipients
        assert customer.name == REFUND_VALUES["customer.name"]  # from the merge field
        assert envelope.merge_data["customer.email"] == "zoe.typed.once@example.com"


def test_the_form_marks_the_pairs_its_script_keeps_in_step(agent):
    portal, version_id = agent
    page = portal.client.get(f"/envelopes/new/{version_id}").get_data(as_text=True)
    assert 'id="m-customer.name"' in page and 'data-mirror="r-customer-name"' in page
    assert 'id="r-customer-email"' in page and 'data-mirror="m-customer.email"' in page
    assert "js/send-form.js" in page


def test_a_deep_link_prefills_the_form_and_sends_nothing(app, agent):
    portal, version_id = agent
    query = (
        "?m-customer.name=Jordan%20Rivera&m-order.number=ORD-9&r-customer-email=j%40example.com"
        "&r-customer-locale=es&ticket_id=CRM-7&ticket_url=https%3A%2F%2Fcrm.example.com%2F7"
        "&r-customer-code=4711&send_key=" + "k" * 30
    )
    response = portal.client.get(f"/envelopes/new/{version_id}{query}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="m-customer.name" name="m-customer.name" value="Jordan Rivera"' in page
    assert 'id="r-customer-name" name="r-customer-name" value="Jordan Rivera"' in page  # mirrored
    assert 'id="m-customer.email" name="m-customer.email" value="j@example.com"' in page
    assert 'value="CRM-7"' in page and 'value="https://crm.example.com/7"' in page
    assert '<option value="es" selected>' in page
    assert "4711" not in page, "an access code never comes from an address"
    assert KEY.search(page).group(1) != "k" * 30, "the form's key is its own"
    assert "need a look" not in page
    assert count(app, Envelope) == 0 and count(app, Message) == 0


def test_a_deep_link_with_hostile_values_is_checked_like_typing(app, agent):
    portal, version_id = agent
    long_order = "9" * 600
    query = (
        "?m-customer.name=%3Cscript%3Ealert(1)%3C%2Fscript%3E%22%3E%3Cimg%20src%3Dx%3E"
        f"&m-order.number={long_order}&r-customer-email=not-an-email"
        "&ticket_url=javascript%3Aalert(document.cookie)&r-customer-auth=telepathy"
    )
    response = portal.client.get(f"/envelopes/new/{version_id}{query}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>alert(1)" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x&gt;" in page
    assert f'value="{"9" * 500}"' in page and "9" * 501 not in page
    notes = text_of(response)
    assert "Order number was longer than 500 characters." in notes
    assert "The email of the Customer is not valid" in notes
    assert "The ticket link must start with https://." in notes
    assert 'href="javascript' not in page
    assert count(app, Envelope) == 0
    # sending it as it stands is refused by the same rules
    data = refund_form(form_key(portal, version_id), ticket_url="javascript:alert(1)")
    refused = portal.post(f"/envelopes/new/{version_id}", data)
    assert refused.status_code == 422 and "The ticket link must start" in text_of(refused)
    too_long = portal.post(
        f"/envelopes/new/{version_id}",
        refund_form(form_key(portal, version_id), **{"m-order.number": long_order}),
    )
    assert too_long.status_code == 422 and "Order number is longer than 500" in text_of(too_long)
    assert count(app, Envelope) == 0


def test_a_deep_link_with_a_nul_byte_is_refused(app, agent):
    portal, version_id = agent
    response = portal.client.get(f"/envelopes/new/{version_id}?m-customer.name=Zo%00e")
    assert response.status_code == 400 and count(app, Envelope) == 0


@pytest.fixture
def choice_version(app, agent, make_staff) -> int:
    """The refund template in a new approved version whose refund method is a select field."""
    from portal.accounts.models import User
    from portal.documents.geometry import Rect

    author = make_staff("admin", team="Customer Care")
    reviewer = make_staff("compliance", team="Customer Care")
    with app.app_context():
        template = db.session.execute(
            select(Template).where(Template.name == "Refund authorization")
        ).scalar_one()
        by, checker = db.session.get(User, author.id), db.session.get(User, reviewer.id)
        draft = library.new_draft(template, by=by)
        field = library.add_field(draft, "select", 1, Rect(60, 60, 150, 22), "customer", by=by)
        library.update_field(
            field,
            {"merge_key": "refund.method", "options": ["card", "bank transfer"], "label": "Method"},
            by=by,
        )
        library.submit(draft, by=by)
        library.approve(draft, by=checker)
        return draft.id


def test_choice_fields_of_the_template_are_selects_and_other_values_are_refused(
    app, agent, choice_version
):
    portal, _ = agent
    page = portal.client.get(f"/envelopes/new/{choice_version}").get_data(as_text=True)
    select_html = re.search(r'<select id="m-refund\.method".*?</select>', page, re.S).group(0)
    assert '<option value="card"' in select_html and '<option value="bank transfer"' in select_html
    assert 'id="m-customer.name"' in page and "<input" in page  # the others stay text
    linked = portal.client.get(f"/envelopes/new/{choice_version}?m-refund.method=cheque")
    assert "must be one of: card, bank transfer" in text_of(linked)
    refused = portal.post(
        f"/envelopes/new/{choice_version}",
        refund_form(form_key(portal, choice_version), **{"m-refund.method": "cheque"}),
    )
    assert refused.status_code == 422
    assert 'Refund method ("card" or "bank transfer") must be one of' in text_of(refused)
    chosen = portal.post(
        f"/envelopes/new/{choice_version}",
        refund_form(form_key(portal, choice_version), **{"m-refund.method": "bank transfer"}),
    )
    assert chosen.status_code == 303


def test_a_deep_link_by_template_opens_its_current_version(app, agent, make_staff):
    portal, version_id = agent
    with app.app_context():
        template_id = demo_template().id
    query = "?m-customer.name=Jordan%20Rivera&ticket_id=CRM-7"
    first = portal.client.get(f"/envelopes/new/template/{template_id}{query}")
    assert first.status_code == 302
    assert first.headers["Location"] == f"/envelopes/new/{version_id}{query}"
    page = portal.client.get(first.headers["Location"]).get_data(as_text=True)
    assert 'value="Jordan Rivera"' in page and 'value="CRM-7"' in page
    outsider = Portal(app, app.test_client())
    outsider.sign_in(make_staff("agent", team="Billing"), offset_steps=1)
    assert outsider.client.get(f"/envelopes/new/template/{template_id}{query}").status_code == 404
    assert portal.client.get(f"/envelopes/new/template/999999{query}").status_code == 404


def test_the_template_deep_link_follows_a_newly_approved_version(app, agent, choice_version):
    portal, old_version_id = agent
    with app.app_context():
        template_id = demo_template().id
    moved = portal.client.get(f"/envelopes/new/template/{template_id}?ticket_id=CRM-8")
    assert moved.headers["Location"] == f"/envelopes/new/{choice_version}?ticket_id=CRM-8"
    assert portal.client.get(f"/envelopes/new/{old_version_id}").status_code == 404


def _sign_typed(app, link: str, public_id: str, name: str) -> None:
    client = app.test_client()
    client.get(re.sub(r"^https?://[^/]+", "", link))
    token = re.search(
        r'name="csrf-token" content="([^"]+)"',
        client.get(f"/sign/{public_id}").get_data(as_text=True),
    ).group(1)
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    done = client.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": name, "agree": "yes"},
    )
    assert done.status_code == 302


def test_personal_message_and_copies_reach_the_emails_and_the_first_page(app, agent):
    portal, version_id = agent
    note = "Hola Zoë,\nas agreed on the phone <b>today</b>."
    data = refund_form(
        form_key(portal, version_id),
        message=note,
        cc="boss@example.com; Team@Example.com",
        **{"r-customer-locale": "es"},
    )
    result = portal.post(f"/envelopes/new/{version_id}", data).headers["Location"]
    link = LINK.search(portal.client.get(result).get_data(as_text=True)).group(1)
    with app.app_context():
        envelope = db.session.execute(select(Envelope)).scalar_one()
        public_id = envelope.public_id
        assert envelope.settings["message"] == note
        copies = [r for r in envelope.recipients if r.kind == "cc"]
        assert [r.email for r in copies] == ["boss@example.com", "Team@example.com"]
        (invitation,) = db.session.execute(select(Message)).scalars()
        assert invitation.to_address == "zoe@example.com"
        assert "Mensaje de Alex" not in invitation.text_body  # (the sender is this agent)
        assert re.search(r"Mensaje de Agent \d+:\nHola Zoë,\nas agreed", invitation.text_body)
        assert "Mensaje de Agent" in invitation.html_body
        assert (
            "&lt;b&gt;today&lt;/b&gt;" in invitation.html_body
            and "<b>today" not in invitation.html_body
        )
        assert "Hola Zoë,<br>as agreed" in invitation.html_body
    signer = app.test_client()
    signer.get(re.sub(r"^https?://[^/]+", "", link))
    first_page = signer.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Mensaje de Agent" in first_page and "&lt;b&gt;today&lt;/b&gt;" in first_page
    assert "<b>today" not in first_page
    # the copies go out with the sealed document once the customer has signed
    _sign_typed(app, link, public_id, "Zoë Łukasiewicz")
    with app.app_context():
        completed = {
            m.to_address
            for m in db.session.execute(
                select(Message).where(Message.kind == "completed")
            ).scalars()
        }
    assert completed == {"zoe@example.com", "boss@example.com", "Team@example.com"}
    created = audit_events(app, "envelope.created")[0].data["options"]
    assert created["cc"] == 2 and created["personal_message"] is True


def test_the_personal_message_reads_in_english_too(app, agent):
    portal, version_id = agent
    portal.post(
        f"/envelopes/new/{version_id}",
        refund_form(form_key(portal, version_id), message="Call me back."),
    )
    with app.app_context():
        (invitation,) = db.session.execute(select(Message)).scalars()
    assert re.search(r"A message from Agent \d+:\nCall me back\.", invitation.text_body)
    assert "A message from Agent" in invitation.html_body


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("expiry_days", "31", "Expiry must be between 1 and 30 days for this template."),
        ("expiry_days", "0", "Expiry must be between 1 and 30 days"),
        ("expiry_days", "ten", "Expiry is a whole number."),
        ("reminder_every_hours", "24", "Reminders must be between 48 and 720 hours apart"),
        ("reminder_max", "4", "The number of reminders must be between 0 and 3"),
        ("cc", "boss@", "The copy address 'boss@' is not valid"),
        ("message", "x" * 1001, "The personal message is longer than 1000 characters."),
    ],
)
def test_send_options_outside_the_templates_ranges_are_refused(app, agent, field, value, message):
    portal, version_id = agent
    response = portal.post(
        f"/envelopes/new/{version_id}", refund_form(form_key(portal, version_id), **{field: value})
    )
    assert response.status_code == 422 and message in text_of(response)
    assert count(app, Envelope) == 0 and count(app, Message) == 0


def test_send_options_within_the_ranges_apply(app, agent):
    portal, version_id = agent
    page = portal.client.get(f"/envelopes/new/{version_id}").get_data(as_text=True)
    assert 'name="expiry_days"' in page and 'max="30"' in page
    data = refund_form(
        form_key(portal, version_id), expiry_days="7", reminder_every_hours="72", reminder_max="1"
    )
    before = clock.utcnow()
    assert portal.post(f"/envelopes/new/{version_id}", data).status_code == 303
    with app.app_context():
        envelope = db.session.execute(select(Envelope)).scalar_one()
        assert envelope.settings["expiry_days"] == 7
        assert envelope.settings["reminder_every_hours"] == 72
        assert envelope.settings["reminder_max"] == 1
        expires = clock.as_utc(envelope.expires_at)
        assert timedelta(days=7) <= expires - before < timedelta(days=7, minutes=1)
        public_id = envelope.public_id
    shown = text_of(portal.client.get(f"/envelopes/{public_id}"))
    assert "Expires after7 days" in re.sub(r"<[^>]+>|\s{2,}", "", shown).replace("\n", "")
    assert audit_events(app, "envelope.created")[0].data["options"]["expiry_days"] == 7


# ---------------------------------------------------------------- follow-up


@pytest.fixture
def sent_refund(app, agent):
    portal, version_id = agent
    result = portal.post(
        f"/envelopes/new/{version_id}", refund_form(form_key(portal, version_id))
    ).headers["Location"]
    link = LINK.search(portal.client.get(result).get_data(as_text=True)).group(1)
    with app.app_context():
        envelope = db.session.execute(select(Envelope)).scalar_one()
        return portal, envelope.public_id, envelope.recipients[0].id, link


def _emailed_ago(app, recipient_id: int, ago: timedelta) -> None:
    with app.app_context():
        recipient = db.session.get(Recipient, recipient_id)
        recipient.sent_at = clock.utcnow() - ago
        db.session.commit()


def test_remind_now_emails_a_reminder_at_most_every_30_minutes(app, sent_refund):
    portal, public_id, recipient_id, link = sent_refund
    url = f"/envelopes/{public_id}/recipients/{recipient_id}/remind"
    page = text_of(portal.client.get(f"/envelopes/{public_id}"))
    assert "Remind now" in page
    too_soon = portal.post(url, follow_redirects=True)
    assert "was emailed less than 30 minutes ago" in text_of(too_soon)
    assert audit_events(app, "envelope.reminder_sent") == []
    _emailed_ago(app, recipient_id, timedelta(minutes=31))
    reminded = portal.post(url, follow_redirects=True)
    assert "Reminder sent to Zoë Łukasiewicz" in text_of(reminded)
    (event,) = audit_events(app, "envelope.reminder_sent")
    assert event.actor_type == "user" and event.data["recipient"] == recipient_id
    with app.app_context():
        reminder = db.session.execute(
            select(Message).where(Message.kind == "reminder")
        ).scalar_one()
        assert reminder.subject.startswith("Reminder: Please sign")
        assert db.session.get(Recipient, recipient_id).reminders_sent == 0  # not the template's
    old = app.test_client().get(re.sub(r"^https?://[^/]+", "", link), follow_redirects=True)
    assert old.status_code == 410 and "This link has been replaced" in text_of(old)
    again = portal.post(url, follow_redirects=True)
    assert "you can remind them again in 30 minutes" in text_of(again)
    assert len(audit_events(app, "envelope.reminder_sent")) == 1


def test_remind_now_respects_the_recipients_state(app, sent_refund):
    portal, public_id, recipient_id, link = sent_refund
    _emailed_ago(app, recipient_id, timedelta(hours=1))
    with app.app_context():
        db.session.get(Recipient, recipient_id).locked_at = clock.utcnow()
        db.session.commit()
    locked = portal.post(
        f"/envelopes/{public_id}/recipients/{recipient_id}/remind", follow_redirects=True
    )
    assert "locked after too many wrong codes" in text_of(locked)
    assert "Remind now" not in text_of(locked)
    with app.app_context():
        db.session.get(Recipient, recipient_id).locked_at = None
        db.session.commit()
    _sign_typed(app, link, public_id, "Zoë Łukasiewicz")
    finished = portal.post(
        f"/envelopes/{public_id}/recipients/{recipient_id}/remind", follow_redirects=True
    )
    assert "completed and can no longer change" in text_of(finished)
    assert audit_events(app, "envelope.reminder_sent") == []


def test_void_asks_for_confirmation_and_a_reason(app, sent_refund):
    portal, public_id, _recipient_id, _link = sent_refund
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    assert f'action="/envelopes/{public_id}/void"' not in page, "no one-click void"
    assert f'href="/envelopes/{public_id}/void"' in page
    confirm = portal.client.get(f"/envelopes/{public_id}/void")
    text = text_of(confirm)
    assert confirm.status_code == 200 and "Void Refund authorization?" in text
    assert "cannot be undone" in text and "Zoë Łukasiewicz can no longer act" in text
    blank = portal.post(f"/envelopes/{public_id}/void", {"reason": "  "})
    assert blank.status_code == 422 and "Give the reason" in text_of(blank)
    assert audit_events(app, "envelope.voided") == []
    done = portal.post(f"/envelopes/{public_id}/void", {"reason": "Customer cancelled the order"})
    assert done.status_code == 302
    (voided,) = audit_events(app, "envelope.voided")
    assert voided.data == {"reason": "Customer cancelled the order"}
    after = text_of(portal.client.get(f"/envelopes/{public_id}/void"))
    assert "voided and can no longer change" in after and "Void the envelope" not in after


def test_resend_redirects_to_the_new_link_shown_once(app, sent_refund):
    portal, public_id, recipient_id, first_link = sent_refund
    response = portal.post(f"/envelopes/{public_id}/recipients/{recipient_id}/resend")
    assert response.status_code == 303
    page = text_of(portal.client.get(response.headers["Location"]))
    assert "New link sent" in page
    new_link = LINK.search(page).group(1)
    assert new_link != first_link
    assert "/s/" not in text_of(portal.client.get(response.headers["Location"]))


# ---------------------------------------------------------------- the envelope page


def test_the_timeline_shows_who_did_what_when_and_from_where(app, sent_refund):
    portal, public_id, _recipient_id, link = sent_refund
    signer = app.test_client()
    signer.get(re.sub(r"^https?://[^/]+", "", link), environ_base={"REMOTE_ADDR": "203.0.113.9"})
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    rows = re.findall(r'<tr data-event="([^"]+)">(.*?)</tr>', page, re.S)
    events = dict(rows)
    assert list(events)[:3] == ["envelope.created", "envelope.link_sent", "envelope.sent"]
    assert "Envelope created" in events["envelope.created"] and "UTC" in events["envelope.created"]
    assert "127.0.0.1" in events["envelope.created"]
    assert re.search(r"<br>Agent \d+ · ", events["envelope.created"]), "the sender by name"
    assert "Link opened" in events["recipient.opened"]
    assert "203.0.113.9" in events["recipient.opened"]
    assert "Zoë Łukasiewicz (Customer)" in html.unescape(events["recipient.opened"])


def test_the_filled_in_document_and_values_so_far_and_the_approvers_comment(app, agent):
    portal, _ = agent
    with app.app_context():
        version_id = library.approved_version(demo_template("Service-change addendum")).id
    values = {f"m-{k.key}": k.sample for k in _keys(app, version_id)}
    data = {
        **values,
        "send_key": form_key(portal, version_id),
        "r-customer-name": "Jordan Rivera",
        "r-customer-email": "jordan@example.com",
        "r-account_manager-name": "Sam Manager",
        "r-account_manager-email": "sam@example.com",
    }
    result = portal.post(f"/envelopes/new/{version_id}", data).headers["Location"]
    link = LINK.search(portal.client.get(result).get_data(as_text=True)).group(1)
    public_id = result.split("/")[-2]
    empty = text_of(portal.client.get(f"/envelopes/{public_id}"))
    assert "Nobody has filled anything in yet." in empty
    _sign_typed(app, link, public_id, "Jordan Q. Rivera")
    page = text_of(portal.client.get(f"/envelopes/{public_id}"))
    assert "Typed: Jordan Q. Rivera" in page and "Customer signature" in page
    pdf = portal.client.get(f"/envelopes/{public_id}/filled.pdf")
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(BytesIO(pdf.data)).pages)
    assert "Jordan Q. Rivera" in text and "AC-558120" in text
    assert len(audit_events(app, "envelope.filled_document_viewed")) == 1
    with app.app_context():
        message = db.session.execute(
            select(Message).where(Message.to_address == "sam@example.com")
        ).scalar_one()
        manager_link = re.search(r"http://127.0.0.1:5000(/s/\S+)", message.text_body).group(1)
    approver = app.test_client()
    approver.get(manager_link)
    token = re.search(
        r'name="csrf-token" content="([^"]+)"',
        approver.get(f"/sign/{public_id}").get_data(as_text=True),
    ).group(1)
    approver.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    approver.post(
        f"/sign/{public_id}/review",
        data={"csrf_token": token, "decision": "approve", "comment": "Plan <b>change</b> OK"},
    )
    page = portal.client.get(f"/envelopes/{public_id}").get_data(as_text=True)
    comments = re.search(r'id="comments-heading".*?</section>', page, re.S).group(0)
    assert "Sam Manager" in comments and "approved" in comments
    assert "Plan &lt;b&gt;change&lt;/b&gt; OK" in comments


def _keys(app, version_id):
    from portal.library.models import TemplateVersion

    with app.app_context():
        return library.merge_keys(db.session.get(TemplateVersion, version_id))
