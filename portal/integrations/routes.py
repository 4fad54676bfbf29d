"""The integrations landing page; each area's admin routes live in its own module, imported
here so that registering ``bp`` registers them all."""

from __future__ import annotations

from flask import render_template

from portal.integrations import admins_only, bp


@bp.get("/")
@admins_only
def index() -> str:
    return render_template("integrations/index.html")


# Each area adds its routes to ``bp`` when imported.
from portal.integrations import keys_routes, webhook_routes  # noqa: E402, F401
