"""Refused uploads leave a trace: who tried to upload what, and why it was refused."""

from __future__ import annotations

import hashlib

from portal import audit
from portal.accounts.models import User
from portal.extensions import db, write_lock
from portal.library.models import TemplateVersion


def upload_refused(
    data: bytes, filename: str, reason: str, by: User, version: TemplateVersion | None = None
) -> None:
    """Record ``template.upload_refused`` in a transaction of its own.

    Call it after the rollback of the refused upload: the event is all that is stored.
    """
    write_lock()
    audit.record(
        "template.upload_refused",
        actor=by,
        subject=version,
        data={
            "file": filename[:200],
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "reason": reason,
        },
    )
    db.session.commit()
