"""``/api/v1/templates``: the approved templates a key's team may send (``library`` queries)."""

from __future__ import annotations

from typing import Any

import flask_smorest

from portal.envelopes import checks
from portal.extensions import db
from portal.integrations.api import current_key, problem, requires
from portal.integrations.schemas import TemplateListSchema, TemplateSchema
from portal.library import queries as library
from portal.library.models import DEFAULT_SETTINGS, Template, TemplateVersion

blp = flask_smorest.Blueprint(
    "templates",
    __name__,
    url_prefix="/api/v1/templates",
    description="Approved templates: their roles, merge keys and fields.",
)


def _summary(template: Template, version: TemplateVersion) -> dict[str, Any]:
    return {
        "id": template.id,
        "name": template.name,
        "document_type": template.document_type,
        "version": version.number,
        "approved_at": version.reviewed_at,
    }


@blp.route("")
@requires("templates:read")
@blp.response(200, TemplateListSchema)
def list_templates() -> dict[str, Any]:
    """The approved templates of the key's team, by name."""
    found = library.sendable_templates(current_key().actor)
    return {"items": [_summary(template, version) for template, version in found]}


@blp.route("/<int(max=2147483647):template_id>")  # (ids are 32-bit: larger is 404)
@requires("templates:read")
@blp.response(200, TemplateSchema)
def get_template(template_id: int) -> dict[str, Any]:
    """One approved template: roles, merge keys (all required) and fields."""
    actor = current_key().actor
    template = db.session.get(Template, template_id)
    version = library.approved_version(template) if template is not None else None
    if template is None or version is None or template.team_id != actor.team_id:
        problem(404, "not-found", "No such template", "No approved template with this id.")
    options = checks.choices(version)
    settings = {**DEFAULT_SETTINGS, **(version.settings or {})}
    return {
        **_summary(template, version),
        "roles": sorted(version.roles, key=lambda role: int(role["order"])),
        "merge_keys": [
            {"key": k.key, "label": k.label, "required": True, "options": options.get(k.key, [])}
            for k in library.merge_keys(version)
        ],
        "fields_": [
            {
                "key": f.key,
                "type": f.type,
                "role": f.role,
                "page": f.page,
                "label": f.label,
                "required": f.required,
                "merge_key": f.merge_key,
                "options": [str(o) for o in f.options or []],
            }
            for f in version.fields
        ],
        "settings": {name: settings.get(name) for name in _SETTINGS},
    }


_SETTINGS = ("expiry_days", "reminder_every_hours", "reminder_max", "default_auth", "routing")
