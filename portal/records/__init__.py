"""Records and compliance centre: audit search, exports and reports, retention, legal holds,
access audit and data-subject requests.

Compliance officers and admins work here; agents get 403 on every page. Each area owns its
modules (operations apart from routes):

- ``search`` / ``exports``: the audit trail search and the streamed CSV exports (jobs when big);
- ``retention`` / ``purge``: retention policies, the daily sweep with its review window, purges;
- ``holds``: legal holds and their ZIP export; ``subjects``: data-subject requests;
- ``reports``: the sealed PDF compliance report; ``access``: who viewed what.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint

from portal.accounts.access import roles_required
from portal.accounts.models import Role

F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("records", __name__, url_prefix="/records")

# Compliance officers and admins; everyone else (agents) gets 403.
OFFICERS = (Role.COMPLIANCE, Role.ADMIN)


def officers_only(view: F) -> F:
    """Route decorator for every page of the records centre."""
    return roles_required(*OFFICERS)(view)
