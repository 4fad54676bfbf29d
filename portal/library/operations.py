"""Verbs of the template library, in one place for the rest of the portal.

The work is done by modules split by idea: ``queries`` reads (which version is current,
page geometry, merge keys), ``drafts`` creates templates and changes a draft's document,
``fields`` edits a draft's fields, roles and settings, and ``lifecycle`` moves a version
through review, approval and retirement. Each verb changes rows, records audit events,
asks for jobs and commits; a ``LibraryError`` means nothing was changed and says why.
Callers keep using ``from portal.library import operations as ops``.
"""

from __future__ import annotations

from portal.library.drafts import (
    MERGE_KEY_PATTERN,
    STARTER_BODY,
    STARTER_MERGE_KEYS,
    create_authored,
    create_from_pdf,
    replace_pdf,
    retry_page_images,
    update_body,
)
from portal.library.errors import LibraryError
from portal.library.fields import (
    AUTH_METHODS,
    KEY_PATTERN,
    ROLE_KINDS,
    add_field,
    delete_field,
    move_field,
    set_roles,
    set_settings,
    update_field,
)
from portal.library.lifecycle import (
    REVIEWERS,
    approve,
    confirm_review,
    new_draft,
    reject,
    retire,
    submit,
)
from portal.library.queries import (
    REVIEW_EVERY,
    approved_version,
    count_templates,
    display_rect,
    ensure_sendable,
    latest_version,
    merge_keys,
    page_box,
    previous_version,
    review_due,
    sendable_templates,
)
from portal.library.refusals import upload_refused

__all__ = [
    "AUTH_METHODS",
    "KEY_PATTERN",
    "MERGE_KEY_PATTERN",
    "REVIEWERS",
    "REVIEW_EVERY",
    "ROLE_KINDS",
    "STARTER_BODY",
    "STARTER_MERGE_KEYS",
    "LibraryError",
    "add_field",
    "approve",
    "approved_version",
    "confirm_review",
    "count_templates",
    "create_authored",
    "create_from_pdf",
    "delete_field",
    "display_rect",
    "ensure_sendable",
    "latest_version",
    "merge_keys",
    "move_field",
    "new_draft",
    "page_box",
    "previous_version",
    "reject",
    "replace_pdf",
    "retire",
    "retry_page_images",
    "review_due",
    "sendable_templates",
    "set_roles",
    "set_settings",
    "submit",
    "update_body",
    "update_field",
    "upload_refused",
]
