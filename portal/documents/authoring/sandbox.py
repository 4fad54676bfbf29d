"""The sandboxed, minimal Jinja environment shared by checking and merging.

Every ``{{ }}`` result goes through :func:`_escape_value`, so merge values (customer-supplied
text) come out literal, on one line and inert as Markdown.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from jinja2 import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

ALLOWED_FILTERS = ("default", "lower", "replace", "title", "trim", "upper")

# Every ASCII punctuation character: CommonMark guarantees "\" + any of these is literal.
_MD_PUNCT_RE = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")
# Control characters (except whitespace, which is collapsed separately) and XML-invalid ones.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


class _Group(dict[str, Any]):
    """A level of nested merge values (``customer`` in ``customer.name``).

    Attribute lookups go to the items only, so a field called ``order.items`` is the value,
    not ``dict.items``. Truthy when any value inside is non-empty, so ``{% if refund %}``
    means "some refund detail was filled in".
    """

    def __bool__(self) -> bool:
        return any(bool(v) for v in self.values())


def _escape_value(value: object) -> str:
    """``finalize`` for every ``{{ }}``: literal, single-line, Markdown-inert text."""
    if value is None or isinstance(value, Undefined | _Group):
        return ""
    text = _CONTROL_RE.sub("", str(value))
    text = " ".join(text.split())  # no newlines: a value cannot start a block or end a row
    return _MD_PUNCT_RE.sub(r"\\\1", text)


def _default_filter(value: object, default_value: object = "", boolean: bool = True) -> object:
    """``default`` that also replaces empty values: missing merge values are ``""``."""
    if isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


class _DocumentEnvironment(ImmutableSandboxedEnvironment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, _Group):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


@functools.cache
def _environment() -> _DocumentEnvironment:
    env = _DocumentEnvironment(
        autoescape=False,
        trim_blocks=True,  # a line holding only {% if %} leaves no blank line behind
        lstrip_blocks=True,
        finalize=_escape_value,
    )
    env.globals.clear()
    builtin = dict(env.filters)
    env.filters.clear()
    env.filters.update({name: builtin[name] for name in ALLOWED_FILTERS})
    env.filters["default"] = _default_filter
    env.tests.clear()
    return env
