"""Search boxes match what was typed: ``%`` and ``_`` are characters, not wildcards."""

from __future__ import annotations

import pytest

from tests.test_documents import good_pdf

NAMES = ("Refund 100% back", "Refund_v2", "Plain refund")


def _rows(portal, url: str) -> str:
    return portal.client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)


def _found(rows: str) -> set[str]:
    return {name for name in NAMES if name in rows}


@pytest.mark.parametrize(("query", "expected"), [("%", {NAMES[0]}), ("_", {NAMES[1]})])
def test_library_search_takes_percent_and_underscore_literally(signed_in, query, expected):
    from portal.accounts.models import User
    from portal.extensions import db
    from portal.library import operations as library

    portal, staff = signed_in("admin")
    with portal.app.app_context():
        author = db.session.get(User, staff.id)
        for name in NAMES:
            library.create_from_pdf(name, "other", None, good_pdf(), "t.pdf", by=author)
    assert _found(_rows(portal, "/library/?q=refund")) == set(NAMES)
    assert _found(_rows(portal, f"/library/?q={query.replace('%', '%25')}")) == expected


@pytest.mark.parametrize(("query", "expected"), [("%", {NAMES[0]}), ("_", {NAMES[1]})])
def test_console_search_takes_percent_and_underscore_literally(
    app, runner_for, signed_in, query, expected
):
    from tests.test_input_hygiene import send_refund

    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
        for number, name in enumerate(NAMES):
            send_refund(name, f"c{number}@example.com")
    portal, _staff = signed_in("admin")
    assert _found(_rows(portal, "/console?q=refund")) == set(NAMES)
    assert _found(_rows(portal, f"/console?q={query.replace('%', '%25')}")) == expected


@pytest.mark.parametrize(("query", "expected"), [("%", {NAMES[0]}), ("_", {NAMES[1]})])
def test_user_search_takes_percent_and_underscore_literally(signed_in, query, expected):
    from portal.accounts import admin

    portal, _staff = signed_in("admin")
    with portal.app.app_context():
        for number, name in enumerate(NAMES):
            admin.create_user(f"user{number}@example.test", name, "agent", None, by="test")
    assert _found(_rows(portal, "/admin/users?q=refund")) == set(NAMES)
    assert _found(_rows(portal, f"/admin/users?q={query.replace('%', '%25')}")) == expected
