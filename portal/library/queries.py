"""Reading the template library: page geometry, merge keys, which version is current,
whether a version may be sent and when a template is due for review. Nothing here
changes a row."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, inspect, select

from portal import clock
from portal.accounts.access import team_scope
from portal.accounts.models import User
from portal.documents import authoring
from portal.documents.geometry import Rect, pdf_to_display
from portal.documents.inspect import PageBox
from portal.extensions import db
from portal.library.errors import LibraryError
from portal.library.models import Field, Template, TemplateVersion, VersionStatus

REVIEW_EVERY = timedelta(days=365)
# A version's fields are fixed once it is submitted; these are the statuses of versions that
# were (or still are) approved: the only ones an envelope can have been sent from.
FIXED = frozenset(
    {VersionStatus.APPROVED.value, VersionStatus.SUPERSEDED.value, VersionStatus.RETIRED.value}
)
FIXED_FIELDS_KEY = "portal_fixed_fields"
FIXED_FIELDS_MAX = 500


def page_box(version: TemplateVersion, number: int) -> PageBox:
    """The geometry of one page of the version."""
    page = version.page(number)
    if page is None:
        raise LibraryError(f"This document has no page {number}.")
    return PageBox.from_record(page)


def display_rect(field: Field) -> Rect:
    """Where the editor shows a field: display points from the page's top-left corner."""
    return pdf_to_display(
        page_box(field.version, field.page), Rect(field.x, field.y, field.w, field.h)
    )


def merge_keys(version: TemplateVersion) -> list[authoring.MergeKey]:
    """The version's declared merge keys."""
    return [
        authoring.MergeKey(
            str(k["key"]), str(k.get("label") or k["key"]), str(k.get("sample") or "")
        )
        for k in version.merge_keys or []
    ]


def latest_version(template: Template) -> TemplateVersion:
    """The newest version, whatever its status."""
    return template.versions[-1]


def approved_version(template: Template) -> TemplateVersion | None:
    """The one version that may be sent, if any."""
    if template.retired_at is not None:
        return None
    for version in reversed(template.versions):
        if version.status == VersionStatus.APPROVED.value:
            return version
    return None


def ensure_sendable(version: TemplateVersion) -> None:
    """Raise unless this exact version is the latest approved version of a live template."""
    reasons = {
        VersionStatus.DRAFT.value: "is a draft that has not been approved",
        VersionStatus.IN_REVIEW.value: "is waiting for compliance review",
        VersionStatus.SUPERSEDED.value: "has been replaced by a newer approved version",
        VersionStatus.RETIRED.value: "has been retired",
    }
    name = f"{version.template.name} v{version.number}"
    if version.template.retired_at is not None:
        raise LibraryError(f"{name} cannot be sent: the template has been retired.")
    if version.status in reasons:
        raise LibraryError(f"{name} cannot be sent: it {reasons[version.status]}.")
    if approved_version(version.template) is not version:
        raise LibraryError(f"{name} cannot be sent: it is not the current approved version.")


def sendable_templates(user: User) -> list[tuple[Template, TemplateVersion]]:
    """The templates the user's team may send now, each with its approved version.

    One statement whatever the number of templates: each live template with its approved
    versions, newest first, of which the first is ``approved_version``'s answer.
    """
    stmt = team_scope(
        select(Template, TemplateVersion)
        .join(TemplateVersion, TemplateVersion.template_id == Template.id)
        .where(
            Template.retired_at.is_(None),
            TemplateVersion.status == VersionStatus.APPROVED.value,
        )
        .order_by(Template.name, Template.id, TemplateVersion.number.desc()),
        Template.team_id,
        user,
    )
    out: list[tuple[Template, TemplateVersion]] = []
    for template, version in db.session.execute(stmt):
        if not out or out[-1][0] is not template:
            out.append((template, version))
    return out


def review_due(template: Template) -> bool:
    """Approved templates are reviewed every 12 months."""
    if template.last_reviewed_at is None or template.retired_at is not None:
        return False
    return clock.utcnow() - clock.as_utc(template.last_reviewed_at) >= REVIEW_EVERY


def previous_version(version: TemplateVersion) -> TemplateVersion | None:
    """The version before this one, for the "what changed" view."""
    earlier = [v for v in version.template.versions if v.number < version.number]
    return earlier[-1] if earlier else None


def count_templates() -> int:
    """How many templates exist (for the console)."""
    return int(db.session.execute(select(func.count(Template.id))).scalar_one())


def _detached_copy(field: Field) -> Field:
    """The same field as an object of no session (its JSON values copied too)."""
    return Field(
        **{
            attr.key: copy.deepcopy(getattr(field, attr.key))
            for attr in inspect(Field).column_attrs
        }
    )


def sent_fields(version_id: int, locale: str | None = None) -> tuple[Field, ...]:
    """The fields of a version envelopes were sent from, in the template's order (placed
    where the ``locale`` variant's PDF has them, when it has its own placement, and labelled
    in its language where it has a label for them).

    An approved version never changes again (it can only be superseded or retired), so its
    fields are read once per process and application and kept as copies that belong to no
    database session: read them, never change them or add them to a session. Other versions
    are read every time.
    """
    cache: dict[tuple[int, str | None], tuple[Field, ...]] = current_app.extensions.setdefault(
        FIXED_FIELDS_KEY, {}
    )
    fields = cache.get((version_id, locale))
    if fields is not None:
        return fields
    version = db.session.get(TemplateVersion, version_id)
    if version is None:
        raise LibraryError("This template version does not exist.")
    fields = tuple(_detached_copy(f) for f in version.fields)
    variant = version.variant(locale) if locale else None
    if variant is not None and variant.placements:
        fields = tuple(_placed(f, variant.placements.get(f.key)) for f in fields)
    labels = (variant.labels or {}) if variant is not None else {}
    for field in fields:  # labelled in the variant's language where it has a label
        field.label = labels.get(field.key) or field.label
    if version.status in FIXED:
        if len(cache) >= FIXED_FIELDS_MAX:
            cache.clear()
        cache[(version_id, locale)] = fields
    return fields


def _placed(field: Field, at: dict[str, Any] | None) -> Field:
    """A detached field moved to where a language variant's PDF places it."""
    if at is not None:
        field.page, field.x, field.y = int(at["page"]), float(at["x"]), float(at["y"])
        field.w, field.h = float(at["w"]), float(at["h"])
    return field
