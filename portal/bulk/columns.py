"""The columns a template version needs in a bulk file, its CSV template, and header matching.

One column per merge key (headed by the key, ``order.number``), per role the recipient's name,
email, phone, language and, for signers and approvers, authentication and access code
(``Customer: email``), and an optional ticket reference and link. A role's name, email and
phone may be left out when the template has merge keys for them (``customer.name``...): the
merge value is used, and the other way round, so nothing is typed twice.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from portal.envelopes import checks
from portal.library import operations as library
from portal.library.models import TemplateVersion

AUTH_NAMES = {"link": "link", "email_otp": "email code", "access_code": "access code"}
LANGUAGES = {"en": "English", "es": "Spanish"}
PERSON_FIELDS = ("name", "email", "phone", "language", "auth", "access_code")
FIELD_HEADINGS = {
    "name": "name",
    "email": "email",
    "phone": "phone",
    "language": "language",
    "auth": "authentication",
    "access_code": "access code",
}


@dataclass(frozen=True)
class Column:
    """A column bulk send understands for this template version."""

    key: str  # "merge:order.number", "role:customer:email", "ticket_id", "ticket_url"
    heading: str  # written in the CSV template, matched against the file's header
    label: str  # for people
    required: bool
    hint: str  # the format, for the template's explanation row
    aliases: tuple[str, ...] = ()


def _fold(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


def fallback_key(version: TemplateVersion, role_key: str, part: str) -> str | None:
    """The merge key that stands in for a role's name, email or phone, if the template has one."""
    wanted = f"{role_key}.{part}"
    return wanted if any(k.key == wanted for k in library.merge_keys(version)) else None


def columns_for(version: TemplateVersion) -> list[Column]:
    """Every column, in the CSV template's order."""
    default_auth = str(version.settings.get("default_auth") or "link")
    allowed = checks.AUTH_ALLOWED.get(default_auth, ("link",))
    out = [
        Column(f"merge:{k.key}", k.key, k.label, True, f"{k.label}; e.g. {k.sample}", (k.label,))
        for k in library.merge_keys(version)
    ]
    for role in version.roles:
        key, name = str(role["key"]), str(role["name"])
        parts = PERSON_FIELDS if role["kind"] != "cc" else ("name", "email", "phone", "language")
        for part in parts:
            covered = part in ("name", "email", "phone") and fallback_key(version, key, part)
            hint = {
                "name": "full name",
                "email": "email address",
                "phone": "optional, e.g. +44 20 7946 0000",
                "language": "en or es; empty: en",
                "auth": f"{' / '.join(AUTH_NAMES[a] for a in allowed)}; "
                f"empty: {AUTH_NAMES[default_auth]}",
                "access_code": f"for access code: at least {checks.MIN_ACCESS_CODE} characters",
            }[part]
            if covered:
                hint += f"; empty: {covered}"
            out.append(
                Column(
                    f"role:{key}:{part}",
                    f"{name}: {FIELD_HEADINGS[part]}",
                    f"{name}'s {FIELD_HEADINGS[part]}",
                    part in ("name", "email") and not covered,
                    hint,
                    (f"{key}: {FIELD_HEADINGS[part]}", f"{key} {part}", f"{name} {part}"),
                )
            )
    out.append(Column("ticket_id", "Ticket", "Ticket", False, "optional ticket or case reference"))
    out.append(Column("ticket_url", "Ticket link", "Ticket link", False, "optional https:// link"))
    return out


def template_csv(version: TemplateVersion) -> bytes:
    """The CSV template: an explanation row starting with ``#``, then the header (UTF-8, BOM)."""
    columns = columns_for(version)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    hints = [f"{'required' if c.required else 'optional'}: {c.hint}" for c in columns]
    hints[0] = (
        f"# {version.template.name} v{version.number}: one row per customer below the "
        f"headings, up to 10,000 rows; delete this line or keep it. {hints[0]}"
    )
    writer.writerow(hints)
    writer.writerow([c.heading for c in columns])
    return b"\xef\xbb\xbf" + buffer.getvalue().encode()


def auto_mapping(columns: Sequence[Column], header: Sequence[str]) -> dict[str, int]:
    """Each column's index in the file's header, matched by heading or alias (case, spaces
    and underscores aside); the first match wins."""
    positions: dict[str, int] = {}
    for index, heading in enumerate(header):
        if heading.strip():
            positions.setdefault(_fold(heading), index)
    mapping = {}
    for column in columns:
        for name in (column.heading, *column.aliases):
            if _fold(name) in positions:
                mapping[column.key] = positions[_fold(name)]
                break
    return mapping


def clean_mapping(
    columns: Sequence[Column], header: Sequence[str], chosen: Mapping[str, Any]
) -> dict[str, int]:
    """A mapping chosen by hand (column key -> header index as text; empty: not in the file)."""
    keys = {c.key for c in columns}
    mapping = {}
    for key, value in chosen.items():
        text = str(value or "").strip()
        if key in keys and text.isdigit() and int(text) < len(header):
            mapping[key] = int(text)
    return mapping


def missing(columns: Sequence[Column], mapping: Mapping[str, int]) -> list[Column]:
    """Required columns the mapping has no file column for."""
    return [c for c in columns if c.required and c.key not in mapping]


def unused(header: Sequence[str], mapping: Mapping[str, int]) -> list[str]:
    """Headings of the file's columns nothing is read from."""
    used = set(mapping.values())
    return [h for i, h in enumerate(header) if h.strip() and i not in used]


# How the API names a recipient's details in a JSON row (``rows_csv``): its keys -> parts.
JSON_PERSON_FIELDS = {
    "name": "name",
    "email": "email",
    "phone": "phone",
    "locale": "language",
    "auth_method": "auth",
    "access_code": "access_code",
}


class RowsProblem(ValueError):
    """JSON rows that name what the template does not have; the message says which."""


def _json_cells(number: int, row: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """(column key, value, where the row says it) for each value a JSON row gives."""
    given = [
        (f"merge:{key}", value, f"rows[{number}].merge_data.{key}")
        for key, value in (row.get("merge_data") or {}).items()
    ]
    for person in row.get("recipients") or []:
        role = str(person.get("role") or "")
        given += [
            (f"role:{role}:{part}", person[name], f"rows[{number}].recipients[{role}].{name}")
            for name, part in JSON_PERSON_FIELDS.items()
            if person.get(name) not in (None, "")
        ]
    given += [(key, row.get(key), f"rows[{number}].{key}") for key in ("ticket_id", "ticket_url")]
    return given


def rows_csv(version: TemplateVersion, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """JSON rows (``merge_data``, ``recipients`` with their ``role``, ``ticket_id``,
    ``ticket_url``) as the CSV file bulk send reads (the header, then row ``i`` as the file's
    row ``i + 2``), so that they are read, checked, kept and sent as an uploaded file is.
    ``RowsProblem`` names the merge keys and roles the template does not have."""
    columns = columns_for(version)
    index = {c.key: i for i, c in enumerate(columns)}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.heading for c in columns])
    unknown: list[str] = []
    for number, row in enumerate(rows):
        cells = [""] * len(columns)
        for key, value, where in _json_cells(number, row):
            if key not in index:
                unknown.append(where)
            elif value is not None:
                cells[index[key]] = str(value)
        writer.writerow(cells)
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise RowsProblem(
            f"Not in template {version.template.name} v{version.number}: "
            f"{', '.join(unknown[:10])}{more}. GET /api/v1/templates/<id> lists its merge keys "
            "and roles."
        )
    return buffer.getvalue().encode()
