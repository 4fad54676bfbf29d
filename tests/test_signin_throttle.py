"""Failed sign-ins lock an address out of an account, not the account (OWASP ASVS 2.2.1)."""

from __future__ import annotations

import re

from tests.conftest import Portal, audit_events, totp_code

ATTACKER = "203.0.113.66"
USER_IP = "198.51.100.7"
ERROR = re.compile(r'<p class="flash flash-error" role="alert">([^<]*)</p>')


def _from(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def _login(portal: Portal, email: str, password: str, address: str) -> tuple[int, str]:
    response = portal.post("/auth/login", {"email": email, "password": password}, **_from(address))
    match = ERROR.search(response.get_data(as_text=True))
    return response.status_code, match.group(1) if match else ""


def _sign_in(portal: Portal, staff, address: str, offset_steps: int = 0) -> int:
    first = portal.post(
        "/auth/login", {"email": staff.email, "password": staff.password}, **_from(address)
    )
    assert first.status_code == 302, first.get_data(as_text=True)
    code = totp_code(staff.secret, offset_steps)
    done = portal.post("/auth/code", {"code": code}, **_from(address))
    return done.status_code


def _wrong_code(secret: str) -> str:
    return "123456" if totp_code(secret) != "123456" else "654321"


def test_an_attacker_guessing_from_one_address_cannot_lock_out_the_user_elsewhere(app, make_staff):
    staff = make_staff("agent")
    attacker = Portal(app, app.test_client())
    for _ in range(8):
        _login(attacker, staff.email, "guess guess guess", ATTACKER)
    # the attacker's address is locked out, even with the right password
    status, message = _login(attacker, staff.email, staff.password, ATTACKER)
    assert status == 200 and "do not match an active account" in message

    user = Portal(app, app.test_client())
    assert _sign_in(user, staff, USER_IP) == 302
    assert user.client.get("/console").status_code == 200

    locks = audit_events(app, "auth.account.locked")
    assert [e.data["source"] for e in locks] == [ATTACKER]
    assert locks[0].ip == ATTACKER


def test_unknown_inactive_locked_and_wrong_password_get_the_same_answer(app, make_staff, signed_in):
    admin, _ = signed_in("admin")
    active = make_staff("agent")
    locked = make_staff("agent")
    inactive = make_staff("agent")
    admin.post(f"/admin/users/{inactive.id}/deactivate")
    guesser = Portal(app, app.test_client())
    for _ in range(5):
        _login(guesser, locked.email, "guess guess guess", ATTACKER)

    answers = {
        "wrong password": _login(guesser, active.email, "not the password", ATTACKER),
        "unknown": _login(guesser, "nobody@example.test", "whatever it is", ATTACKER),
        "inactive": _login(guesser, inactive.email, inactive.password, ATTACKER),
        "locked, right password": _login(guesser, locked.email, locked.password, ATTACKER),
    }
    assert len(set(answers.values())) == 1, answers
    status, message = answers["unknown"]
    assert status == 200
    assert message.startswith("That email and password do not match an active account.")
    reasons = [e.data["reason"] for e in audit_events(app, "auth.login.failed")][-4:]
    assert reasons == ["wrong_password", "unknown_email", "inactive", "locked"]


def test_wrong_totp_codes_lock_only_the_address_they_come_from(app, make_staff):
    staff = make_staff("agent")
    attacker = Portal(app, app.test_client())  # knows the password, not the code
    attacker.post(
        "/auth/login", {"email": staff.email, "password": staff.password}, **_from(ATTACKER)
    )
    pages = [
        attacker.post("/auth/code", {"code": _wrong_code(staff.secret)}, **_from(ATTACKER))
        for _ in range(5)
    ]
    assert "That code is not right" in pages[0].get_data(as_text=True)
    assert "sign-in from your network is paused" in pages[-1].get_data(as_text=True)
    # the step is over for this browser, and the address is refused from the first step on
    again = attacker.client.get("/auth/code")
    assert again.status_code == 302 and "/auth/login" in again.headers["Location"]
    assert _login(attacker, staff.email, staff.password, ATTACKER)[0] == 200

    failures = audit_events(app, "auth.mfa.failed")
    assert [e.data["attempt"] for e in failures] == [1, 2, 3, 4, 5]
    assert {e.data["source"] for e in failures} == {ATTACKER}
    assert audit_events(app, "auth.account.locked")[0].data["source"] == ATTACKER

    assert _sign_in(Portal(app, app.test_client()), staff, USER_IP) == 302


def test_an_ipv6_network_counts_as_one_source(app, make_staff):
    staff = make_staff("agent")
    attacker = Portal(app, app.test_client())
    for host in range(1, 6):  # five addresses of one /64
        _login(attacker, staff.email, "guess guess guess", f"2001:db8:5:6::{host}")
    locks = audit_events(app, "auth.account.locked")
    assert [e.data["source"] for e in locks] == ["2001:db8:5:6::/64"]
    assert _login(attacker, staff.email, staff.password, "2001:db8:5:6::99")[0] == 200
    assert _sign_in(Portal(app, app.test_client()), staff, "2001:db8:5:7::1") == 302


def test_many_addresses_hit_the_account_ceiling_but_a_known_address_still_gets_in(make_app):
    app = make_app(LOCKOUT_THRESHOLD=3, LOCKOUT_ACCOUNT_HOURLY=6)
    from tests.conftest import Staff

    with app.app_context():
        import pyotp

        from portal import storage
        from portal.accounts import admin
        from portal.clock import utcnow
        from portal.extensions import db

        user, _ = admin.create_user(
            "ceiling@example.test", "Ceiling", "agent", None, by="test", password="right horse pw"
        )
        secret = pyotp.random_base32(32)
        user.totp_blob_id = storage.put(secret.encode(), kind="totp_secret")
        user.totp_confirmed_at = utcnow()
        db.session.commit()
        staff = Staff(user.id, user.email, "right horse pw", secret, "agent")

    home = Portal(app, app.test_client())
    assert _sign_in(home, staff, USER_IP) == 302  # the user's usual address
    home.post("/auth/logout", **_from(USER_IP))

    attacker = Portal(app, app.test_client())
    for address in ("203.0.113.1", "203.0.113.2"):
        for _ in range(3):
            _login(attacker, staff.email, "guess guess guess", address)
    ceiling = [e for e in audit_events(app, "auth.account.locked") if "scope" in e.data]
    assert len(ceiling) == 1 and ceiling[0].data["scope"] == "new sources"
    assert ceiling[0].data["failed_attempts"] == 6

    # a new address is refused even with the right password; the usual one is not
    assert _login(Portal(app, app.test_client()), staff.email, staff.password, "192.0.2.9")[
        1
    ].startswith("That email and password do not match")
    assert _sign_in(Portal(app, app.test_client()), staff, USER_IP, offset_steps=1) == 302


def test_admin_sees_each_locked_address_and_unlock_ends_every_lock(app, make_staff, signed_in):
    admin, _ = signed_in("admin")
    agent = make_staff("agent")
    attacker = Portal(app, app.test_client())
    for _ in range(5):
        _login(attacker, agent.email, "guess guess guess", ATTACKER)

    listing = admin.client.get("/admin/users").get_data(as_text=True)
    row = listing[listing.index(agent.email) :].split("</tr>")[0]
    assert "Locked" in row
    panel = admin.client.get(f"/admin/users/{agent.id}").get_data(as_text=True)
    assert f'Sign-in from <span class="mono">{ATTACKER}</span>' in panel
    assert "Locked until" in panel

    admin.post(f"/admin/users/{agent.id}/unlock")
    assert audit_events(app, "user.unlocked")
    panel = admin.client.get(f"/admin/users/{agent.id}").get_data(as_text=True)
    assert "Sign-in from <span" not in panel and "Unlock" not in panel
    assert _sign_in(attacker, agent, ATTACKER) == 302


def test_a_wrong_password_when_re_entering_it_counts_for_the_address_too(signed_in):
    portal, staff = signed_in("agent")
    for _ in range(4):
        page = portal.post("/account/recovery-codes", {"password": "nope nope nope"})
        assert "That password is not right." in page.get_data(as_text=True)
    last = portal.post("/account/recovery-codes", {"password": "nope nope nope"})
    assert "sign-in from your network is paused" in last.get_data(as_text=True)
    refused = portal.post("/account/recovery-codes", {"password": staff.password})
    assert refused.status_code == 422
    assert audit_events(portal.app, "auth.recovery_codes.regenerated") == []
    assert audit_events(portal.app, "auth.account.locked")[0].data["source"] == "127.0.0.1"


def test_sources_unused_for_thirty_days_are_forgotten(app, make_staff, monkeypatch, runner_for):
    from datetime import timedelta

    from sqlalchemy import func, select

    from portal import clock
    from portal.accounts.models import SigninThrottle
    from portal.extensions import db

    staff = make_staff("agent")
    portal = Portal(app, app.test_client())
    _login(portal, staff.email, "guess guess guess", ATTACKER)
    assert _sign_in(portal, staff, USER_IP) == 302

    def count() -> int:
        with app.app_context():
            return int(db.session.scalar(select(func.count(SigninThrottle.id))) or 0)

    assert count() == 2
    with app.app_context():
        result = runner_for(app).invoke(args=["portal", "tick"])
    assert "0 sign-in sources forgotten" in result.output
    real_now = clock.utcnow
    monkeypatch.setattr(clock, "utcnow", lambda: real_now() + timedelta(days=31))
    with app.app_context():
        result = runner_for(app).invoke(args=["portal", "tick"])
    assert "2 sign-in sources forgotten" in result.output
    assert count() == 0
