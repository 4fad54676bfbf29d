"""Field rules shared by the editor and (later) the signing pages: conditions and validation.

A condition makes a field shown, and required, only when another field has a given value:
``{"field": "refund_method", "equals": "bank"}`` (or ``"in": ["a", "b"]``). Validation is a
small dict: ``pattern``, ``min``/``max`` (numbers and dates), ``min_length``/``max_length``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from flask_babel import gettext as _


class FieldLike(Protocol):
    key: str
    type: str
    required: bool
    label: str
    options: list[str]
    validation: dict[str, Any]
    condition: dict[str, Any] | None


def _as_text(value: Any) -> str:
    if value is True:
        return "true"
    if value in (None, False):
        return ""
    return str(value)


def condition_met(condition: Mapping[str, Any] | None, values: Mapping[str, Any]) -> bool:
    """Whether a field with this condition is shown, given the other fields' values."""
    if not condition or not condition.get("field"):
        return True
    current = _as_text(values.get(str(condition["field"])))
    if "in" in condition:
        return current in {_as_text(v) for v in condition.get("in") or []}
    return current == _as_text(condition.get("equals"))


def is_visible(field: FieldLike, values: Mapping[str, Any]) -> bool:
    """A field is shown when its condition holds (always, without one)."""
    return condition_met(field.condition, values)


def is_required(field: FieldLike, values: Mapping[str, Any]) -> bool:
    """Required fields are required only while they are shown."""
    return bool(field.required) and is_visible(field, values)


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "")) if text.strip() else None
    except InvalidOperation:
        return None


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def problem(field: FieldLike, value: Any, values: Mapping[str, Any]) -> str | None:
    """Why a value is not acceptable for the field, in words for the signer, or None."""
    name = field.label or field.key.replace("_", " ")
    text = _as_text(value).strip()
    if not text:
        return _("%(name)s is required.", name=name) if is_required(field, values) else None
    rules = field.validation or {}
    if field.type == "number":
        number = _number(text)
        if number is None:
            return _("%(name)s must be a number.", name=name)
        if rules.get("min") not in (None, "") and number < Decimal(str(rules["min"])):
            return _("%(name)s must be at least %(min)s.", name=name, min=rules["min"])
        if rules.get("max") not in (None, "") and number > Decimal(str(rules["max"])):
            return _("%(name)s must be at most %(max)s.", name=name, max=rules["max"])
    if field.type == "date":
        day = _date(text)
        if day is None:
            return _("%(name)s must be a date (YYYY-MM-DD).", name=name)
        if rules.get("min") and day < date.fromisoformat(str(rules["min"])):
            return _("%(name)s must be on or after %(min)s.", name=name, min=rules["min"])
        if rules.get("max") and day > date.fromisoformat(str(rules["max"])):
            return _("%(name)s must be on or before %(max)s.", name=name, max=rules["max"])
    if field.type in ("radio", "select") and field.options and text not in field.options:
        return _("Choose one of the options for %(name)s.", name=name)
    if rules.get("min_length") and len(text) < int(rules["min_length"]):
        return _("%(name)s must be at least %(n)s characters.", name=name, n=rules["min_length"])
    if rules.get("max_length") and len(text) > int(rules["max_length"]):
        return _("%(name)s must be at most %(n)s characters.", name=name, n=rules["max_length"])
    pattern = rules.get("pattern")
    if pattern and not re.fullmatch(str(pattern), text):
        hint = rules.get("pattern_hint") or _("the expected format")
        return _("%(name)s does not match %(hint)s.", name=name, hint=hint)
    return None


def pattern_problem(pattern: str) -> str | None:
    """Whether a validation pattern entered by staff is a usable regular expression."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"The pattern is not a valid regular expression: {exc}."
    return None
