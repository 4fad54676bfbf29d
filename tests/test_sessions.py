"""Staff sessions: renewed at sign-in, ended on the server, idle and absolute timeouts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal import clock
from tests.conftest import audit_events


@pytest.fixture
def travel(monkeypatch):
    """Move the portal's clock forward by a timedelta."""
    real = clock.utcnow
    offset = timedelta()

    def go(delta: timedelta) -> None:
        nonlocal offset
        offset += delta
        monkeypatch.setattr(clock, "utcnow", lambda: real() + offset)

    return go


def _cookie(portal) -> str | None:
    cookie = portal.client.get_cookie(portal.app.config["SESSION_COOKIE_NAME"])
    return cookie.value if cookie else None


def test_sign_in_issues_a_new_session_cookie(portal, make_staff):
    staff = make_staff("agent")
    portal.client.get("/auth/login")
    before = _cookie(portal)
    portal.sign_in(staff)
    after = _cookie(portal)
    assert before and after and before != after
    assert portal.client.get("/console").status_code == 200


def test_logout_ends_the_session_on_the_server(portal, make_staff):
    staff = make_staff("agent")
    portal.sign_in(staff)
    stolen = _cookie(portal)
    response = portal.post("/auth/logout")
    assert response.status_code == 302
    assert portal.client.get("/console").status_code == 302
    # replaying the old cookie does not bring the session back
    portal.client.set_cookie(portal.app.config["SESSION_COOKIE_NAME"], stolen)
    assert portal.client.get("/console").status_code == 302
    assert audit_events(portal.app, "auth.logout")


def test_idle_timeout_after_thirty_minutes(portal, make_staff, travel):
    staff = make_staff("agent")
    portal.sign_in(staff)
    travel(timedelta(minutes=29))
    assert portal.client.get("/console").status_code == 200  # activity resets the idle clock
    travel(timedelta(minutes=29))
    assert portal.client.get("/console").status_code == 200
    travel(timedelta(minutes=31))
    response = portal.client.get("/console")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    page = portal.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "signed out after 30 minutes without activity" in page
    (event,) = audit_events(portal.app, "auth.session.timed_out")
    assert event.data == {"timeout": "idle"}


def test_absolute_timeout_after_twelve_hours_even_when_active(portal, make_staff, travel):
    staff = make_staff("agent")
    portal.sign_in(staff)
    for _ in range(30):
        travel(timedelta(minutes=28))
        if portal.client.get("/console").status_code != 200:
            break
    else:
        pytest.fail("the session outlived 14 hours")
    page = portal.client.get("/auth/login").get_data(as_text=True)
    assert "12-hour limit" in page
    (event,) = audit_events(portal.app, "auth.session.timed_out")
    assert event.data == {"timeout": "absolute"}


def test_tick_ends_idle_sessions_nobody_returns_to(portal, make_staff, travel, runner_for):
    staff = make_staff("agent")
    portal.sign_in(staff)
    travel(timedelta(minutes=45))
    result = runner_for(portal.app).invoke(args=["portal", "tick"])
    assert "1 sessions ended" in result.output
    (event,) = audit_events(portal.app, "auth.session.timed_out")
    assert event.actor_type == "system"
    assert portal.client.get("/console").status_code == 302


def test_admin_can_end_another_users_sessions(app, make_staff):
    from tests.conftest import Portal

    admin_staff = make_staff("admin")
    agent = make_staff("agent")
    admin_portal = Portal(app, app.test_client())
    agent_portal = Portal(app, app.test_client())
    admin_portal.sign_in(admin_staff)
    agent_portal.sign_in(agent, offset_steps=1)
    assert agent_portal.client.get("/console").status_code == 200

    response = admin_portal.post(f"/admin/users/{agent.id}/end-sessions")
    assert response.status_code == 302
    kicked = agent_portal.client.get("/console")
    assert kicked.status_code == 302
    page = agent_portal.client.get("/auth/login").get_data(as_text=True)
    assert "An admin ended your session" in page
    (event,) = audit_events(app, "user.sessions_ended")
    assert event.data == {"count": 1} and event.actor_id == str(admin_staff.id)
