"""Is this PDF one the portal sealed, and is it unchanged since? (verify page and CLI)

Three answers: ``verified`` (its SHA-256 is a sealed file's on record and the PAdES seal is
intact over the whole file), ``modified`` (it carries one of the portal's seals, or names one of
its sealed envelopes, but the bytes changed or something was appended after the seal), or
``unknown`` (not a document sealed here). ``unreadable`` is for uploads that are not PDFs.
A verified answer names the envelope, its completion time and its signers with masked emails,
nothing more; the other answers name nothing. Reports the portal sealed (audit reports,
compliance reports: ``sealing.seal_report``) are verified by their seal alone, intact over
the whole file and made with one of the portal's certificates in the report's own seal field,
and named by the seal's reason.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from flask_babel import gettext as _
from sqlalchemy import select

from portal.documents import keystore, sandbox
from portal.documents.inspect import declared_size_problem
from portal.documents.seal import SealCheck, check_seal
from portal.envelopes import renewal
from portal.envelopes.models import Envelope
from portal.envelopes.sealing import REPORT_SEAL_FIELD
from portal.extensions import db
from portal.mail import mask_address

MAX_UPLOAD = 30 * 1024 * 1024
# A seal of ours is a few kilobytes (tens with a time-stamp): a signature of megabytes is not
# one of ours, and decoding it would cost a minute of CPU.
MAX_SEAL_HEX = 1024 * 1024
_HUGE_SIGNATURE = re.compile(rb"/Contents\s*<[0-9A-Fa-f\s]{%d}" % MAX_SEAL_HEX)
# The public page's checks get less than an upload's: a sealed file checks in milliseconds.
CHECK_CPU_SECONDS = 5.0
CHECK_MEMORY_MB = 512
_REPORT_REASON = re.compile(rb"/Reason\s*\(([ -'*-~]{1,200})\)")
# A PDF literal string's escapes: the seal writer spells "-" as \055 ("2026-11-01").
_ESCAPE = re.compile(rb"\\([0-7]{1,3}|.)")
_ESCAPED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
Outcome = Literal["verified", "modified", "unknown", "unreadable"]
# The sealed file names its envelope in its info dictionary and in the seal's reason.
_MARKERS = (
    re.compile(rb"/PortalEnvelope\s*\(([0-9a-f]{32})\)"),
    re.compile(rb"envelope ([0-9a-f]{32})\)"),
)


@dataclass(frozen=True)
class Verdict:
    """The answer for one file."""

    outcome: Outcome
    message: str
    envelope_id: str | None = None
    completed_at: datetime | None = None
    sealed_at: datetime | None = None
    signers: list[tuple[str, str]] = field(default_factory=list)  # (name, masked email)
    report: str | None = None  # a report the portal sealed: what it is (its seal's reason)

    @property
    def verified(self) -> bool:
        return self.outcome == "verified"


def _named_envelope(data: bytes) -> Envelope | None:
    for marker in _MARKERS:
        for match in marker.finditer(data):
            public_id = match.group(1).decode("ascii")
            envelope = db.session.execute(
                select(Envelope).where(
                    Envelope.public_id == public_id, Envelope.sealed_sha256.is_not(None)
                )
            ).scalar_one_or_none()
            if envelope is not None:
                return envelope
    return None


def _modified() -> Verdict:
    return Verdict(
        "modified",
        _(
            "This file was changed after the portal sealed it: it is not the sealed original. "
            "Ask the sender for the original copy."
        ),
    )


def verify_pdf(data: bytes) -> Verdict:
    """Check an uploaded file against the portal's sealed documents."""
    if not data:
        return Verdict("unreadable", _("The file is empty. Choose the signed PDF."))
    if len(data) > MAX_UPLOAD:
        return Verdict("unreadable", _("The file is larger than 30 MB, so it is not one of ours."))
    if b"%PDF-" not in data[:1024]:
        return Verdict("unreadable", _("This file is not a PDF. Choose the signed PDF document."))
    digest = hashlib.sha256(data).hexdigest()
    recorded = db.session.execute(
        select(Envelope).where(Envelope.sealed_sha256 == digest)
    ).scalar_one_or_none() or renewal.envelope_of_earlier(digest)  # (before a seal renewal)
    if recorded is None and (declared_size_problem(data) or _HUGE_SIGNATURE.search(data)):
        return _not_ours()  # built to overload a reader: not worth opening
    ours = keystore.known_fingerprints()
    check = _checked(data)
    if isinstance(check, Verdict):
        return check
    if (
        recorded is not None
        and check.outcome == "intact"
        and check.signer_fingerprint is not None
        and check.signer_fingerprint in ours
    ):
        return Verdict(
            "verified",
            _("Sealed by this portal and unchanged since."),
            envelope_id=recorded.public_id,
            completed_at=recorded.finished_at,
            sealed_at=recorded.sealed_at,
            signers=[
                (r.name, mask_address(r.email))
                for r in recorded.recipients
                if r.kind in ("signer", "approver")
            ],
        )
    if (
        recorded is None
        and check.outcome == "intact"
        and check.field_name == REPORT_SEAL_FIELD
        and check.signer_fingerprint in ours
    ):
        return Verdict(
            "verified",
            _("A report sealed by this portal, unchanged since."),
            sealed_at=check.signed_at,
            report=_report_name(data),
        )
    if recorded is not None:
        return _modified()
    if check.signer_fingerprint is not None and check.signer_fingerprint in ours:
        return _modified()
    if check.outcome != "unsigned" and _named_envelope(data):
        return _modified()
    if check.outcome == "unreadable":
        return Verdict(
            "unreadable", _("This PDF is damaged and cannot be read, so it cannot be verified.")
        )
    return _not_ours()


def _report_name(data: bytes) -> str:
    """What a sealed report is, from its seal's reason (written by ``sealing.seal_report``)."""
    match = _REPORT_REASON.search(data)
    if not match:
        return _("Report")

    def unescape(escape: re.Match[bytes]) -> bytes:
        code = escape.group(1)
        if code[:1].isdigit():
            return bytes([int(code, 8) & 0xFF])
        return _ESCAPED.get(code, code)

    return _ESCAPE.sub(unescape, match.group(1)).decode("ascii", "replace")


def _not_ours() -> Verdict:
    return Verdict(
        "unknown",
        _("This is not a document sealed by this portal (or it was changed beyond recognition)."),
    )


def _checked(data: bytes) -> SealCheck | Verdict:
    """The seal check, in the sandbox with the public page's tighter limits."""
    limits = sandbox.configured().tighter(CHECK_CPU_SECONDS, CHECK_MEMORY_MB)
    try:
        return sandbox.run(check_seal, data, limits=limits)
    except sandbox.Overrun:
        return Verdict(
            "unreadable",
            _(
                "This PDF took too long to check, so it cannot be verified. A document sealed "
                "by this portal is checked in a moment: this one is damaged or not one of ours."
            ),
        )
    except sandbox.Busy:
        return Verdict(
            "unreadable",
            _("Many documents are being checked right now. Wait a minute and try again."),
        )
