"""Whom to tell about a user's work, and how signers see that user named.

An API key acts through its own service user (``User.service``, see
``portal.integrations.keys``) whose address is made up (``api-key-…@api-keys.invalid``) and
whose name is the key's ("API key: CRM sync"). So, for an envelope or batch a key made:

- mail meant for its sender (completed, declined, bounced, locked, batch finished) goes to
  the staff member who made the key (``notify``);
- signers see the key's team named as the sender ("Contact Refunds"), never the key
  (``shown_name``; ``SHOWN_NAME`` is the same in SQL, for a query that outer-joins ``team``).

The key's creator is read from the ``api_key`` table by name: accounts is the lowest floor and
imports no feature package.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import case, column, func, select, table

from portal.accounts.models import Team, User
from portal.extensions import db

_KEYS = table("api_key", column("user_id"), column("created_by_id"))
_USERS, _TEAMS = User.__table__, Team.__table__

# A user's name as signers see it: a service user's team (see ``shown_name``).
SHOWN_NAME: Any = case(
    (_USERS.c.service.is_(True), func.coalesce(_TEAMS.c.name, _USERS.c.name)), else_=_USERS.c.name
)


def notify(user: User) -> User:
    """The staff member to email about ``user``'s envelopes and batches: ``user`` itself, or
    for an API key's service user the admin who made the key."""
    if not user.service:
        return user
    creator_id = db.session.execute(
        select(_KEYS.c.created_by_id).where(_KEYS.c.user_id == user.id)
    ).scalar()
    creator = db.session.get(User, creator_id) if creator_id is not None else None
    return creator if creator is not None and not creator.service else user


def shown_name(user: User) -> str:
    """``user``'s name as signers see it: for a service user its team's (else the
    organisation's), never the key's name or made-up address."""
    if not user.service:
        return user.name
    return user.team.name if user.team is not None else str(current_app.config["ORG_NAME"])
