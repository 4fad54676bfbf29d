"""Forms of the console's envelope pages: the send form (typed, or prefilled by a deep link)
and the void confirmation.

The send form's inputs depend on the template (one per merge key and per role), so it is read
by hand into ``SendForm``; its values are checked by ``checks`` when sent, exactly as bulk rows
are. A deep link from a CRM ticket fills the same inputs from the query string and never sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from portal.envelopes import checks
from portal.envelopes.checks import EnvelopeError, RecipientInput, SendOptions
from portal.library import languages, variants
from portal.library import operations as library
from portal.library.models import TemplateVersion

PERSON_PARTS = ("name", "email", "phone", "locale", "auth", "code")
# Role details a merge key can carry ("customer.email" <-> the customer role's email).
MIRRORED_PARTS = ("name", "email", "phone")
# What a deep link may fill: never an access code (a secret in an address) or the form key.
LINKABLE_PARTS = ("name", "email", "phone", "locale", "auth")
OPTION_NAMES = ("message", "cc", "expiry_days", "reminder_every_hours", "reminder_max")
LANGUAGE = "document_language"  # shown when the template has more than one language
_PART_LENGTH = {"name": "name", "email": "email", "phone": "phone"}


def _person(role: str, part: str) -> str:
    return f"r-{role}-{part}"


def mirrored_pairs(version: TemplateVersion) -> list[tuple[str, str]]:
    """(merge input, recipient input) pairs that hold the same value, e.g. the merge field
    ``customer.name`` and the customer role's name."""
    keys = {k.key for k in library.merge_keys(version)}
    return [
        (f"m-{role['key']}.{part}", _person(str(role["key"]), part))
        for role in version.roles
        for part in MIRRORED_PARTS
        if f"{role['key']}.{part}" in keys
    ]


def partners(version: TemplateVersion) -> dict[str, str]:
    """Each mirrored input's partner, both ways (the page's script keeps them in step)."""
    pairs = mirrored_pairs(version)
    return {**dict(pairs), **{person: merge for merge, person in pairs}}


def document_languages(version: TemplateVersion) -> list[tuple[str, str]]:
    """(code, name) of each language the version's document exists in, its own first."""
    return [(code, languages.NAMES[code][0]) for code in variants.available(version)]


def input_lengths(version: TemplateVersion) -> dict[str, int]:
    """The maxlength of every text input of the send form."""
    lengths = {f"m-{k.key}": checks.MAX_LENGTH["merge"] for k in library.merge_keys(version)}
    for role in version.roles:
        for part, kind in _PART_LENGTH.items():
            lengths[_person(str(role["key"]), part)] = checks.MAX_LENGTH[kind]
    for name in ("ticket_id", "ticket_url", "message", "cc"):
        lengths[name] = checks.MAX_LENGTH[name]
    return lengths


@dataclass
class SendForm:
    """The send form's values by input name, for one template version."""

    version: TemplateVersion
    data: dict[str, str] = field(default_factory=dict)
    key: str = ""
    confirm_duplicate: bool = False
    notes: list[str] = field(default_factory=list)  # what a deep link carried that needs a look

    def get(self, name: str, default: str = "") -> str:
        return self.data.get(name, default)

    def _names(self) -> Iterator[str]:
        yield from (f"m-{k.key}" for k in library.merge_keys(self.version))
        for role in self.version.roles:
            yield from (_person(str(role["key"]), part) for part in PERSON_PARTS)
        yield from ("ticket_id", "ticket_url", *OPTION_NAMES, LANGUAGE)

    @classmethod
    def posted(cls, version: TemplateVersion, formdata: MultiDict[str, str]) -> SendForm:
        """What was typed and sent; blanks of mirrored pairs filled from their partner."""
        form = cls(version, key=formdata.get("send_key", ""))
        form.data = {name: formdata.get(name, "") for name in form._names()}
        form.confirm_duplicate = formdata.get("confirm_duplicate") == "yes"
        form.mirror()
        return form

    @classmethod
    def linked(cls, version: TemplateVersion, args: MultiDict[str, str], key: str) -> SendForm:
        """A deep link's values put in the form as if typed (cut to each input's length),
        checked by the send rules so that problems show before anything is sent."""
        form = cls(version, key=key)
        allowed = {f"m-{k.key}" for k in library.merge_keys(version)} | {"ticket_id", "ticket_url"}
        allowed |= {_person(str(r["key"]), p) for r in version.roles for p in LINKABLE_PARTS}
        lengths = input_lengths(version)
        for name in form._names():
            value = args.get(name, "")
            if name not in allowed or not value:
                continue
            limit = lengths.get(name)
            if limit is not None and len(value) > limit:
                form.notes.append(f"{_label(version, name)} was longer than {limit} characters.")
                value = value[:limit]
            form.data[name] = value
        form.mirror()
        form.notes += form.problems()
        return form

    def mirror(self) -> None:
        """Fill each blank of a mirrored pair from the other, so nothing is typed twice."""
        for merge, person in mirrored_pairs(self.version):
            if not self.data.get(merge, "").strip():
                self.data[merge] = self.data.get(person, "")
            elif not self.data.get(person, "").strip():
                self.data[person] = self.data[merge]

    def problems(self) -> list[str]:
        """The send rules' objections to the values given so far (blanks aside)."""
        found = []
        options = checks.choices(self.version)
        for key in library.merge_keys(self.version):
            value = self.get(f"m-{key.key}")
            found += _objection(checks.merge_value, key, value, options.get(key.key))
        default_auth = str((self.version.settings or {}).get("default_auth") or "link")
        for role in self.version.roles:
            email = self.get(_person(str(role["key"]), "email"))
            if email.strip():
                found += _objection(checks.email_address, email, f"The email of the {role['name']}")
            auth = self.get(_person(str(role["key"]), "auth"))
            found += _objection(checks.auth_method, role, auth, default_auth)
        found += _objection(checks.ticket, self.get("ticket_id"), self.get("ticket_url"))
        return found

    def recipients(self) -> list[RecipientInput]:
        return [
            RecipientInput(
                role=str(role["key"]),
                name=self.get(_person(str(role["key"]), "name")),
                email=self.get(_person(str(role["key"]), "email")),
                phone=self.get(_person(str(role["key"]), "phone")),
                locale=self.get(_person(str(role["key"]), "locale")) or "en",
                auth_method=self.get(_person(str(role["key"]), "auth")),
                access_code=self.get(_person(str(role["key"]), "code")),
            )
            for role in self.version.roles
        ]

    def document_language(self) -> str:
        """The language of the document with the values given so far (never raises: a
        language the template lacks is refused when sent)."""
        by_role = {r.role: r.locale for r in self.recipients()}
        people = [(str(r["kind"]), by_role.get(str(r["key"]), "")) for r in self.version.roles]
        chosen = self.get(LANGUAGE)
        if chosen not in variants.available(self.version):
            chosen = ""
        return checks.document_language(self.version, people, chosen)

    def merge_values(self) -> dict[str, str]:
        return {k.key: self.get(f"m-{k.key}") for k in library.merge_keys(self.version)}

    def options(self) -> SendOptions:
        return checks.options(
            self.version,
            message=self.get("message"),
            cc=self.get("cc"),
            expiry_days=self.get("expiry_days"),
            reminder_every_hours=self.get("reminder_every_hours"),
            reminder_max=self.get("reminder_max"),
            language=self.get(LANGUAGE),
        )

    @property
    def options_given(self) -> bool:
        return any(self.get(name).strip() for name in OPTION_NAMES)


def _objection(check: Callable[..., object], *args: Any) -> list[str]:
    try:
        check(*args)
    except EnvelopeError as exc:
        return [str(exc)]
    return []


def _label(version: TemplateVersion, name: str) -> str:
    labels: Mapping[str, str] = {f"m-{k.key}": k.label for k in library.merge_keys(version)}
    if name in labels:
        return labels[name]
    for role in version.roles:
        for part in LINKABLE_PARTS:
            if name == _person(str(role["key"]), part):
                return f"The {part} of the {role['name']}"
    return {"ticket_id": "The ticket reference", "ticket_url": "The ticket link"}.get(name, name)


class VoidForm(FlaskForm):
    """The reason recipients will see; asked on a page of its own (the confirmation)."""

    reason = StringField(
        "Reason (recipients see it)",
        validators=[
            DataRequired(message="Give the reason; recipients will see it."),
            Length(max=500),
        ],
    )
