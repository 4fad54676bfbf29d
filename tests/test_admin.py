"""User administration by admins: create, roles, teams, deactivate, MFA reset; all audited."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.accounts.access import team_scope
from portal.accounts.models import User
from portal.extensions import db
from tests.conftest import SECRET_TEXT, Portal, audit_events


def test_admin_creates_a_user_who_gets_a_one_time_password(signed_in, app):
    portal, _ = signed_in("admin")
    form = portal.client.get("/admin/users/new").get_data(as_text=True)
    team_id = re.search(r'<option value="(\d+)">Customer Care</option>', form).group(1)
    response = portal.post(
        "/admin/users/new",
        {"email": "New.Agent@Example.com", "name": "New Agent", "role": "agent", "team": team_id},
    )
    page = response.get_data(as_text=True)
    password = re.search(r'id="one-time-password">([a-z0-9-]+)<', page).group(1)
    event = audit_events(app, "user.created")[-1]
    assert event.actor_type == "user"
    assert event.data == {
        "email": "new.agent@example.com",
        "role": "agent",
        "team": "Customer Care",
    }
    assert password not in str(event.data)

    newcomer = Portal(app, app.test_client())
    assert (
        newcomer.password_step("new.agent@example.com", password)
        .headers["Location"]
        .endswith("/auth/enrol")
    )


def test_duplicate_email_is_refused_with_a_message(signed_in, make_staff):
    portal, _ = signed_in("admin")
    existing = make_staff("agent")
    response = portal.post(
        "/admin/users/new",
        {"email": existing.email.upper(), "name": "Dup", "role": "agent", "team": "0"},
    )
    assert "An account with this email already exists." in response.get_data(as_text=True)
    assert len(audit_events(portal.app, "user.created")) == 2  # admin + existing only


def test_role_and_team_change_through_htmx(signed_in, make_staff, app):
    portal, _ = signed_in("admin")
    agent = make_staff("agent")
    portal.post("/admin/teams", {"name": "Billing"})
    with app.app_context():
        billing = db.session.execute(select(User.team_id)).first()
        from portal.accounts.admin import find_team

        billing = find_team("Billing").id
    response = portal.htmx_post(
        f"/admin/users/{agent.id}/access", {"role": "compliance", "team": str(billing)}
    )
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert "<html" not in fragment and "Saved Agent 2" in fragment
    assert audit_events(app, "user.role_changed")[0].data == {"from": "agent", "to": "compliance"}
    assert audit_events(app, "user.team_changed")[0].data == {
        "from": "Customer Care",
        "to": "Billing",
    }
    assert audit_events(app, "team.created")[-1].data == {"name": "Billing"}


def test_last_admin_cannot_be_demoted_or_deactivated(signed_in):
    portal, admin_staff = signed_in("admin")
    response = portal.htmx_post(
        f"/admin/users/{admin_staff.id}/access", {"role": "agent", "team": "0"}
    )
    assert response.status_code == 422
    assert "last active admin" in response.get_data(as_text=True)
    response = portal.htmx_post(f"/admin/users/{admin_staff.id}/deactivate")
    assert "cannot deactivate your own account" in response.get_data(as_text=True)
    assert audit_events(portal.app, "user.role_changed") == []


def test_deactivated_user_cannot_sign_in_and_loses_sessions(signed_in, make_staff, app):
    portal, _ = signed_in("admin")
    agent = make_staff("agent")
    agent_portal = Portal(app, app.test_client())
    agent_portal.sign_in(agent, offset_steps=1)
    portal.post(f"/admin/users/{agent.id}/deactivate")
    assert agent_portal.client.get("/console").status_code == 302
    again = agent_portal.password_step(agent.email, agent.password)
    assert "do not match an active account" in again.get_data(as_text=True)
    assert audit_events(app, "user.deactivated")[0].data == {"sessions_ended": 1}
    portal.post(f"/admin/users/{agent.id}/reactivate")
    assert audit_events(app, "user.reactivated")


def test_mfa_reset_makes_the_user_enrol_again(signed_in, make_staff, app):
    portal, _ = signed_in("admin")
    agent = make_staff("agent")
    portal.post(f"/admin/users/{agent.id}/reset-mfa")
    assert audit_events(app, "user.mfa_reset")
    agent_portal = Portal(app, app.test_client())
    step = agent_portal.password_step(agent.email, agent.password)
    assert step.headers["Location"].endswith("/auth/enrol")
    page = agent_portal.client.get("/auth/enrol").get_data(as_text=True)
    assert SECRET_TEXT.search(page).group(1).replace(" ", "") != agent.secret


def test_admin_unlocks_a_locked_account(signed_in, make_staff, app):
    portal, _ = signed_in("admin")
    agent = make_staff("agent")
    other = Portal(app, app.test_client())
    for _ in range(5):
        other.password_step(agent.email, "wrong password!")
    page = portal.client.get(f"/admin/users/{agent.id}").get_data(as_text=True)
    assert "Locked until" in page
    portal.post(f"/admin/users/{agent.id}/unlock")
    assert audit_events(app, "user.unlocked")
    assert other.sign_in(agent, offset_steps=1).status_code == 302


def test_password_reset_shows_a_new_one_time_password(signed_in, make_staff, app):
    portal, _ = signed_in("admin")
    agent = make_staff("agent")
    page = portal.post(f"/admin/users/{agent.id}/reset-password").get_data(as_text=True)
    password = re.search(r'id="one-time-password">([a-z0-9-]+)<', page).group(1)
    other = Portal(app, app.test_client())
    assert other.password_step(agent.email, agent.password).status_code == 200  # old one is gone
    assert other.password_step(agent.email, password).status_code == 302
    assert audit_events(app, "user.password_reset")


def test_user_list_search(signed_in, make_staff):
    portal, _ = signed_in("admin")
    make_staff("agent", team="Billing", email="zoe@example.test")
    make_staff("agent", team="Care", email="yan@example.test")
    rows = portal.client.get("/admin/users?q=billing", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "zoe@example.test" in rows and "yan@example.test" not in rows
    none = portal.client.get("/admin/users?q=nobody", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "No users match" in none


def test_team_scope_limits_agents_to_their_team(app, make_staff):
    a = make_staff("agent", team="Care")
    make_staff("agent", team="Billing")
    compliance = make_staff("compliance", team="Care")
    loner = make_staff("agent", team=None)
    with app.app_context():

        def visible(staff):
            user = db.session.get(User, staff.id)
            stmt = team_scope(select(User.email), User.team_id, user)
            return set(db.session.execute(stmt).scalars())

        assert visible(a) == {a.email, compliance.email}
        assert len(visible(compliance)) == 4
        assert visible(loner) == set()
