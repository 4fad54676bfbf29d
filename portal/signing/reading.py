"""The signer's reading view of an authored document: its text as HTML with the recipient's
fields where they sit, made from the same source and merge values as the PDF that was sent.

The text is laid out again (``authoring.laid_out``) to learn where each block and so each
field falls, and shown only when that gives the very bytes that were sent (SHA-256 equal to
the envelope's ``original_sha256``): what the signer reads is what they sign, and a document
that would come out differently today (other fonts, another version of reportlab) falls back
to its page images. The result is kept per process: an envelope's document never changes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from portal.documents import authoring
from portal.documents.authoring import html, rendering
from portal.envelopes.models import Envelope
from portal.extensions import db
from portal.library import queries, variants
from portal.library.models import Field, TemplateVersion

CACHE_SIZE = 256


@dataclass(frozen=True)
class Document:
    """An envelope's authored document, ready to read: its blocks and where they landed."""

    reading: html.Reading
    placed: dict[int, rendering.Placed]
    lang: str  # the language it is written in


@dataclass(frozen=True)
class Section:
    """A block of the text (None: before the first block) and the fields that follow it."""

    html: Markup | None
    fields: tuple[Field, ...]


_cache: OrderedDict[tuple[int, str], Document | None] = OrderedDict()
_lock = threading.Lock()


def document(envelope: Any) -> Document | None:
    """The reading view of the envelope's document, or None (an uploaded PDF, or a text that
    no longer lays out to the bytes sent)."""
    key = (int(envelope.id), str(envelope.document_blob_id))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    found = _made(envelope.id)
    with _lock:
        _cache[key] = found
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return found


def _made(envelope_id: int) -> Document | None:
    row = db.session.get(Envelope, envelope_id)
    version = db.session.get(TemplateVersion, row.template_version_id) if row else None
    if row is None or version is None or version.source_kind != "authored":
        return None
    body, lang, title = variants.authored_source(version, row.document_locale)
    keys = queries.merge_keys(version)
    values = dict(row.merge_data or {})
    try:
        pdf, placed = rendering.laid_out(body, values, keys, title=title, lang=lang)
        tokens = rendering.parse(authoring.merge(body, values, keys))
    except authoring.AuthoringError:
        return None
    if hashlib.sha256(pdf).hexdigest() != row.original_sha256:
        return None
    return Document(html.reading(tokens), placed, lang)


@dataclass(frozen=True)
class View:
    """What the document area shows: sections in reading order; ``truncated`` when the text
    stops early (the PDF has the rest)."""

    sections: tuple[Section, ...]
    truncated: bool
    lang: str


def view(envelope: Any, fields: Sequence[Field]) -> View | None:
    """The reading view for these fields (the recipient's), or None: show the pages."""
    doc = document(envelope)
    if doc is None:
        return None
    after = html.place_fields(doc.reading.blocks, doc.placed, fields)
    out = [Section(None, tuple(after[None]))] if None in after else []
    out += [Section(b.html, tuple(after.get(b.start, ()))) for b in doc.reading.blocks]
    return View(tuple(out), doc.reading.truncated, doc.lang)
