"""What an agent (or a bulk row, or a deep link) gives for one sending, checked by one set of rules.

Each check returns the clean value or raises ``EnvelopeError`` with a message a person can act
on; nothing here writes. The send form, deep links from a CRM and bulk send all use these, so
a value is accepted or refused the same way wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from portal.accounts import credentials
from portal.documents.authoring import MergeKey
from portal.envelopes.models import Recipient, RecipientStatus
from portal.library import languages, variants
from portal.library import operations as library
from portal.library.models import DEFAULT_SETTINGS, TemplateVersion

LOCALES = languages.CODES
# What each template default allows an agent to choose (never weaker than the default).
AUTH_ALLOWED = {
    "link": ("link", "email_otp", "access_code"),
    "email_otp": ("email_otp", "access_code"),
    "access_code": ("access_code",),
}
MIN_ACCESS_CODE = 4
# Longest values accepted (the send form's inputs carry the same maxlength).
MAX_LENGTH = {
    "merge": 500,
    "name": 200,
    "email": 254,
    "phone": 40,
    "ticket_id": 120,
    "ticket_url": 500,
    "message": 1000,
    "cc": 2000,
}
MAX_CC = 10
CHOICE_TYPES = ("select", "radio")
# Extra cc recipients given at send time (a role key can never contain "-").
CC_ROLE = "cc-extra"


class EnvelopeError(ValueError):
    """A request that cannot be carried out; nothing was changed and the message says why."""


@dataclass(frozen=True)
class RecipientInput:
    """What the agent enters for one role."""

    role: str
    name: str
    email: str
    phone: str = ""
    locale: str = "en"
    auth_method: str = ""
    access_code: str = ""


@dataclass(frozen=True)
class SendOptions:
    """Send-time choices on top of the template's settings (``None``: the template's)."""

    message: str = ""
    cc: tuple[str, ...] = ()
    expiry_days: int | None = None
    reminder_every_hours: int | None = None
    reminder_max: int | None = None
    language: str = ""  # the document's language ("": the first signer's, when the template has it)


@dataclass(frozen=True)
class Range:
    """The values an agent may choose for one setting, and the template's own."""

    low: int
    high: int
    default: int


def one_line(value: str) -> str:
    """Runs of spaces, tabs and line breaks become one space; the ends are trimmed."""
    return " ".join(str(value or "").split())


def _bounded(value: str, what: str, label: str) -> str:
    if len(value) > MAX_LENGTH[what]:
        raise EnvelopeError(f"{label} is longer than {MAX_LENGTH[what]} characters.")
    return value


def choices(version: TemplateVersion) -> dict[str, list[str]]:
    """Merge keys that fill a choice field (select or radio) of the template, with its
    options: their values must be one of them, and the send form shows a select."""
    found: dict[str, list[str]] = {}
    for field in version.fields:
        if field.type in CHOICE_TYPES and field.merge_key and field.options:
            found.setdefault(field.merge_key, [str(o) for o in field.options])
    return found


def merge_value(key: MergeKey, value: Any, options: list[str] | None = None) -> str:
    """One merge value as it goes into the document (empty when not given)."""
    clean = _bounded(one_line(value), "merge", key.label)
    if clean and options and clean not in options:
        raise EnvelopeError(f"{key.label} must be one of: {', '.join(options)}.")
    return clean


def merge_data(version: TemplateVersion, values: Mapping[str, Any]) -> dict[str, str]:
    """Every merge value of the version, checked; all are required."""
    options = choices(version)
    clean: dict[str, str] = {}
    missing = []
    for key in library.merge_keys(version):
        clean[key.key] = merge_value(key, values.get(key.key), options.get(key.key))
        if not clean[key.key]:
            missing.append(key.label)
    if missing:
        raise EnvelopeError(f"Fill in {', '.join(missing)}.")
    return clean


def email_address(value: str, label: str) -> str:
    """A syntactically valid address, normalised (the domain is not looked up)."""
    text = _bounded(str(value or "").strip(), "email", label)
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise EnvelopeError(f"{label} is not valid: {exc}") from exc


def auth_method(role: Mapping[str, Any], given: str, default_auth: str) -> str:
    """How the role's recipient proves who they are: never weaker than the template's."""
    if role["kind"] == "cc":
        return "link"
    auth = given or default_auth
    if auth not in AUTH_ALLOWED.get(default_auth, ("link",)):
        raise EnvelopeError(
            f"This template needs at least {default_auth.replace('_', ' ')} for the {role['name']}."
        )
    return auth


def recipient(role: Mapping[str, Any], given: RecipientInput, default_auth: str) -> Recipient:
    """The recipient for one role of the template, checked (not yet added to a session)."""
    name = _bounded(one_line(given.name), "name", f"The name of the {role['name']}")
    if not name:
        raise EnvelopeError(f"Enter the name of the {role['name']}.")
    email = email_address(given.email, f"The email of the {role['name']}")
    auth = auth_method(role, given.auth_method, default_auth)
    phone = _bounded(one_line(given.phone), "phone", f"The phone of the {role['name']}")
    person = Recipient(
        role=str(role["key"]),
        role_name=str(role["name"]),
        kind=str(role["kind"]),
        order=int(role["order"]),
        name=name,
        email=email,
        phone=phone or None,
        locale=given.locale if given.locale in LOCALES else "en",
        auth_method=auth,
        status=RecipientStatus.WAITING.value,
    )
    if auth == "access_code":
        code = given.access_code.strip()
        if len(code) < MIN_ACCESS_CODE:
            raise EnvelopeError(
                f"Give the {role['name']} an access code of at least {MIN_ACCESS_CODE} characters."
            )
        person.access_code_hash = credentials.hash_password(code)
    return person


def recipients(
    version: TemplateVersion, given: list[RecipientInput] | tuple[RecipientInput, ...]
) -> list[Recipient]:
    """One checked recipient per role of the version, in the template's order."""
    by_role = {r.role: r for r in given}
    default_auth = str((version.settings or {}).get("default_auth") or "link")
    people = []
    for role in version.roles:
        if role["key"] not in by_role:
            raise EnvelopeError(f"Enter the {role['name']}.")
        people.append(recipient(role, by_role[role["key"]], default_auth))
    return people


def document_language(
    version: TemplateVersion, people: Sequence[tuple[str, str]], chosen: str = ""
) -> str:
    """The language of the one document every recipient signs, from the recipients' (kind,
    locale) in the template's order: the one chosen (which the template must have), else
    the first signer's when the template has it, else the template's own."""
    have = variants.available(version)
    if chosen:
        if chosen not in have:
            raise EnvelopeError(
                f"This template has no {languages.label(chosen)} document. Choose one of: "
                f"{', '.join(languages.label(code) for code in have)}."
            )
        return chosen
    signers = [locale for kind, locale in people if kind == "signer"]
    first = signers[0] if signers else languages.BASE
    return first if first in have else languages.BASE


def ticket(ticket_id: str, ticket_url: str) -> tuple[str | None, str | None]:
    """The ticket or CRM reference and its link (a web address), either may be empty."""
    reference = _bounded(one_line(ticket_id), "ticket_id", "The ticket reference")
    url = _bounded(str(ticket_url or "").strip(), "ticket_url", "The ticket link")
    if url:
        parts = urlsplit(url)
        if (
            parts.scheme not in ("https", "http")
            or not parts.netloc
            or any(c.isspace() for c in url)
        ):
            raise EnvelopeError("The ticket link must start with https://.")
    return reference or None, url or None


def ranges(version: TemplateVersion) -> dict[str, Range]:
    """What an agent may choose at send time: the template's settings are the outer bound.

    A link may expire sooner than the template says, never later; reminders may come less
    often and fewer of them, never more.
    """
    settings = {**DEFAULT_SETTINGS, **(version.settings or {})}
    expiry = int(settings["expiry_days"])
    every = int(settings["reminder_every_hours"])
    most = int(settings["reminder_max"])
    return {
        "expiry_days": Range(1, expiry, expiry),
        "reminder_every_hours": Range(every, 720, every),
        "reminder_max": Range(0, most, most),
    }


_OPTION_LABELS = {
    "expiry_days": ("Expiry", "days"),
    "reminder_every_hours": ("Reminders", "hours apart"),
    "reminder_max": ("The number of reminders", ""),
}


def _setting(version: TemplateVersion, name: str, value: Any) -> int | None:
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    label, unit = _OPTION_LABELS[name]
    allowed = ranges(version)[name]
    try:
        number = int(text)
    except ValueError as exc:
        raise EnvelopeError(f"{label} is a whole number.") from exc
    if not allowed.low <= number <= allowed.high:
        raise EnvelopeError(
            f"{label} must be between {allowed.low} and {allowed.high}{' ' + unit if unit else ''}"
            " for this template."
        )
    return number


def cc_addresses(value: str) -> tuple[str, ...]:
    """Addresses that get the signed copy, separated by commas, semicolons or lines."""
    text = _bounded(str(value or ""), "cc", "The copy list")
    found: list[str] = []
    for part in text.replace(";", ",").replace("\n", ",").split(","):
        if part.strip():
            address = email_address(part, f"The copy address {part.strip()!r}")
            if address.lower() not in (a.lower() for a in found):
                found.append(address)
    if len(found) > MAX_CC:
        raise EnvelopeError(f"Send copies to at most {MAX_CC} addresses.")
    return tuple(found)


def personal_message(value: str) -> str:
    """The agent's note to the recipients: plain text, line breaks kept, trimmed."""
    lines = [" ".join(line.split()) for line in str(value or "").splitlines()]
    text = "\n".join(lines).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return _bounded(text, "message", "The personal message")


def options(
    version: TemplateVersion,
    *,
    message: str = "",
    cc: str = "",
    expiry_days: Any = None,
    reminder_every_hours: Any = None,
    reminder_max: Any = None,
    language: str = "",
) -> SendOptions:
    """Send-time options from what was typed (empty: the template's setting)."""
    chosen = str(language or "").strip()
    if chosen and chosen not in variants.available(version):
        raise EnvelopeError(f"This template has no {languages.label(chosen)} document.")
    return SendOptions(
        language=chosen,
        message=personal_message(message),
        cc=cc_addresses(cc),
        expiry_days=_setting(version, "expiry_days", expiry_days),
        reminder_every_hours=_setting(version, "reminder_every_hours", reminder_every_hours),
        reminder_max=_setting(version, "reminder_max", reminder_max),
    )


def cc_recipients(addresses: tuple[str, ...], after: int) -> list[Recipient]:
    """Recipients of the signed copy added at send time, after the template's roles."""
    return [
        Recipient(
            role=CC_ROLE,
            role_name="Copy",
            kind="cc",
            order=after + 1,
            name=address,
            email=address,
            locale="en",
            auth_method="link",
            status=RecipientStatus.WAITING.value,
        )
        for address in addresses
    ]
