"""A template version's document in other languages (variants).

An authored document gets a text per language with exactly the merge keys of the base text;
an uploaded PDF gets a PDF per language (through the same hostile-PDF checks) with its own
field placement for exactly the version's fields. Fields themselves (keys, types, roles,
rules) belong to the version and are shared. A variant is saved against the base as it was
then (``base_fingerprint``): when the base changes, the editor shows the variant as out of
date and the version cannot be submitted until it is saved again or removed. Variants are
approved with their version and, like it, never change once submitted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, nodes

from portal import audit, clock, storage
from portal.accounts.models import User
from portal.documents import authoring
from portal.documents.geometry import Rect, clamp_display, display_to_pdf, pdf_to_display
from portal.documents.inspect import PageBox, PdfInfo, inspect_generated_pdf, inspect_pdf
from portal.extensions import db
from portal.library import languages
from portal.library.drafts import _editable, _pages_of
from portal.library.errors import LibraryError
from portal.library.models import Field, TemplateVariant, TemplateVersion
from portal.library.queries import merge_keys
from portal.text import printable

audit.add_labels(
    {
        "template.variant_saved": "Language variant saved",
        "template.variant_removed": "Language variant removed",
        "template.variant_field_placed": "Field placed on a language variant",
        "template.variant_labels_saved": "Field labels saved for a language variant",
    }
)

MISSING = "missing"
OUT_OF_DATE = "out_of_date"
READY = "ready"


@dataclass(frozen=True)
class VariantState:
    """One language the version could have, and where its variant stands."""

    locale: str
    variant: TemplateVariant | None
    status: str  # missing | out_of_date | ready
    unplaced: tuple[str, ...] = ()  # uploaded PDFs: fields with no place on this PDF
    unlabelled: tuple[str, ...] = ()  # fields shown with their base label (a warning only)

    @property
    def label(self) -> str:
        return languages.label(self.locale)


# ------------------------------------------------------------------ reading


def base_fingerprint(version: TemplateVersion) -> str:
    """What the base document is now: its text and merge keys, or its PDF."""
    if version.source_kind == "authored":
        what: Any = {"body": version.authored_body or "", "keys": version.merge_keys or []}
    else:
        what = {"pdf": version.source_sha256 or ""}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def unplaced(version: TemplateVersion, variant: TemplateVariant) -> tuple[str, ...]:
    """Fields of the version an uploaded variant does not place (none for authored text)."""
    if version.source_kind == "authored":
        return ()
    placed = variant.placements or {}
    return tuple(f.key for f in version.fields if f.key not in placed)


def unlabelled(version: TemplateVersion, variant: TemplateVariant) -> tuple[str, ...]:
    """Labelled fields of the version the variant has no label for (they show the base one)."""
    labels = variant.labels or {}
    return tuple(f.label or f.key for f in version.fields if f.label and not labels.get(f.key))


def label_of(field: Field, variant: TemplateVariant | None) -> str:
    """A field's label in the variant's language (its base label when it has none there)."""
    return ((variant.labels or {}).get(field.key) if variant else None) or field.label


def states(version: TemplateVersion) -> list[VariantState]:
    """Every language other than the base: missing, out of date or ready."""
    out = []
    fingerprint = base_fingerprint(version)
    for locale in languages.CODES:
        if locale == languages.BASE:
            continue
        variant = version.variant(locale)
        if variant is None:
            out.append(VariantState(locale, None, MISSING))
            continue
        status = READY if variant.base_fingerprint == fingerprint else OUT_OF_DATE
        out.append(
            VariantState(
                locale, variant, status, unplaced(version, variant), unlabelled(version, variant)
            )
        )
    return out


def available(version: TemplateVersion) -> tuple[str, ...]:
    """The languages the version's document can be sent in, base first."""
    return (languages.BASE, *(v.locale for v in version.variants))


def used_keys(body: str) -> set[str]:
    """The merge keys a document text refers to (``customer.name``, ...)."""
    try:
        tree = Environment(autoescape=True).parse(body)  # parsed only, never rendered
    except TemplateSyntaxError:
        return set()
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Name)):
        parts: list[str] = []
        current: nodes.Node = node
        while isinstance(current, nodes.Getattr):
            parts.append(current.attr)
            current = current.node
        if isinstance(current, nodes.Name):
            parts.append(current.name)
            found.add(".".join(reversed(parts)))
    # Inner parts of a dotted name are found too ("customer" of "customer.name"): keep the longest.
    return {k for k in found if not any(o.startswith(k + ".") for o in found)}


def document_title(version: TemplateVersion, locale: str) -> str:
    """The title an authored document carries in its footer and PDF properties: the
    variant's first heading in another language, the template's name in its own."""
    variant = version.variant(locale)
    heading = _heading(variant.authored_body or "") if variant is not None else ""
    return heading or version.template.name


def _heading(body: str) -> str:
    """The text's first top-level heading ("# ..."), or nothing."""
    return next((ln[2:].strip()[:200] for ln in body.splitlines() if ln.startswith("# ")), "")


def authored_source(version: TemplateVersion, locale: str) -> tuple[str, str, str]:
    """The text an authored document is made from in the given language (its own text when
    it has no such variant): the body, its language and its title."""
    variant = version.variant(locale)
    body = variant.authored_body if variant is not None else version.authored_body
    lang = locale if variant is not None else languages.BASE
    return body or "", lang, document_title(version, lang)


def render(version: TemplateVersion, locale: str, values: Mapping[str, str]) -> bytes:
    """An authored document in the given language (its own text when it has no such
    variant), merged with the values; ``authoring.AuthoringError`` when it cannot be."""
    body, lang, title = authored_source(version, locale)
    return authoring.render_pdf(body, values, merge_keys(version), title=title, lang=lang)


def _listed(keys: Iterable[str]) -> str:
    return ", ".join("{{ " + k + " }}" for k in sorted(keys))


def page_box(variant: TemplateVariant, number: int) -> PageBox:
    """The geometry of one page of an uploaded variant."""
    for page in variant.pages or []:
        if int(page["number"]) == number:
            return PageBox.from_record(page)
    raise LibraryError(f"The {languages.label(variant.locale)} PDF has no page {number}.")


def display_place(variant: TemplateVariant, key: str) -> tuple[int, Rect] | None:
    """Where a field sits on the variant's PDF, in display points (for the placement form)."""
    at = (variant.placements or {}).get(key)
    if at is None:
        return None
    page = int(at["page"])
    rect = Rect(float(at["x"]), float(at["y"]), float(at["w"]), float(at["h"]))
    return page, pdf_to_display(page_box(variant, page), rect)


# ------------------------------------------------------------------ changing


def _language(version: TemplateVersion, locale: str) -> str:
    _editable(version)
    if locale not in languages.NAMES:
        raise LibraryError("Choose a language from the list.")
    if locale == languages.BASE:
        raise LibraryError(
            f"{languages.label(locale)} is the template's own language; edit the document itself."
        )
    return locale


def _variant(version: TemplateVersion, locale: str, by: User) -> TemplateVariant:
    variant = version.variant(locale)
    if variant is None:
        variant = TemplateVariant(locale=locale, pages=[], placements={})
        version.variants.append(variant)
    variant.base_fingerprint = base_fingerprint(version)
    variant.saved_by_id = by.id
    variant.saved_at = clock.utcnow()
    return variant


def _attach(variant: TemplateVariant, data: bytes, info: PdfInfo, filename: str) -> None:
    if info.sha256 != variant.source_sha256:
        variant.source_blob_id = storage.put(data, kind="template_source")
    variant.source_filename = filename[:255] or None
    variant.source_sha256 = info.sha256
    variant.page_count = info.page_count
    variant.pages = _pages_of(info)


def check_text(version: TemplateVersion, locale: str, body: str) -> bytes:
    """The variant text rendered with sample values, or ``LibraryError`` saying what is wrong."""
    name = languages.label(locale)
    if version.source_kind != "authored":
        raise LibraryError("This template is an uploaded PDF; upload a PDF for each language.")
    if not version.source_blob_id:
        raise LibraryError(f"Fix the {languages.label(languages.BASE)} text before adding {name}.")
    if not body.strip():
        raise LibraryError(f"Write the {name} text.")
    known = merge_keys(version)
    problems = authoring.check_body(body, known)
    if problems:
        raise LibraryError(f"The {name} text cannot be used: {problems[0].message}")
    base, mine = used_keys(version.authored_body or ""), used_keys(body)
    if mine != base:
        parts = []
        if base - mine:
            parts.append(f"it leaves out {_listed(base - mine)}")
        if mine - base:
            parts.append(f"it uses {_listed(mine - base)}, which the base text does not")
        raise LibraryError(
            f"The {name} text must use the same merge fields as the "
            f"{languages.label(languages.BASE)} text: {' and '.join(parts)}."
        )
    title = _heading(body) or version.template.name
    samples = authoring.sample_values(known)
    pdf = authoring.render_pdf(body, samples, known, title=title, lang=locale)
    pages = inspect_generated_pdf(pdf).page_count
    if pages != version.page_count:
        raise LibraryError(
            f"The {name} text fills {pages} page{'s' if pages != 1 else ''} and the "
            f"{languages.label(languages.BASE)} text {version.page_count}; the fields sit on the "
            "same pages in every language, so shorten or lengthen it to match."
        )
    return pdf


def save_text(version: TemplateVersion, locale: str, body: str, by: User) -> TemplateVariant:
    """Save an authored document's text in another language (checked, then rendered)."""
    locale = _language(version, locale)
    pdf = check_text(version, locale, body)
    variant = _variant(version, locale, by)
    variant.authored_body = body
    _attach(variant, pdf, inspect_generated_pdf(pdf), f"{version.template.name} ({locale}).pdf")
    db.session.flush()
    audit.record(
        "template.variant_saved",
        actor=by,
        subject=version,
        data={"language": locale, "sha256": variant.source_sha256, "source": "authored"},
    )
    db.session.commit()
    return variant


def _default_place(version: TemplateVersion, field: Field, variant: TemplateVariant) -> dict:
    """The base field's place, moved onto the variant's pages (clamped to the page)."""
    page = min(field.page, variant.page_count)
    base = PageBox.from_record(version.page(field.page) or variant.pages[page - 1])
    display = pdf_to_display(base, Rect(field.x, field.y, field.w, field.h))
    box = page_box(variant, page)
    pdf = display_to_pdf(box, clamp_display(box, display))
    return {"page": page, "x": pdf.x, "y": pdf.y, "w": pdf.w, "h": pdf.h}


def save_pdf(
    version: TemplateVersion, locale: str, data: bytes, filename: str, by: User
) -> TemplateVariant:
    """Upload a PDF of the document in another language; its fields start where the base's
    are (kept where they were placed before, when the PDF is replaced)."""
    locale = _language(version, locale)
    if version.source_kind != "pdf":
        raise LibraryError("This template is written in the portal; write the text instead.")
    info = inspect_pdf(data, filename)
    variant = _variant(version, locale, by)
    _attach(variant, data, info, filename)
    placements = {}
    for field in version.fields:
        at = (variant.placements or {}).get(field.key)
        if at is None or int(at["page"]) > info.page_count:
            at = _default_place(version, field, variant)
        placements[field.key] = at
    variant.placements = placements
    db.session.flush()
    audit.record(
        "template.variant_saved",
        actor=by,
        subject=version,
        data={"language": locale, "sha256": info.sha256, "pages": info.page_count,
              "file": filename[:200], "source": "pdf"},
    )  # fmt: skip
    db.session.commit()
    return variant


def place(version: TemplateVersion, locale: str, key: str, page: int, at: Rect, by: User) -> None:
    """Move a field on an uploaded variant (``at`` in display points from the top-left)."""
    locale = _language(version, locale)
    variant = version.variant(locale)
    if variant is None or version.source_kind != "pdf":
        raise LibraryError(f"Upload the {languages.label(locale)} PDF first.")
    if key not in {f.key for f in version.fields}:
        raise LibraryError(f"This version has no field {key!r}.")
    box = page_box(variant, page)
    pdf = display_to_pdf(box, clamp_display(box, at))
    variant.placements = {
        **(variant.placements or {}),
        key: {"page": page, "x": pdf.x, "y": pdf.y, "w": pdf.w, "h": pdf.h},
    }
    audit.record(
        "template.variant_field_placed",
        actor=by,
        subject=version,
        data={"language": locale, "field": key, "page": page},
    )
    db.session.commit()


MAX_LABEL = 200  # as Field.label


def save_labels(
    version: TemplateVersion, locale: str, given: Mapping[str, str], by: User
) -> TemplateVariant:
    """Save the fields' labels in a variant's language (an empty one shows the base label)."""
    locale = _language(version, locale)
    variant = version.variant(locale)
    name = languages.label(locale)
    if variant is None:
        raise LibraryError(f"Save the {name} document first, then label its fields.")
    labels = {}
    for field in version.fields:
        text = " ".join(printable(str(given.get(field.key, ""))).split())
        if len(text) > MAX_LABEL:
            raise LibraryError(
                f"The {name} label of {field.label or field.key} is longer than "
                f"{MAX_LABEL} characters."
            )
        if text:
            labels[field.key] = text
    variant.labels = labels
    audit.record(
        "template.variant_labels_saved",
        actor=by,
        subject=version,
        data={"language": locale, "labelled": sorted(labels)},
    )
    db.session.commit()
    return variant


def remove(version: TemplateVersion, locale: str, by: User) -> None:
    """Remove a language from a draft."""
    locale = _language(version, locale)
    variant = version.variant(locale)
    if variant is None:
        raise LibraryError(f"This version has no {languages.label(locale)} document.")
    version.variants.remove(variant)
    audit.record("template.variant_removed", actor=by, subject=version, data={"language": locale})
    db.session.commit()


def ensure_complete(version: TemplateVersion) -> None:
    """Refuse to submit a version whose variants do not match its base any more."""
    for state in states(version):
        if state.status == OUT_OF_DATE:
            raise LibraryError(
                f"The {state.label} document is out of date: the "
                f"{languages.label(languages.BASE)} document changed after it was saved. "
                "Save it again (or remove it) before submitting."
            )
        if state.unplaced:
            raise LibraryError(
                f"Place {', '.join(state.unplaced)} on the {state.label} PDF before submitting."
            )
        keys = {f.key for f in version.fields}
        if state.variant is not None and set(state.variant.labels or {}) - keys:
            state.variant.labels = {
                k: v for k, v in (state.variant.labels or {}).items() if k in keys
            }  # labels of fields removed since go
        if state.variant is not None and version.source_kind == "pdf":
            extra = set(state.variant.placements or {}) - {f.key for f in version.fields}
            if extra:  # fields removed since: their places go, the rest stay
                state.variant.placements = {
                    k: v for k, v in state.variant.placements.items() if k not in extra
                }


def copy_to(draft: TemplateVersion, latest: TemplateVersion) -> None:
    """The next draft starts with the latest version's variants (blobs are shared)."""
    for variant in latest.variants:
        draft.variants.append(
            TemplateVariant(
                locale=variant.locale,
                authored_body=variant.authored_body,
                source_blob_id=variant.source_blob_id,
                source_filename=variant.source_filename,
                source_sha256=variant.source_sha256,
                page_count=variant.page_count,
                pages=[dict(p) for p in variant.pages],
                placements={k: dict(v) for k, v in (variant.placements or {}).items()},
                labels=dict(variant.labels or {}),
                base_fingerprint=variant.base_fingerprint,
                saved_by_id=variant.saved_by_id,
                saved_at=variant.saved_at,
            )
        )
