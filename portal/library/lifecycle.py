"""A template's lifecycle: submit a draft, approve or reject it, confirm the annual
review, start the next draft and retire the template. Each verb records an audit event
and commits; a ``LibraryError`` means nothing was changed and says why."""

from __future__ import annotations

from portal import audit, clock
from portal.accounts.models import Role, User
from portal.extensions import db
from portal.library import variants
from portal.library.drafts import _editable
from portal.library.errors import LibraryError
from portal.library.models import Field, Template, TemplateVersion, VersionStatus
from portal.library.queries import approved_version, latest_version

REVIEWERS = (Role.COMPLIANCE, Role.ADMIN)


def submit(version: TemplateVersion, by: User) -> None:
    """Freeze a draft and send it to compliance for review."""
    _editable(version)
    if not version.source_blob_id:
        raise LibraryError("Fix the document's problems before submitting it.")
    signers = [r for r in version.roles or [] if r["kind"] == "signer"]
    for role in signers:
        if not any(f.role == role["key"] and f.type == "signature" for f in version.fields):
            raise LibraryError(f"Place a signature field for {role['name']} before submitting.")
    variants.ensure_complete(version)
    version.status = VersionStatus.IN_REVIEW.value
    version.submitted_by_id = by.id
    version.submitted_at = clock.utcnow()
    audit.record(
        "template.submitted",
        actor=by,
        subject=version,
        data={
            "sha256": version.source_sha256,
            "fields": len(version.fields),
            "languages": {v.locale: v.source_sha256 for v in version.variants},
        },
    )
    db.session.commit()


def _reviewer(version: TemplateVersion, by: User) -> None:
    if not by.has_role(*REVIEWERS):
        raise LibraryError("Only compliance or an admin can review templates.")
    if version.status != VersionStatus.IN_REVIEW.value:
        raise LibraryError("Only a version in review can be approved or rejected.")
    if version.submitted_by_id == by.id:
        raise LibraryError("You submitted this version; someone else in compliance must review it.")


def approve(version: TemplateVersion, by: User, comment: str = "") -> None:
    """Approve a version in review; it becomes the one agents send."""
    _reviewer(version, by)
    for older in version.template.versions:
        if older is not version and older.status == VersionStatus.APPROVED.value:
            older.status = VersionStatus.SUPERSEDED.value
    version.status = VersionStatus.APPROVED.value
    version.reviewed_by_id = by.id
    version.reviewed_at = clock.utcnow()
    version.review_comment = comment.strip() or None
    version.template.last_reviewed_at = version.reviewed_at
    audit.record(
        "template.approved",
        actor=by,
        subject=version,
        data={
            "sha256": version.source_sha256,
            "comment": version.review_comment,
            "languages": {v.locale: v.source_sha256 for v in version.variants},
        },
    )
    db.session.commit()


def reject(version: TemplateVersion, by: User, comment: str) -> None:
    """Send a version back to draft with the reviewer's reasons."""
    _reviewer(version, by)
    if not comment.strip():
        raise LibraryError("Say what needs to change, so the author can fix it.")
    version.status = VersionStatus.DRAFT.value
    version.reviewed_by_id = by.id
    version.reviewed_at = clock.utcnow()
    version.review_comment = comment.strip()
    audit.record(
        "template.rejected", actor=by, subject=version, data={"comment": version.review_comment}
    )
    db.session.commit()


def confirm_review(template: Template, by: User) -> None:
    """Record this year's review of an approved template without changing it."""
    if not by.has_role(*REVIEWERS):
        raise LibraryError("Only compliance or an admin can review templates.")
    if approved_version(template) is None:
        raise LibraryError("Only a template with an approved version can be reviewed.")
    template.last_reviewed_at = clock.utcnow()
    audit.record("template.review_confirmed", actor=by, subject=template)
    db.session.commit()


def new_draft(template: Template, by: User) -> TemplateVersion:
    """Start the next version from the latest one (or return the open draft)."""
    latest = latest_version(template)
    if latest.status in (VersionStatus.DRAFT.value, VersionStatus.IN_REVIEW.value):
        return latest
    if template.retired_at is not None:
        raise LibraryError("This template has been retired.")
    draft = TemplateVersion(
        template=template,
        number=latest.number + 1,
        source_kind=latest.source_kind,
        source_blob_id=latest.source_blob_id,
        source_filename=latest.source_filename,
        source_sha256=latest.source_sha256,
        page_count=latest.page_count,
        pages=[dict(p) for p in latest.pages],
        authored_body=latest.authored_body,
        merge_keys=[dict(k) for k in latest.merge_keys],
        roles=[dict(r) for r in latest.roles],
        settings=dict(latest.settings),
        images_status=latest.images_status,
        retention_policy_id=latest.retention_policy_id,
        created_by_id=by.id,
    )
    db.session.add(draft)
    for field in latest.fields:
        draft.fields.append(Field(**field.snapshot()))
    variants.copy_to(draft, latest)
    db.session.flush()
    audit.record(
        "template.version_created",
        actor=by,
        subject=draft,
        data={"number": draft.number, "from_version": latest.number},
    )
    db.session.commit()
    return draft


def retire(template: Template, by: User, reason: str) -> None:
    """Stop a template from being sent; its versions stay for the envelopes that used them."""
    if not by.has_role(*REVIEWERS):
        raise LibraryError("Only compliance or an admin can retire templates.")
    if template.retired_at is not None:
        return
    if not reason.strip():
        raise LibraryError("Say why the template is retired.")
    template.retired_at = clock.utcnow()
    for version in template.versions:
        if version.status in (
            VersionStatus.APPROVED.value,
            VersionStatus.IN_REVIEW.value,
            VersionStatus.DRAFT.value,
        ):
            version.status = VersionStatus.RETIRED.value
    audit.record("template.retired", actor=by, subject=template, data={"reason": reason.strip()})
    db.session.commit()
