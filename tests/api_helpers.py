"""Helpers for API tests: keys made through the keys module, and a refund envelope's body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

ALL_SCOPES = ["templates:read", "envelopes:read", "envelopes:write", "bulk:write", "records:read"]


@dataclass
class Key:
    id: int
    secret: str
    team_id: int
    name: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def make_key(
    app: Flask,
    *,
    name: str = "CRM sync",
    scopes: list[str] | None = None,
    expiry: str = "never",
    team: str = "Customer Care",
) -> Key:
    """A key of ``team`` made by a new admin of that team."""
    from sqlalchemy import select

    from portal.accounts import admin
    from portal.accounts.models import User
    from portal.extensions import db
    from portal.integrations import keys

    with app.app_context():
        team_row = admin.find_team(team) or admin.create_team(team, by="test")
        address = f"keys-admin-{team_row.id}@example.test"
        creator = db.session.execute(select(User).where(User.email == address)).scalar_one_or_none()
        if creator is None:
            creator, _ = admin.create_user(
                address, "Keys Admin", "admin", team_row, by="test", password="x" * 16
            )
        made = keys.create(team_row, name, scopes or ALL_SCOPES, expiry, by=creator)
        db.session.commit()
        return Key(made.key.id, made.secret, team_row.id, name)


class Api:
    """A test client that sends a key's bearer header and JSON."""

    def __init__(self, client: FlaskClient, key: Key) -> None:
        self.client = client
        self.key = key

    def get(self, url: str, **kwargs: Any):
        headers = {**self.key.headers, **kwargs.pop("headers", {})}
        return self.client.get(url, headers=headers, **kwargs)

    def post(self, url: str, body: Any = None, **kwargs: Any):
        headers = {**self.key.headers, **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["json"] = body
        return self.client.post(url, headers=headers, **kwargs)


def refund_body(app: Flask, **changes: Any) -> dict[str, Any]:
    """A body that sends the demo refund template (after ``seed-demo``) to one customer."""
    from portal.library import queries
    from tests.conftest import demo_template

    with app.app_context():
        template = demo_template()
        version = queries.approved_version(template)
        assert version is not None
        merge = {k.key: k.sample or "x" for k in queries.merge_keys(version)}
        roles = [r for r in version.roles if r["kind"] != "cc"]
        body: dict[str, Any] = {
            "template_id": template.id,
            "merge_data": merge,
            "recipients": [
                {"role": r["key"], "name": "Ana Muñoz", "email": f"ana{n}@example.com"}
                for n, r in enumerate(roles)
            ],
            "ticket_id": "CRM-1001",
            "ticket_url": "https://crm.example.com/tickets/1001",
        }
    body.update(changes)
    return body
