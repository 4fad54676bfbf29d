"""The records centre's landing page; each area's routes live in its own module, imported here
so that registering ``bp`` registers them all."""

from __future__ import annotations

from flask import render_template

from portal.records import bp, officers_only


@bp.get("/")
@officers_only
def index() -> str:
    return render_template("records/index.html")


# Each area adds its routes to ``bp`` when imported.
from portal.records import (  # noqa: E402, F401
    access_routes,
    hold_routes,
    report_routes,
    retention_routes,
    search_routes,
    subject_routes,
)
