"""The signing flow's details without a browser: the disclosure's summary (and its full text
and version on acceptance), one primary button on the code page, a 422 keeps the adoption."""

from __future__ import annotations

import re

import pytest

from portal.envelopes import disclosure
from portal.signing import disclosure_summary
from tests.conftest import audit_events
from tests.test_approver import _consented, _primary_buttons
from tests.test_signing import _csrf, _path, sent  # noqa: F401  (fixture)


def test_the_summary_was_written_for_the_current_disclosure():
    # A new disclosure version fails here until its summary has been read against it.
    assert disclosure_summary.VERSION == disclosure.VERSION
    for language in disclosure.TEXT:
        assert len(disclosure_summary.SUMMARY[language]) == 4


@pytest.mark.parametrize(
    ("locale", "summary", "full", "heading"),
    [
        ("en", "for a paper copy, at no charge", "Your right to paper", "Read the full disclosure"),
        ("es", "una copia en papel, sin coste", "Derecho a una copia en papel",
         "Leer el texto completo"),
    ],
)  # fmt: skip
def test_the_disclosure_opens_with_a_summary_and_acceptance_records_the_full_version(
    app,
    sent,  # noqa: F811
    locale,
    summary,
    full,
    heading,
):
    _envelope_id, public_id, link = sent(locale=locale)
    client = app.test_client()
    client.get(_path(link))
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert summary in page and "Alex Agent" in page
    # the whole text is there, one tap away
    details = re.search(r'<details class="disclosure-full">(.*?)</details>', page, re.S).group(1)
    assert heading in details and full in details
    assert page.index("summary-points") < page.index("disclosure-full")
    assert len(_primary_buttons(page)) == 1
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    (consented,) = audit_events(app, "recipient.consented")
    assert consented.data["disclosure"] == disclosure.VERSION


def test_the_code_page_has_one_primary_button_before_and_after_sending(app, sent):  # noqa: F811
    _envelope_id, public_id, link = sent(auth_method="email_otp")
    client, token = _consented(app, public_id, _path(link))
    before = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Confirm it is you" in before
    assert _primary_buttons(before) == ["Email me a code"]
    client.post(f"/sign/{public_id}/code/send", data={"csrf_token": token})
    after = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert _primary_buttons(after) == ["Continue"]


def test_a_page_sent_back_keeps_the_adopted_signature_but_a_first_view_has_none(
    app,
    sent,  # noqa: F811
):
    _envelope_id, public_id, link = sent()
    client, token = _consented(app, public_id, _path(link))
    first = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert 'class="card stack adopt" aria-labelledby="adopt-heading" data-adopted="false"' in first
    assert _primary_buttons(first) == ["Adopt and sign"]
    # sent without the agreement: the name was adopted by sending it
    back = client.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Zoë Łukasiewicz"},
    )
    text = back.get_data(as_text=True)
    assert back.status_code == 422 and 'data-adopted="true"' in text
    # too short a name is no signature: not adopted
    short = client.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Z", "agree": "yes"},
    )
    assert short.status_code == 422 and 'data-adopted="false"' in short.get_data(as_text=True)
    assert audit_events(app, "recipient.signed") == []
