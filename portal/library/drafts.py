"""Creating templates and changing a draft's document: an uploaded PDF or text written
in the portal. Each verb records audit events, asks for jobs and commits; a
``LibraryError`` means nothing was changed and says why."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from portal import audit, storage
from portal.accounts.models import Team, User
from portal.documents import authoring
from portal.documents.inspect import PdfInfo, inspect_generated_pdf, inspect_pdf
from portal.extensions import db
from portal.library import images
from portal.library.errors import LibraryError
from portal.library.models import (
    DEFAULT_ROLES,
    DEFAULT_SETTINGS,
    DOCUMENT_TYPE_LABELS,
    Template,
    TemplateVersion,
)
from portal.library.queries import merge_keys

MERGE_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


STARTER_BODY = """# Title of the document

Dear {{ customer.name }},

Write the document here. Use **bold** and *italic* text, lists and tables:

| Detail | Value |
|---|---|
| Order number | {{ order.number }} |

{% if order.channel == "phone" %}
This paragraph appears only when the order was placed by phone.
{% endif %}

By signing below you confirm that the details above are correct.
"""

STARTER_MERGE_KEYS = [
    {"key": "customer.name", "label": "Customer name", "sample": "Jane Doe"},
    {"key": "order.number", "label": "Order number", "sample": "A-10042"},
    {"key": "order.channel", "label": "Order channel", "sample": "phone"},
]

# ------------------------------------------------------------------ creating


def _check_document_type(document_type: str) -> None:
    if document_type not in DOCUMENT_TYPE_LABELS:
        raise LibraryError("Choose a document type from the list.")


def _new_template(name: str, document_type: str, team: Team | None, by: User) -> Template:
    _check_document_type(document_type)
    if not name.strip():
        raise LibraryError("Give the template a name.")
    template = Template(
        name=name.strip(), document_type=document_type, team=team, created_by_id=by.id
    )
    db.session.add(template)
    return template


def _pages_of(info: PdfInfo) -> list[dict[str, Any]]:
    return [
        {
            "number": p.number,
            "x0": p.x0,
            "y0": p.y0,
            "x1": p.x1,
            "y1": p.y1,
            "rotation": p.rotation,
            "image_blob_id": None,
            "width_px": None,
            "height_px": None,
        }
        for p in info.pages
    ]


def _attach_pdf(version: TemplateVersion, data: bytes, info: PdfInfo, filename: str) -> None:
    version.source_blob_id = storage.put(data, kind="template_source")
    version.source_filename = filename[:255] or None
    version.source_sha256 = info.sha256
    version.page_count = info.page_count
    version.pages = _pages_of(info)


def create_from_pdf(
    name: str, document_type: str, team: Team | None, data: bytes, filename: str, by: User
) -> TemplateVersion:
    """A new template whose first draft is an uploaded PDF (checked before anything is stored)."""
    info = inspect_pdf(data, filename)
    template = _new_template(name, document_type, team, by)
    version = TemplateVersion(
        template=template,
        number=1,
        source_kind="pdf",
        roles=[dict(r) for r in DEFAULT_ROLES],
        settings=dict(DEFAULT_SETTINGS),
        merge_keys=[],
        created_by_id=by.id,
    )
    db.session.add(version)
    _attach_pdf(version, data, info, filename)
    db.session.flush()
    audit.record(
        "template.created",
        actor=by,
        subject=template,
        data={"name": template.name, "type": document_type, "source": "pdf"},
    )
    audit.record(
        "template.version_created",
        actor=by,
        subject=version,
        data={"number": 1, "sha256": info.sha256, "pages": info.page_count, "file": filename},
    )
    images.VERSIONS.request(version)
    db.session.commit()
    return version


def create_authored(
    name: str,
    document_type: str,
    team: Team | None,
    body: str,
    keys: Sequence[Mapping[str, Any]],
    by: User,
) -> tuple[TemplateVersion, list[authoring.Problem]]:
    """A new template written in the portal; problems in the body are returned, not raised."""
    template = _new_template(name, document_type, team, by)
    version = TemplateVersion(
        template=template,
        number=1,
        source_kind="authored",
        roles=[dict(r) for r in DEFAULT_ROLES],
        settings=dict(DEFAULT_SETTINGS),
        created_by_id=by.id,
    )
    db.session.add(version)
    db.session.flush()
    audit.record(
        "template.created",
        actor=by,
        subject=template,
        data={"name": template.name, "type": document_type, "source": "authored"},
    )
    audit.record("template.version_created", actor=by, subject=version, data={"number": 1})
    problems = _apply_body(version, body, keys)
    db.session.commit()
    return version, problems


def _apply_body(
    version: TemplateVersion, body: str, keys: Sequence[Mapping[str, Any]]
) -> list[authoring.Problem]:
    version.authored_body = body
    version.merge_keys = _clean_merge_keys(keys)
    known = merge_keys(version)
    problems = authoring.check_body(body, known)
    if problems:
        return problems
    pdf = authoring.render_pdf(
        body, authoring.sample_values(known), known, title=version.template.name
    )
    info = inspect_generated_pdf(pdf)
    if info.sha256 != version.source_sha256:
        _attach_pdf(version, pdf, info, f"{version.template.name}.pdf")
        for field in version.fields:
            field.page = min(field.page, info.page_count)
        images.VERSIONS.request(version)
    return []


def _clean_merge_keys(keys: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for entry in keys:
        key = str(entry.get("key") or "").strip()
        if not key:
            continue
        if not MERGE_KEY_PATTERN.match(key):
            raise LibraryError(
                f"Merge field {key!r} must be lower-case words joined by dots, like customer.name."
            )
        if key in seen:
            raise LibraryError(f"Merge field {key} is listed twice.")
        seen.add(key)
        out.append(
            {
                "key": key,
                "label": str(entry.get("label") or key).strip()[:120],
                "sample": str(entry.get("sample") or "").strip()[:200],
            }
        )
    return out


# ------------------------------------------------------------------ editing drafts


def _editable(version: TemplateVersion) -> None:
    if not version.editable:
        raise LibraryError(
            f"Version {version.number} is {version.status_enum.label.lower()} and can no longer "
            "be changed. Start a new draft to make changes."
        )


def update_body(
    version: TemplateVersion, body: str, keys: Sequence[Mapping[str, Any]], by: User
) -> list[authoring.Problem]:
    """Save an authored document's text and merge fields; re-render it when it is valid."""
    _editable(version)
    if version.source_kind != "authored":
        raise LibraryError("This template is an uploaded PDF; upload a new file instead.")
    problems = _apply_body(version, body, keys)
    audit.record(
        "template.body_saved",
        actor=by,
        subject=version,
        data={"problems": len(problems), "sha256": version.source_sha256},
    )
    db.session.commit()
    return problems


def replace_pdf(version: TemplateVersion, data: bytes, filename: str, by: User) -> None:
    """Upload a new PDF into a draft; fields stay, clamped to the new pages."""
    _editable(version)
    info = inspect_pdf(data, filename)
    _attach_pdf(version, data, info, filename)
    for field in version.fields:
        field.page = min(field.page, info.page_count)
    audit.record(
        "template.source_replaced",
        actor=by,
        subject=version,
        data={"sha256": info.sha256, "pages": info.page_count, "file": filename},
    )
    images.VERSIONS.request(version)
    db.session.commit()


def retry_page_images(version: TemplateVersion, by: User) -> None:
    """Ask again for page images that failed (or seem stuck)."""
    if version.images_status == "ready" or not version.source_blob_id:
        raise LibraryError("The pages of this version are already shown; nothing to try again.")
    audit.record(
        "template.images_retried",
        actor=by,
        subject=version,
        data={"previous_error": version.images_error, "attempts": version.images_attempts},
    )
    images.VERSIONS.request(version)
    db.session.commit()
