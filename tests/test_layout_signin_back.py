"""Going Back to a sign-in step after signing in lands where the user belongs, without an
error: the console, or their own password when they must change it."""

from __future__ import annotations

import re

import pyotp
import pytest

from portal.accounts.models import User
from portal.extensions import db
from tests.conftest import SECRET_TEXT, audit_events

TOO_LONG = "Sign in again: that step took too long"


def _enrol(portal, staff) -> None:
    portal.password_step(staff.email, staff.password)
    page = portal.client.get("/auth/enrol").get_data(as_text=True)
    secret = SECRET_TEXT.search(page).group(1).replace(" ", "")
    done = portal.post("/auth/enrol", {"code": pyotp.TOTP(secret).now()})
    assert "Save your recovery codes" in done.get_data(as_text=True)


@pytest.mark.parametrize("step", ["/auth/enrol", "/auth/code", "/auth/login"])
def test_back_to_a_sign_in_step_after_enrolling_lands_on_the_console(portal, make_staff, step):
    staff = make_staff("agent", enrolled=False)
    _enrol(portal, staff)
    before = len(audit_events(portal.app))

    back = portal.client.get(step)
    assert back.status_code == 302 and back.headers["Location"].endswith("/console")
    page = portal.client.get("/console").get_data(as_text=True)
    assert TOO_LONG not in page
    assert "Agent 1" in page  # still signed in
    assert len(audit_events(portal.app)) == before  # nothing happened: no failure recorded


def test_back_to_the_code_step_after_signing_in_lands_on_the_console(signed_in):
    portal, _ = signed_in("agent")
    back = portal.client.get("/auth/code", follow_redirects=True)
    text = back.get_data(as_text=True)
    assert back.request.path == "/console" and TOO_LONG not in text


def test_back_to_enrolment_with_a_one_time_password_goes_to_choosing_a_password(portal, make_staff):
    staff = make_staff("agent", enrolled=False)
    with portal.app.app_context():
        db.session.get(User, staff.id).must_change_password = True
        db.session.commit()
    _enrol(portal, staff)
    back = portal.client.get("/auth/enrol", follow_redirects=True)
    text = back.get_data(as_text=True)
    assert back.request.path == "/account/password"
    assert TOO_LONG not in text and "Choose your own password" in text


def test_a_stale_step_without_a_session_still_says_sign_in_again(portal):
    page = portal.client.get("/auth/enrol", follow_redirects=True)
    assert page.request.path == "/auth/login"
    assert re.search(TOO_LONG, page.get_data(as_text=True))
