"""The API's reference page (Swagger UI, vendored) and its list of problem types."""

from __future__ import annotations

from flask import Blueprint, Response, json, render_template

from portal.integrations.problems import PROBLEMS, problem, type_uri

bp = Blueprint("api_docs_page", __name__, url_prefix="/api/v1")


@bp.get("/docs")
def reference() -> str:
    """A readable reference of the OpenAPI document, served from our own origin."""
    return render_template("integrations/api_docs.html")


@bp.get("/problems/<kind>")
def problem_type(kind: str) -> Response:
    """What a problem ``type`` means (the URI in every problem answer)."""
    if kind not in PROBLEMS:
        problem(404, "not-found", "No such problem type")
    status, meaning = PROBLEMS[kind]
    body = {"type": type_uri(kind), "status": status, "description": meaning}
    return Response(json.dumps(body), mimetype="application/json")
