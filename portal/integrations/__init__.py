"""Integrations: the REST API (``/api/v1``, OpenAPI 3.1), API keys, and Standard Webhooks.

CRMs and help desks drive the portal through the API and learn what happened through
webhooks. The API is a thin layer of schemas, keys and limits over the same operations
modules the console uses (``portal.envelopes``, ``portal.bulk``, ``portal.library``); it
never has a second implementation of a verb. Modules:

- ``api``: the flask-smorest ``Api``, key authentication and scopes, RFC 9457 problems,
  rate limits, ``Idempotency-Key``, ETags and cursor pagination;
- ``api_templates`` / ``api_envelopes`` / ``api_actions`` / ``api_bulk``: the resources;
- ``embedded``: single-use, short-lived embedded signing links;
- ``keys`` / ``keys_routes``: API keys per team (admin pages);
- ``webhooks`` / ``delivery`` / ``ssrf`` / ``webhook_routes``: endpoints, the outbox written
  in the same transaction as the change, delivery on the ``webhooks`` queue, the attempt log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask

from portal.accounts.access import roles_required
from portal.accounts.models import Role

F = TypeVar("F", bound=Callable[..., Any])

# The admin pages (API keys, webhook endpoints, delivery log): /admin/integrations/...
bp = Blueprint("integrations", __name__, url_prefix="/admin/integrations")


def admins_only(view: F) -> F:
    """Route decorator for every integrations admin page."""
    return roles_required(Role.ADMIN)(view)


def init_app(app: Flask) -> None:
    from portal.integrations import api, routes  # noqa: F401  (routes register on bp)

    app.register_blueprint(bp)
    api.init_app(app)
    from portal.integrations.embedded_routes import public as embedded_public

    app.register_blueprint(embedded_public)  # /s/embedded/<token>
