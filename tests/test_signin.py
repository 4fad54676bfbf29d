"""Staff sign-in: password, mandatory TOTP, enrolment, replay, lockout, recovery codes."""

from __future__ import annotations

import re

import pyotp

from tests.conftest import SECRET_TEXT, audit_events, totp_code


def test_first_sign_in_enrols_with_qr_and_key_then_shows_ten_recovery_codes(portal, make_staff):
    staff = make_staff("agent", enrolled=False)
    first = portal.password_step(staff.email, staff.password)
    assert first.status_code == 302 and first.headers["Location"].endswith("/auth/enrol")

    page = portal.client.get("/auth/enrol").get_data(as_text=True)
    assert "<svg" in page, "the QR code is an inline SVG"
    secret = SECRET_TEXT.search(page).group(1).replace(" ", "")
    assert len(secret) == 32  # 160 bits in base32

    done = portal.post("/auth/enrol", {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    codes = re.findall(
        r"<li>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</li>", done.get_data(as_text=True)
    )
    assert len(codes) == 10 and len(set(codes)) == 10
    assert portal.client.get("/console").status_code == 200

    names = [e.event for e in audit_events(portal.app)]
    assert "auth.mfa.enrolment_started" in names
    assert "auth.mfa.enrolled" in names
    assert names[-1] == "auth.login.succeeded"


def test_enrolment_refuses_a_wrong_code_and_keeps_the_same_key(portal, make_staff):
    staff = make_staff("agent", enrolled=False)
    portal.password_step(staff.email, staff.password)
    first_key = SECRET_TEXT.search(portal.client.get("/auth/enrol").get_data(as_text=True)).group(1)
    response = portal.post("/auth/enrol", {"code": "000000"})
    page = response.get_data(as_text=True)
    assert "That code is not right" in page
    assert SECRET_TEXT.search(page).group(1) == first_key
    assert portal.client.get("/console").status_code == 302


def test_password_then_totp_signs_in_and_lands_on_console(portal, make_staff):
    staff = make_staff("agent")
    response = portal.sign_in(staff)
    assert response.status_code == 302 and response.headers["Location"].endswith("/console")
    page = portal.client.get("/console").get_data(as_text=True)
    assert "Console" in page and "Agent 1" in page
    success = audit_events(portal.app, "auth.login.succeeded")
    assert len(success) == 1 and success[0].data == {"method": "totp"}
    assert success[0].ip == "127.0.0.1"


def test_password_alone_never_opens_the_console(portal, make_staff):
    staff = make_staff("agent")
    portal.password_step(staff.email, staff.password)
    response = portal.client.get("/console")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_wrong_password_gets_a_generic_message_and_is_audited(portal, make_staff):
    staff = make_staff("agent")
    response = portal.password_step(staff.email, "not the password")
    assert "That email and password do not match an active account." in response.get_data(
        as_text=True
    )
    unknown = portal.password_step("nobody@example.test", "whatever it is")
    assert "That email and password do not match an active account." in unknown.get_data(
        as_text=True
    )
    failures = audit_events(portal.app, "auth.login.failed")
    assert [f.data["reason"] for f in failures] == ["wrong_password", "unknown_email"]
    assert "not the password" not in str([f.data for f in failures])


def test_codes_from_the_previous_and_next_step_are_accepted(portal, make_staff):
    staff = make_staff("agent")
    assert portal.sign_in(staff, offset_steps=-1).status_code == 302
    other = make_staff("agent")
    portal.client.post("/auth/logout", data={"csrf_token": portal.csrf()})
    assert portal.sign_in(other, offset_steps=1).status_code == 302


def test_code_two_steps_away_is_rejected(portal, make_staff):
    staff = make_staff("agent")
    portal.password_step(staff.email, staff.password)
    response = portal.post("/auth/code", {"code": totp_code(staff.secret, 3)})
    assert "That code is not right" in response.get_data(as_text=True)


def test_replayed_code_is_rejected(portal, make_staff):
    staff = make_staff("agent")
    code = totp_code(staff.secret)
    portal.password_step(staff.email, staff.password)
    assert portal.post("/auth/code", {"code": code}).status_code == 302
    portal.post("/auth/logout")
    portal.password_step(staff.email, staff.password)
    again = portal.post("/auth/code", {"code": code})
    assert "already used" in again.get_data(as_text=True)
    earlier = portal.post("/auth/code", {"code": totp_code(staff.secret, -1)})
    assert "already used" in earlier.get_data(as_text=True)
    reasons = [e.data["reason"] for e in audit_events(portal.app, "auth.mfa.failed")]
    assert reasons == ["replayed_code", "replayed_code"]


def test_five_failures_lock_this_address_out_of_the_account_for_fifteen_minutes(
    portal, make_staff, monkeypatch
):
    from datetime import timedelta

    from portal import clock

    staff = make_staff("agent")
    for _ in range(4):
        page = portal.password_step(staff.email, "wrong password!").get_data(as_text=True)
        assert "do not match" in page
    # the fifth failure is a wrong TOTP code: both kinds count together
    portal.password_step(staff.email, staff.password)
    locked = portal.post(
        "/auth/code", {"code": "123456" if totp_code(staff.secret) != "123456" else "654321"}
    )
    assert "sign-in from your network is paused for up to 15 minutes" in locked.get_data(
        as_text=True
    )

    # even the right password is refused from here, with the answer a wrong one gets
    refused = portal.password_step(staff.email, staff.password)
    assert refused.status_code == 200
    assert "do not match an active account" in refused.get_data(as_text=True)
    assert "pauses for 15 minutes" in refused.get_data(as_text=True)
    assert audit_events(portal.app, "auth.login.failed")[-1].data["reason"] == "locked"

    lock_events = audit_events(portal.app, "auth.account.locked")
    assert len(lock_events) == 1
    assert lock_events[0].data == {"failed_attempts": 5, "minutes": 15, "source": "127.0.0.1"}

    real_now = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real_now() + timedelta(minutes=16))
    assert portal.sign_in(staff, offset_steps=32).status_code == 302


def test_recovery_code_signs_in_once(portal, make_staff):
    staff = make_staff("agent", enrolled=False)
    portal.password_step(staff.email, staff.password)
    secret = (
        SECRET_TEXT.search(portal.client.get("/auth/enrol").get_data(as_text=True))
        .group(1)
        .replace(" ", "")
    )
    done = portal.post("/auth/enrol", {"code": pyotp.TOTP(secret).now()}).get_data(as_text=True)
    code = re.findall(r"<li>([a-z0-9-]{14})</li>", done)[0]
    portal.post("/auth/logout")

    portal.password_step(staff.email, staff.password)
    assert portal.post("/auth/code", {"code": code.upper().replace("-", " ")}).status_code == 302
    used = audit_events(portal.app, "auth.recovery_code.used")
    assert used[-1].data == {"remaining": 9}
    portal.post("/auth/logout")

    portal.password_step(staff.email, staff.password)
    again = portal.post("/auth/code", {"code": code})
    assert "That code is not right" in again.get_data(as_text=True)


def test_regenerating_recovery_codes_needs_the_password(signed_in):
    portal, staff = signed_in("agent")
    wrong = portal.post("/account/recovery-codes", {"password": "nope nope nope"})
    assert wrong.status_code == 422 and "That password is not right." in wrong.get_data(
        as_text=True
    )
    right = portal.post("/account/recovery-codes", {"password": staff.password})
    codes = re.findall(r"<li>([a-z0-9-]{14})</li>", right.get_data(as_text=True))
    assert len(codes) == 10
    assert audit_events(portal.app, "auth.recovery_codes.regenerated")
    assert audit_events(portal.app, "auth.reauth.failed")


def test_one_time_password_must_be_replaced_before_anything_else(portal, app):
    from portal.accounts import admin

    with app.app_context():
        _, one_time = admin.create_user("new@example.test", "New Person", "agent", None, by="test")
    portal.password_step("new@example.test", one_time)
    secret = (
        SECRET_TEXT.search(portal.client.get("/auth/enrol").get_data(as_text=True))
        .group(1)
        .replace(" ", "")
    )
    done = portal.post("/auth/enrol", {"code": pyotp.TOTP(secret).now()})
    assert "/account/password" in done.get_data(as_text=True)
    assert portal.client.get("/console").headers["Location"].endswith("/account/password")

    weak = portal.post(
        "/account/password", {"current": one_time, "new": "short", "confirm": "short"}
    )
    assert "at least 12" in weak.get_data(as_text=True).lower()
    ok = portal.post(
        "/account/password",
        {"current": one_time, "new": "a much better password", "confirm": "a much better password"},
    )
    assert ok.status_code == 302
    assert portal.client.get("/console").status_code == 200
    assert audit_events(portal.app, "auth.password.changed")
