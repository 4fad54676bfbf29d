"""Who may see what: role checks for routes and the team scope for queries."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort
from flask_login import current_user
from sqlalchemy import Select, false
from sqlalchemy.orm import InstrumentedAttribute

from portal.accounts.models import Role, User
from portal.extensions import login_manager

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound="Select[*tuple[Any, ...]]")  # a SELECT of any columns

# Roles that see every team's records (compliance reviews and exports across teams).
ALL_TEAMS = frozenset({Role.ADMIN.value, Role.COMPLIANCE.value})


def check_roles(*roles: Role) -> None:
    """Abort unless the signed-in user has one of the roles (401 → sign-in, 403 otherwise)."""
    if not current_user.is_authenticated:
        abort(login_manager.unauthorized())
    if roles and not current_user.has_role(*roles):
        abort(403)


def roles_required(*roles: Role) -> Callable[[F], F]:
    """Route decorator: signed in with one of the roles (any role when none given)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            check_roles(*roles)
            return view(*args, **kwargs)

        guarded.required_roles = roles or tuple(Role)  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def sees_all_teams(user: User) -> bool:
    """Admins and compliance see every team; agents only their own."""
    return user.role in ALL_TEAMS


def team_scope(stmt: S, team_column: InstrumentedAttribute[Any], user: User) -> S:
    """Limit a query to the rows of the user's team, unless the role sees all teams."""
    if sees_all_teams(user):
        return stmt
    if user.team_id is None:
        return stmt.where(false())
    return stmt.where(team_column == user.team_id)


def can_see_team(user: User, team_id: int | None) -> bool:
    """The same rule as ``team_scope`` for one record."""
    return sees_all_teams(user) or (user.team_id is not None and user.team_id == team_id)
