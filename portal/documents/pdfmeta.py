"""Document information and XMP metadata of the PDFs the portal produces.

Pure module (pypdf only). reportlab's ``invariant`` mode (kept: same input, same bytes) dates
every file 2000-01-01; the files the portal hands out are dated here instead, with the real
time of their making (``clock.utcnow()`` at the caller), in the info dictionary (/CreationDate,
/ModDate) and in an XMP packet (dc:title, dc:description, pdf:Producer, xmp:CreateDate,
xmp:ModifyDate, xmp:MetadataDate, xmp:CreatorTool), which archival readers and PDF/A
checkers read instead of the info dictionary.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pypdf import PdfReader, PdfWriter
from pypdf.xmp import XmpInformation

PRODUCER = "Signing Portal"


def pdf_date(when: datetime) -> str:
    """``when`` as a PDF date string (UTC): D:20261205031500Z."""
    return when.astimezone(UTC).strftime("D:%Y%m%d%H%M%SZ")


def apply(
    writer: PdfWriter,
    info: Mapping[str, Any],
    *,
    created: datetime,
    modified: datetime | None = None,
) -> None:
    """Merge ``info`` (keys like "/Title") into the document info of ``writer``, dated
    ``created`` (and ``modified``, default the same), and write the matching XMP packet."""
    created = created.replace(microsecond=0)
    modified = (modified or created).replace(microsecond=0)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    merged = {(k if k.startswith("/") else f"/{k}"): str(v) for k, v in info.items()}
    merged.setdefault("/Producer", PRODUCER)
    merged["/CreationDate"] = pdf_date(created)
    merged["/ModDate"] = pdf_date(modified)
    writer.add_metadata(merged)

    xmp = XmpInformation.create()
    title = merged.get("/Title")
    if title:
        xmp.dc_title = {"x-default": title}
    subject = merged.get("/Subject")
    if subject:
        xmp.dc_description = {"x-default": subject}
    xmp.pdf_producer = merged["/Producer"]
    xmp.xmp_creator_tool = merged.get("/Creator") or PRODUCER
    xmp.xmp_create_date = created.astimezone(UTC)
    xmp.xmp_modify_date = modified.astimezone(UTC)
    xmp.xmp_metadata_date = modified.astimezone(UTC)
    writer.xmp_metadata = xmp


def dated(pdf: bytes, *, created: datetime, info: Mapping[str, Any] | None = None) -> bytes:
    """``pdf`` (one the portal rendered) rewritten with its info dictionary dated
    ``created`` and an XMP packet; the existing /Title, /Subject, /Author and /Creator kept."""
    reader = PdfReader(io.BytesIO(pdf))
    writer = PdfWriter(clone_from=reader)
    existing = {
        key: str(value)
        for key, value in (reader.metadata or {}).items()
        if key in ("/Title", "/Subject", "/Author", "/Creator", "/Keywords")
    }
    apply(writer, {**existing, **(info or {})}, created=created)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
