"""Checking every row of a bulk file with the send form's rules, before anything is sent.

Each problem names the row (as a spreadsheet numbers it) and the column. The rules are the send
form's, from the same functions (``portal.envelopes.checks``): merge values on one line,
required, not too long, and among the options of a choice field they fill; names required,
emails valid, an authentication method never weaker than the template's default, an access
code of ``MIN_ACCESS_CODE`` characters, a ticket link that is a web address. A row that repeats
an earlier one, or a signer's email already used in an earlier row, is a problem too (one
envelope per customer in a batch). When the batch is sent every row is checked again, whole,
as its envelope is made (``creating``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from portal import text
from portal.bulk.columns import AUTH_NAMES, LANGUAGES, Column, fallback_key
from portal.bulk.reading import Table, column_letter
from portal.envelopes import checks
from portal.envelopes.checks import EnvelopeError
from portal.library import operations as library
from portal.library.models import TemplateVersion

_AUTH_BY_NAME = {
    **{_name: _key for _key, _name in AUTH_NAMES.items()},
    **{_key.replace("_", " "): _key for _key in AUTH_NAMES},
    "email otp": "email_otp",
    "code by email": "email_otp",
}
_LOCALE_BY_NAME = {
    **{code: code for code in LANGUAGES},
    **{name.casefold(): code for code, name in LANGUAGES.items()},
    "español": "es",
    "espanol": "es",
}


@dataclass
class CheckedRow:
    """One row as it will be sent, and its problems (empty: ready)."""

    number: int
    problems: list[dict[str, str]] = field(default_factory=list)
    merge_data: dict[str, str] = field(default_factory=dict)
    people: list[dict[str, Any]] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)  # role -> access code (never stored)
    ticket_id: str = ""
    ticket_url: str = ""

    def problem(self, column: str, message: str) -> None:
        self.problems.append({"column": column, "message": message})

    @property
    def signer(self) -> dict[str, Any] | None:
        return next((p for p in self.people if p["kind"] == "signer"), None)


class RowChecker:
    """Checks rows of one file against one template version with one column mapping."""

    def __init__(
        self, version: TemplateVersion, columns: Sequence[Column], mapping: Mapping[str, int]
    ) -> None:
        self.version = version
        self.columns = {c.key: c for c in columns}
        self.mapping = dict(mapping)
        self.width = 0
        self.choices = checks.choices(version)
        self.keys = {k.key: k for k in library.merge_keys(version)}
        self.default_auth = str(version.settings.get("default_auth") or "link")
        self.allowed = checks.AUTH_ALLOWED.get(self.default_auth, ("link",))
        self.seen_rows: dict[tuple[str, ...], int] = {}
        self.seen_emails: dict[str, int] = {}

    def heading(self, key: str) -> str:
        return self.columns[key].heading

    def _cell(self, cells: Sequence[str], key: str) -> str:
        index = self.mapping.get(key)
        return cells[index] if index is not None and index < len(cells) else ""

    def check(self, number: int, cells: Sequence[str]) -> CheckedRow:
        row = CheckedRow(number)
        extra = [i for i in range(self.width, len(cells)) if cells[i].strip()]
        if extra:
            row.problem(
                column_letter(extra[0]),
                f"This row has {len(cells)} cells but the header has {self.width} columns: "
                f"column {column_letter(extra[0])} onwards has no heading.",
            )
        for key in self.mapping:
            if text.first_refused(self._cell(cells, key)):
                row.problem(
                    self.heading(key),
                    "Contains an invisible control character; retype the value.",
                )
        self._merge_values(row, cells)
        for role in self.version.roles:
            self._person(row, cells, role)
        try:
            reference, url = checks.ticket(
                self._cell(cells, "ticket_id"), self._cell(cells, "ticket_url")
            )
        except EnvelopeError as exc:
            row.problem("Ticket", str(exc))
        else:
            row.ticket_id, row.ticket_url = reference or "", url or ""
        self._repeats(row)
        return row

    def _merge_values(self, row: CheckedRow, cells: Sequence[str]) -> None:
        for key, column in self.columns.items():
            if not key.startswith("merge:"):
                continue
            merge_key = key.removeprefix("merge:")
            value = self._cell(cells, key)
            if not value.strip():  # the recipient's own column stands in (customer.name, ...)
                role_key, _, part = merge_key.rpartition(".")
                value = self._cell(cells, f"role:{role_key}:{part}")
            try:
                clean = checks.merge_value(self.keys[merge_key], value, self.choices.get(merge_key))
            except EnvelopeError as exc:
                row.problem(column.heading, str(exc))
                clean = checks.one_line(value)
            if not clean:
                row.problem(column.heading, f"Fill in {column.label}.")
            row.merge_data[merge_key] = clean

    def _value(self, row: CheckedRow, cells: Sequence[str], role_key: str, part: str) -> str:
        value = checks.one_line(self._cell(cells, f"role:{role_key}:{part}"))
        stand_in = fallback_key(self.version, role_key, part) if not value else None
        if stand_in:
            value = checks.one_line(self._cell(cells, f"merge:{stand_in}"))
        if len(value) > checks.MAX_LENGTH[part]:
            row.problem(
                self.heading(f"role:{role_key}:{part}"),
                f"Longer than {checks.MAX_LENGTH[part]} characters.",
            )
        return value

    def _person(self, row: CheckedRow, cells: Sequence[str], role: Mapping[str, Any]) -> None:
        key, name, kind = str(role["key"]), str(role["name"]), str(role["kind"])
        person: dict[str, Any] = {"role": key, "kind": kind}
        person["name"] = self._value(row, cells, key, "name")
        if not person["name"]:
            row.problem(self.heading(f"role:{key}:name"), f"Enter the name of the {name}.")
        email = self._value(row, cells, key, "email")
        try:
            email = checks.email_address(email, f"The email of the {name}") if email else ""
        except EnvelopeError as exc:
            row.problem(self.heading(f"role:{key}:email"), str(exc))
        if not email:
            row.problem(self.heading(f"role:{key}:email"), f"Enter the email of the {name}.")
        person["email"] = email
        person["phone"] = self._value(row, cells, key, "phone")
        language = checks.one_line(self._cell(cells, f"role:{key}:language")).casefold()
        person["locale"] = _LOCALE_BY_NAME.get(language or "en", "")
        if not person["locale"]:
            person["locale"] = "en"
            row.problem(self.heading(f"role:{key}:language"), "Use en or es.")
        person["auth"] = self.default_auth if kind != "cc" else "link"
        if kind != "cc":
            self._auth(row, cells, person, name)
        row.people.append(person)

    def _auth(
        self, row: CheckedRow, cells: Sequence[str], person: dict[str, Any], name: str
    ) -> None:
        key = person["role"]
        given = checks.one_line(self._cell(cells, f"role:{key}:auth")).casefold()
        if given:
            auth = _AUTH_BY_NAME.get(given, given)
            if auth not in self.allowed:
                choices = " or ".join(AUTH_NAMES[a] for a in self.allowed)
                row.problem(
                    self.heading(f"role:{key}:auth"),
                    f"This template needs at least {AUTH_NAMES[self.default_auth]} for the "
                    f"{name}: use {choices}.",
                )
                return
            person["auth"] = auth
        if person["auth"] == "access_code":
            code = self._cell(cells, f"role:{key}:access_code").strip()
            if len(code) < checks.MIN_ACCESS_CODE:
                row.problem(
                    self.heading(f"role:{key}:access_code")
                    if f"role:{key}:access_code" in self.columns
                    else self.heading(f"role:{key}:auth"),
                    f"Give the {name} an access code of at least {checks.MIN_ACCESS_CODE} "
                    "characters.",
                )
            row.codes[key] = code

    def _repeats(self, row: CheckedRow) -> None:
        whole = (
            *(row.merge_data[k] for k in sorted(row.merge_data)),
            *(f"{p['name']}\x1f{p['email'].casefold()}" for p in row.people),
            row.ticket_id,
        )
        first = self.seen_rows.setdefault(whole, row.number)
        if first != row.number:
            row.problem("(whole row)", f"This row repeats row {first}.")
            return
        for person in row.people:
            if person["kind"] != "signer" or not person["email"]:
                continue
            email = person["email"].casefold()
            earlier = self.seen_emails.setdefault(email, row.number)
            if earlier != row.number:
                row.problem(
                    self.heading(f"role:{person['role']}:email"),
                    f"{person['email']} is also in row {earlier}; a batch sends one envelope "
                    "per customer.",
                )


def check_table(
    version: TemplateVersion, columns: Sequence[Column], mapping: Mapping[str, int], table: Table
) -> list[CheckedRow]:
    """Every row of the file, checked."""
    checker = RowChecker(version, columns, mapping)
    checker.width = len(table.header)
    return [checker.check(number, cells) for number, cells in table.rows]
