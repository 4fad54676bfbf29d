"""Authored documents: Markdown-style text with merge fields, rendered to PDF.

Staff write a customer-service document (a refund authorization, a service-change addendum)
in the portal as Markdown with Jinja merge fields and conditional sections::

    Dear {{ customer.name }},
    {% if refund.method == "card" %}
    We will refund your card.
    {% endif %}

Three stages, all pure functions:

1. :func:`check_body` parses the text with a sandboxed Jinja environment and walks the AST.
   Only ``{{ field }}`` output, ``{% if / elif / else / endif %}``, ``==``/``!=``/``in``
   comparisons with quoted text, ``and``/``or``/``not`` and a few filters are allowed, and
   every field must be a declared :class:`MergeKey`. Problems come back as a list, never as
   an exception.
2. :func:`merge` renders the Jinja. Merge values are customer-supplied text, so every
   ``{{ }}`` result is flattened to one line and every ASCII punctuation character in it is
   backslash-escaped (CommonMark guarantees ``\\X`` is a literal ``X``). A customer called
   ``**Bob** <script>`` therefore stays exactly that: no bold, no HTML, no heading, no table
   cell break. Jinja renders once, so ``{{ 7*7 }}`` inside a value is never evaluated.
3. :func:`render_pdf` parses the merged Markdown (CommonMark + tables, raw HTML disabled) and
   builds reportlab Platypus flowables. Every piece of text is XML-escaped for reportlab's
   Paragraph mini-markup; the only markup emitted is what this module writes itself.

Known limitation: a merge field inside a `code span` shows its escaping backslashes, because
CommonMark does not process escapes in code.
"""

from __future__ import annotations

import difflib
import functools
import io
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from markdown_it.token import Token
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    HRFlowable,
    Indenter,
    ListFlowable,
    ListItem,
    PageTemplate,
    Paragraph,
    Preformatted,
    Spacer,
    Table,
    TableStyle,
)

__all__ = [
    "REFUND_EXAMPLE",
    "REFUND_MERGE_KEYS",
    "AuthoringError",
    "MergeKey",
    "Problem",
    "check_body",
    "merge",
    "render_pdf",
    "sample_values",
]


@dataclass(frozen=True)
class MergeKey:
    """A field staff can merge into a document, e.g. ``customer.name``."""

    key: str
    label: str
    sample: str


@dataclass(frozen=True)
class Problem:
    """Something wrong with a document body, worded for the person who wrote it."""

    line: int | None
    message: str


class AuthoringError(ValueError):
    """A document body that cannot be merged; ``problems`` says why."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(" ".join(p.message for p in self.problems) or "Invalid document.")


# --------------------------------------------------------------------------------------------
# The realistic example the seed data uses.

REFUND_MERGE_KEYS: tuple[MergeKey, ...] = (
    MergeKey("customer.name", "Customer name", "Jordan Rivera"),
    MergeKey("customer.email", "Customer email", "jordan.rivera@example.com"),
    MergeKey("order.number", "Order number", "ORD-104233"),
    MergeKey("order.date", "Order date", "12 May 2025"),
    MergeKey("refund.amount", "Refund amount", "€149.90"),
    MergeKey("refund.method", 'Refund method ("card" or "bank transfer")', "card"),
    MergeKey("refund.reason", "Reason for the refund", "The item arrived damaged."),
)

REFUND_EXAMPLE = """\
# Refund authorization

Dear {{ customer.name }},

Thank you for contacting us about your order **{{ order.number }}**. We have reviewed your \
request and we are ready to issue the refund described below. Please read this authorization, \
check that the details are correct, and sign it to confirm that you agree.

## Refund details

| Detail | Information |
| --- | --- |
| Customer | {{ customer.name }} |
| Email address | {{ customer.email }} |
| Order number | {{ order.number }} |
| Order date | {{ order.date }} |
| Refund amount | {{ refund.amount }} |
| Reason for the refund | {{ refund.reason | default("Not stated") }} |

## How you will receive your refund

{% if refund.method | trim | lower == "card" %}
We will return the refund amount to the payment card you used for this order. We normally \
send card refunds within **5 business days** of receiving your signed authorization. Your card \
issuer may take a few more days to show the refund on your statement; that part of the timing \
is outside our control.
{% elif refund.method | trim | lower == "bank transfer" %}
We will send the refund amount by bank transfer to the account you have given us. We normally \
send transfers within **5 business days** of receiving your signed authorization. Please check \
your bank details carefully before you sign: if a payment is sent to an account number that \
was given to us incorrectly, we may not be able to recover it.
{% else %}
We will contact you at {{ customer.email }} to agree how the refund will be paid before any \
money is sent.
{% endif %}

We will send a confirmation to {{ customer.email }} when the refund has been issued.

## Before you sign

Please check that:

- your name, email address and order number above are correct;
- the refund amount is what we agreed with you;
- you have not already received a refund for the same order, for example through your bank \
or card issuer.

If anything looks wrong, please **do not sign**. Reply to us instead and we will correct the \
document and send you a new one.

## What you are agreeing to

By signing this authorization, you confirm that:

1. the details in this document are correct to the best of your knowledge;
2. you accept the refund amount shown above for the request described in this document;
3. if you later receive a second refund for the same order, you will let us know so that it \
can be corrected.

Nothing in this authorization limits any rights you have under applicable consumer protection \
law.

---

*Please keep a copy of this document for your records. If you have any questions, contact our \
customer service team and quote order {{ order.number }}.*
"""


def sample_values(merge_keys: Iterable[MergeKey]) -> dict[str, str]:
    """``{key: sample}`` for previews."""
    return {mk.key: mk.sample for mk in merge_keys}


# --------------------------------------------------------------------------------------------
# Jinja: a sandboxed, minimal environment.

ALLOWED_FILTERS = ("default", "lower", "replace", "title", "trim", "upper")
MAX_BODY_CHARS = 200_000

_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_RESERVED_NAMES = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is"}
    | {"if", "elif", "else", "endif", "loop", "self", "super", "caller", "varargs", "kwargs"}
)
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


# --------------------------------------------------------------------------------------------
# check_body


def _known_fields_text(keys: Sequence[str]) -> str:
    if not keys:
        return "No merge fields are defined for this template."
    shown = ", ".join(keys[:15])
    if len(keys) > 15:
        shown += f", and {len(keys) - 15} more"
    return f"Known fields: {shown}."


def _check_merge_keys(merge_keys: Sequence[MergeKey]) -> list[Problem]:
    problems: list[Problem] = []
    keys = {mk.key for mk in merge_keys if isinstance(mk, MergeKey)}
    for mk in merge_keys:
        if not isinstance(mk, MergeKey) or not isinstance(mk.key, str):
            problems.append(Problem(None, f"Merge field definition {mk!r} is not valid."))
        elif not _KEY_RE.match(mk.key):
            problems.append(
                Problem(
                    None,
                    f'Merge field "{mk.key}" is not a valid name: use letters, digits and '
                    'underscores separated by dots, e.g. "customer.name".',
                )
            )
        elif mk.key.split(".")[0] in _RESERVED_NAMES:
            problems.append(
                Problem(
                    None,
                    f'Merge field "{mk.key}" cannot start with the reserved word '
                    f'"{mk.key.split(".")[0]}".',
                )
            )
    for key in sorted(keys):
        parts = key.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix in keys:
                problems.append(
                    Problem(
                        None,
                        f'Merge field "{prefix}" cannot also be a group of fields ("{key}"). '
                        "Rename one of them.",
                    )
                )
    return problems


_STATEMENT_NAMES: dict[type[nodes.Node], str] = {
    nodes.For: "{% for %} loops are",
    nodes.Assign: "{% set %} is",
    nodes.AssignBlock: "{% set %} is",
    nodes.Macro: "{% macro %} is",
    nodes.CallBlock: "{% call %} is",
    nodes.FilterBlock: "{% filter %} is",
    nodes.Include: "{% include %} is",
    nodes.Import: "{% import %} is",
    nodes.FromImport: "{% from ... import %} is",
    nodes.Extends: "{% extends %} is",
    nodes.Block: "{% block %} is",
    nodes.With: "{% with %} is",
    nodes.ScopedEvalContextModifier: "{% autoescape %} is",
    nodes.EvalContextModifier: "{% autoescape %} is",
    nodes.ExprStmt: "{% do %} is",
    nodes.Continue: "{% continue %} is",
    nodes.Break: "{% break %} is",
}

_OPERATOR_SYMBOLS: dict[type[nodes.Node], str] = {
    nodes.Add: "+",
    nodes.Sub: "-",
    nodes.Mul: "*",
    nodes.Div: "/",
    nodes.FloorDiv: "//",
    nodes.Mod: "%",
    nodes.Pow: "**",
    nodes.Neg: "-",
    nodes.Pos: "+",
    nodes.Concat: "~",
}

_TAG_HELP = "Documents can use {% if %}, {% elif %}, {% else %} and {% endif %}."


class _BodyChecker:
    """Walks a parsed Jinja template, collecting problems."""

    def __init__(self, merge_keys: Sequence[MergeKey]) -> None:
        self.keys = [mk.key for mk in merge_keys if isinstance(mk, MergeKey)]
        self.key_set = set(self.keys)
        self.prefixes = {
            ".".join(k.split(".")[:i]) for k in self.keys for i in range(1, k.count(".") + 1)
        }
        self.problems: list[Problem] = []

    def add(self, line: int | None, message: str) -> None:
        problem = Problem(line, message)
        if problem not in self.problems:
            self.problems.append(problem)

    def not_allowed(self, node: nodes.Node, what: str) -> None:
        self.add(node.lineno, f"Line {node.lineno}: {what} not allowed in documents.")

    # statements -------------------------------------------------------------------------

    def statements(self, body: Iterable[nodes.Node]) -> None:
        for node in body:
            self.statement(node)

    def statement(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    self.expression(child, "output")
        elif isinstance(node, nodes.If):
            self.expression(node.test, "truth")
            self.statements(node.body)
            for elif_ in node.elif_:
                self.statement(elif_)
            self.statements(node.else_)
        elif isinstance(node, nodes.Template | nodes.Scope):
            self.statements(node.body)
        else:
            what = _STATEMENT_NAMES.get(type(node), f"{{% {type(node).__name__.lower()} %}} is")
            if isinstance(node, nodes.For):
                self.add(
                    node.lineno,
                    f"Line {node.lineno}: {what} not allowed in documents. "
                    "Write the text out, and use {% if %} for optional sections.",
                )
            else:
                self.not_allowed(node, what)

    # expressions ------------------------------------------------------------------------

    def expression(self, node: nodes.Node, context: str) -> None:
        """``context``: "output" ({{ }}), "truth" (an if test) or "value" (compared/filtered)."""
        if isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem):
            self.reference(node, context)
        elif isinstance(node, nodes.Const):
            if context == "truth":
                self.not_allowed(node, f"a condition that is always {node.value!r} is")
            elif not isinstance(node.value, str | int | float):
                self.not_allowed(node, f"the value {node.value!r} is")
        elif isinstance(node, nodes.And | nodes.Or):
            self.expression(node.left, "truth")
            self.expression(node.right, "truth")
            if context != "truth":
                self.not_allowed(node, '"and" / "or" outside an {% if %} test is')
        elif isinstance(node, nodes.Not):
            self.expression(node.node, "truth")
            if context != "truth":
                self.not_allowed(node, '"not" outside an {% if %} test is')
        elif isinstance(node, nodes.Compare):
            self.compare(node, context)
        elif isinstance(node, nodes.Filter):
            self.filter(node, context)
        elif isinstance(node, nodes.Call):
            callee = self.describe(node.node)
            self.not_allowed(node, f'calling functions, like "{callee}()", is')
        elif isinstance(node, nodes.Test):
            self.add(
                node.lineno,
                f'Line {node.lineno}: "is {node.name}" tests are not allowed in documents. '
                "Use {% if field %} to check whether a value is filled in.",
            )
        elif isinstance(node, nodes.CondExpr):
            self.not_allowed(node, 'an inline "... if ... else ..." expression is')
        elif type(node) in _OPERATOR_SYMBOLS:
            self.not_allowed(node, f'arithmetic and joining ("{_OPERATOR_SYMBOLS[type(node)]}") is')
        elif isinstance(node, nodes.Tuple | nodes.List) and context == "value":
            for item in node.items:
                if not (isinstance(item, nodes.Const) and isinstance(item.value, str)):
                    self.not_allowed(
                        item, "only quoted text is allowed in a list of choices; anything else is"
                    )
        else:
            self.not_allowed(node, f'the expression "{type(node).__name__}" is')

    def compare(self, node: nodes.Compare, context: str) -> None:
        operands = [node.expr, *(op.expr for op in node.ops)]
        for op in node.ops:
            if op.op not in ("eq", "ne", "in", "notin"):
                symbol = {"lt": "<", "gt": ">", "lteq": "<=", "gteq": ">="}.get(op.op, op.op)
                self.add(
                    node.lineno,
                    f'Line {node.lineno}: the "{symbol}" comparison is not allowed in documents: '
                    "merge values are text, so it would compare letters, not numbers. "
                    'Use == or != with quoted text, e.g. refund.method == "card".',
                )
        ordering_reported = any(op.op not in ("eq", "ne", "in", "notin") for op in node.ops)
        for operand in operands:
            if isinstance(operand, nodes.Const) and not isinstance(operand.value, str):
                if ordering_reported:
                    continue
                self.add(
                    node.lineno,
                    f"Line {node.lineno}: merge values are text, so compare them with quoted "
                    f'text (e.g. "{operand.value}") rather than {operand.value!r}.',
                )
            else:
                self.expression(operand, "value")
        if context == "output":
            self.not_allowed(node, "printing the result of a comparison is")

    def filter(self, node: nodes.Filter, context: str) -> None:
        if node.name not in ALLOWED_FILTERS:
            self.add(
                node.lineno,
                f'Line {node.lineno}: the "|{node.name}" filter is not allowed in documents. '
                f"Allowed filters: {', '.join(ALLOWED_FILTERS)}.",
            )
            return
        if node.node is not None:
            self.expression(node.node, "value")
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            self.not_allowed(node, "passing * or ** arguments to a filter is")
        values = [*node.args, *(kw.value for kw in node.kwargs)]
        for arg in values:
            if not isinstance(arg, nodes.Const):
                self.not_allowed(
                    arg,
                    f'only quoted text or numbers as arguments to "|{node.name}"; anything else is',
                )

    def describe(self, node: nodes.Node) -> str:
        parts = self.path(node)
        return ".".join(parts) if parts else type(node).__name__.lower()

    @staticmethod
    def path(node: nodes.Node) -> list[str] | None:
        parts: list[str] = []
        while True:
            if isinstance(node, nodes.Getattr):
                parts.append(node.attr)
                node = node.node
            elif (
                isinstance(node, nodes.Getitem)
                and isinstance(node.arg, nodes.Const)
                and isinstance(node.arg.value, str)
            ):
                parts.append(node.arg.value)
                node = node.node
            elif isinstance(node, nodes.Name):
                parts.append(node.name)
                return parts[::-1]
            else:
                return None

    def reference(self, node: nodes.Name | nodes.Getattr | nodes.Getitem, context: str) -> None:
        parts = self.path(node)
        line = node.lineno
        if parts is None:
            if any(
                isinstance(n, nodes.Getattr) and n.attr.startswith("_")
                for n in node.find_all(nodes.Getattr)
            ) or (isinstance(node, nodes.Getattr) and node.attr.startswith("_")):
                self.not_allowed(node, 'access to names starting with "_" is')
            else:
                self.add(
                    node.lineno,
                    f"Line {node.lineno}: only plain field names like {{{{ customer.name }}}} "
                    "can be used; lookups such as [0] or [field] are not allowed in documents.",
                )
            return
        dotted = ".".join(parts)
        if any(part.startswith("_") for part in parts):
            self.add(
                line,
                f'Line {line}: access to "{dotted}" is not allowed in documents '
                '(names starting with "_" are reserved).',
            )
            return
        if dotted in self.key_set:
            return
        if dotted in self.prefixes:
            if context == "truth":
                return
            members = [k for k in self.keys if k.startswith(dotted + ".")]
            shown = "{{ " + dotted + " }}" if context == "output" else dotted
            self.add(
                line,
                f'Unknown merge field "{shown}" on line {line}: "{dotted}" is a group of fields. '
                f"Use one of: {', '.join(members)}.",
            )
            return
        shown = "{{ " + dotted + " }}" if context == "output" else dotted
        message = f'Unknown merge field "{shown}" on line {line}.'
        close = difflib.get_close_matches(dotted, self.keys, n=3, cutoff=0.6)
        if close:
            message += " Did you mean " + " or ".join(f'"{c}"' for c in close) + "?"
        message += " " + _known_fields_text(self.keys)
        self.add(line, message)


def _friendly_syntax_problems(env: ImmutableSandboxedEnvironment, body: str) -> list[Problem]:
    """Explain block-structure mistakes by scanning tokens (Jinja reports only where it gave
    up, which for an unclosed {% if %} is the end of the document)."""
    problems: list[Problem] = []
    openers = {"if", "for", "macro", "call", "filter", "block", "with", "autoescape", "set"}
    middles = {"elif": {"if"}, "else": {"if", "for"}}
    known = (
        openers
        | set(middles)
        | {f"end{t}" for t in openers}
        | {
            "include",
            "import",
            "from",
            "extends",
            "do",
            "break",
            "continue",
            "raw",
            "endraw",
        }
    )
    stack: list[tuple[str, int]] = []
    open_delim: tuple[str, int] | None = None
    tag: str | None = None
    block_tokens: list[tuple[str, str]] = []
    try:
        for lineno, kind, value in env.lex(body):
            if kind in ("variable_begin", "block_begin"):
                if open_delim is not None:
                    break
                open_delim = (kind, lineno)
                tag, block_tokens = None, []
            elif kind in ("variable_end", "block_end"):
                if open_delim and open_delim[0] == "block_begin" and tag is not None:
                    block_line = open_delim[1]
                    is_set_block = tag == "set" and ("operator", "=") not in block_tokens
                    if tag in openers and (tag != "set" or is_set_block):
                        stack.append((tag, block_line))
                    elif tag in middles:
                        if not stack or stack[-1][0] not in middles[tag]:
                            problems.append(
                                Problem(
                                    block_line,
                                    f"Line {block_line}: {{% {tag} %}} must be inside an "
                                    "{% if %} section.",
                                )
                            )
                    elif tag.startswith("end") and tag[3:] in openers:
                        wanted = tag[3:]
                        if stack and stack[-1][0] == wanted:
                            stack.pop()
                        elif stack:
                            opened, opened_line = stack[-1]
                            problems.append(
                                Problem(
                                    block_line,
                                    f"Line {block_line}: {{% {tag} %}} does not match the "
                                    f"{{% {opened} %}} opened on line {opened_line}; close that "
                                    f"with {{% end{opened} %}} first.",
                                )
                            )
                            return problems
                        else:
                            problems.append(
                                Problem(
                                    block_line,
                                    f"Line {block_line}: {{% {tag} %}} has no matching "
                                    f"{{% {wanted} %}} before it.",
                                )
                            )
                    elif tag not in known:
                        problems.append(
                            Problem(
                                block_line,
                                f'Line {block_line}: "{{% {tag} %}}" is not a recognised tag. '
                                + _TAG_HELP,
                            )
                        )
                open_delim = None
            elif open_delim and open_delim[0] == "block_begin":
                if tag is None and kind == "name":
                    tag = value
                elif kind != "whitespace":
                    block_tokens.append((kind, value))
    except TemplateSyntaxError:
        pass
    if open_delim is not None:
        kind, line = open_delim
        if kind == "variable_begin":
            problems.append(
                Problem(line, f"Line {line}: a {{{{ merge field }}}} is not closed with }}}}.")
            )
        else:
            problems.append(Problem(line, f"Line {line}: a {{% tag %}} is not closed with %}}."))
        return problems
    for opened, opened_line in stack:
        problems.append(
            Problem(
                opened_line,
                f"Line {opened_line}: the {{% {opened} %}} section is never closed with "
                f"{{% end{opened} %}}.",
            )
        )
    return problems


def _translate_syntax_error(exc: TemplateSyntaxError) -> Problem:
    line = exc.lineno
    message = exc.message or "invalid template syntax"
    if message.startswith("Expected an expression, got 'end of statement block'"):
        text = 'this tag is missing its condition, e.g. {% if refund.method == "card" %}.'
    elif message.startswith("Expected an expression, got 'end of print statement'"):
        text = "an empty {{ }} needs a merge field name inside, e.g. {{ customer.name }}."
    elif message == "Missing end of comment tag":
        text = "a {# comment #} is not closed with #}."
    else:
        text = f"the template syntax is not valid ({message})"
        if not text.endswith("."):
            text += "."
    return Problem(line, f"Line {line}: {text}")


def check_body(body: str, merge_keys: Sequence[MergeKey]) -> list[Problem]:
    """Every problem with ``body`` that would stop it rendering. Never raises."""
    try:
        return _check_body(body, merge_keys)
    except Exception as exc:  # the contract: always return problems
        return [Problem(None, f"The document could not be checked ({type(exc).__name__}).")]


def _check_body(body: str, merge_keys: Sequence[MergeKey]) -> list[Problem]:
    if not isinstance(body, str):
        return [Problem(None, "The document text is missing.")]
    if len(body) > MAX_BODY_CHARS:
        return [
            Problem(
                None,
                f"The document is too long ({len(body):,} characters; the limit is "
                f"{MAX_BODY_CHARS:,}).",
            )
        ]
    merge_keys = list(merge_keys)
    problems = _check_merge_keys(merge_keys)
    env = _environment()
    try:
        tree = env.parse(body)
    except TemplateSyntaxError as exc:
        friendly = _friendly_syntax_problems(env, body)
        return problems + (friendly or [_translate_syntax_error(exc)])
    checker = _BodyChecker(merge_keys)
    checker.statement(tree)
    problems += checker.problems
    if not problems:
        try:
            env.from_string(body)  # compile-time checks the parser does not make
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            prefix = f"Line {line}: " if line else ""
            problems.append(Problem(line, f"{prefix}the template is not valid ({exc.message})."))
    return problems


# --------------------------------------------------------------------------------------------
# merge


def _nested_values(values: Mapping[str, str], merge_keys: Sequence[MergeKey]) -> _Group:
    root = _Group()
    for mk in merge_keys:
        raw = values.get(mk.key) if values is not None else None
        value = "" if raw is None else str(raw)
        *groups, leaf = mk.key.split(".")
        node = root
        for name in groups:
            child = node.get(name)
            if not isinstance(child, _Group):
                child = node[name] = _Group()
            node = child
        node[leaf] = value
    return root


def merge(body: str, values: Mapping[str, str], merge_keys: Sequence[MergeKey]) -> str:
    """Render the merge fields and conditions; return Markdown with values inserted literally.

    Raises :class:`AuthoringError` when :func:`check_body` finds problems.
    """
    merge_keys = list(merge_keys)
    problems = check_body(body, merge_keys)
    if problems:
        raise AuthoringError(problems)
    try:
        template = _environment().from_string(body)
        return template.render(_nested_values(values, merge_keys))
    except Exception as exc:
        raise AuthoringError(
            [Problem(None, f"The document could not be merged ({type(exc).__name__}: {exc}).")]
        ) from exc


# --------------------------------------------------------------------------------------------
# Fonts

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
_FONT_FILES = {
    "DejaVuSans": "DejaVuSans.ttf",
    "DejaVuSans-Bold": "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique": "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique": "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono": "DejaVuSansMono.ttf",
}
_font_lock = threading.Lock()


@dataclass(frozen=True)
class _Fonts:
    regular: str
    bold: str
    italic: str
    bold_italic: str
    mono: str


@functools.cache
def _fonts() -> _Fonts:
    """Register DejaVu (so Łukasiewicz and Παπαδοπούλου render); Helvetica if it is missing."""
    with _font_lock:
        available: set[str] = set()
        for name, filename in _FONT_FILES.items():
            path = os.path.join(FONT_DIR, filename)
            if name in pdfmetrics.getRegisteredFontNames():
                available.add(name)
            elif os.path.exists(path):
                try:
                    pdfmetrics.registerFont(TTFont(name, path))
                    available.add(name)
                except Exception:  # noqa: S112 - unreadable font file: fall back
                    continue
        if "DejaVuSans" not in available:
            return _Fonts(
                "Helvetica",
                "Helvetica-Bold",
                "Helvetica-Oblique",
                "Helvetica-BoldOblique",
                "Courier",
            )
        regular = "DejaVuSans"
        bold = "DejaVuSans-Bold" if "DejaVuSans-Bold" in available else regular
        italic = "DejaVuSans-Oblique" if "DejaVuSans-Oblique" in available else regular
        bold_italic = "DejaVuSans-BoldOblique" if "DejaVuSans-BoldOblique" in available else bold
        mono = "DejaVuSansMono" if "DejaVuSansMono" in available else "Courier"
        pdfmetrics.registerFontFamily(
            regular, normal=regular, bold=bold, italic=italic, boldItalic=bold_italic
        )
        return _Fonts(regular, bold, italic, bold_italic, mono)


# --------------------------------------------------------------------------------------------
# Markdown -> flowables

PAGE_MARGIN = 2 * cm
SIGNATURE_ROOM = 6 * cm
_INK = colors.HexColor("#1f2328")
_HEADING_INK = colors.HexColor("#14213d")
_MUTED = colors.HexColor("#5b6470")
_RULE = colors.HexColor("#c9ced6")
_HEADER_FILL = colors.HexColor("#eef1f5")
_LINK = colors.HexColor("#1a4f9c")
_CODE_FILL = colors.HexColor("#f4f5f7")
_BULLETS = ("\u2022", "\u2013", "\u25e6")  # bullet, en dash, white bullet


def _title_rule() -> HRFlowable:
    return HRFlowable(width="100%", thickness=1.4, color=_HEADING_INK, spaceBefore=0, spaceAfter=14)


def _xml(text: str) -> str:
    """Text for reportlab's Paragraph markup: nothing in it is ever markup."""
    text = _CONTROL_RE.sub("", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    return _xml(text).replace('"', "&quot;")


class _Styles:
    def __init__(self, fonts: _Fonts) -> None:
        self.fonts = fonts
        base = ParagraphStyle(
            "body",
            fontName=fonts.regular,
            fontSize=10,
            leading=15,
            textColor=_INK,
            spaceAfter=7,
            allowWidows=0,
            allowOrphans=0,
        )
        self.body = base
        self.list_body = ParagraphStyle("list", parent=base, spaceAfter=3)
        self.quote = ParagraphStyle("quote", parent=base, textColor=_MUTED)
        self.cell = ParagraphStyle("cell", parent=base, spaceAfter=0, leading=13.5)
        self.header_cell = ParagraphStyle("th", parent=self.cell, fontName=fonts.bold)
        self.code = ParagraphStyle(
            "code",
            parent=base,
            fontName=fonts.mono,
            fontSize=8.5,
            leading=12,
            backColor=_CODE_FILL,
            borderPadding=(5, 6, 5, 6),
            spaceBefore=4,
            spaceAfter=11,
            leftIndent=6,
            rightIndent=6,
        )
        self.headings = {
            1: ParagraphStyle(
                "h1",
                parent=base,
                fontName=fonts.bold,
                fontSize=19,
                leading=24,
                textColor=_HEADING_INK,
                spaceBefore=0,
                spaceAfter=7,
                keepWithNext=1,
            ),
            2: ParagraphStyle(
                "h2",
                parent=base,
                fontName=fonts.bold,
                fontSize=12.5,
                leading=16,
                textColor=_HEADING_INK,
                spaceBefore=14,
                spaceAfter=6,
                keepWithNext=1,
            ),
            3: ParagraphStyle(
                "h3",
                parent=base,
                fontName=fonts.bold,
                fontSize=10.5,
                leading=14,
                textColor=_INK,
                spaceBefore=10,
                spaceAfter=4,
                keepWithNext=1,
            ),
        }

    def align(self, style: ParagraphStyle, align: str | None) -> ParagraphStyle:
        alignment = {"center": TA_CENTER, "right": TA_RIGHT}.get(align or "", TA_LEFT)
        if alignment == style.alignment:
            return style
        return ParagraphStyle(f"{style.name}-{align}", parent=style, alignment=alignment)


def _inline_markup(token: Token, fonts: _Fonts) -> str:
    """Paragraph markup for an ``inline`` token; all text is escaped."""
    out: list[str] = []
    link_open: list[bool] = []
    for child in token.children or []:
        t = child.type
        if t == "text":
            out.append(_xml(child.content))
        elif t == "softbreak":
            out.append(" ")
        elif t == "hardbreak":
            out.append("<br/>")
        elif t == "strong_open":
            out.append("<b>")
        elif t == "strong_close":
            out.append("</b>")
        elif t == "em_open":
            out.append("<i>")
        elif t == "em_close":
            out.append("</i>")
        elif t == "code_inline":
            out.append(f'<font face="{fonts.mono}" size="9">{_xml(child.content)}</font>')
        elif t == "link_open":
            href = str(child.attrGet("href") or "")
            ok = re.match(r"^(https?:|mailto:)", href, re.IGNORECASE) is not None
            link_open.append(ok)
            if ok:
                out.append(f'<a href="{_attr(href)}" color="#{_LINK.hexval()[2:]}">')
        elif t == "link_close":
            if link_open and link_open.pop():
                out.append("</a>")
        elif t == "image":
            out.append(_xml(child.content))  # alt text only: never load files or URLs
        elif child.content:
            out.append(_xml(child.content))  # html_inline etc.: shown as text
    return "".join(out)


def _plain_text(token: Token) -> str:
    return "".join(
        c.content if c.type in ("text", "code_inline", "image") else " "
        for c in token.children or []
    )


class _FlowableBuilder:
    def __init__(self, styles: _Styles, width: float) -> None:
        self.styles = styles
        self.fonts = styles.fonts
        self.width = width

    def build(self, tokens: list[Token]) -> list[Flowable]:
        flowables, _ = self.blocks(tokens, 0, None, self.styles.body, 0)
        return flowables

    def blocks(
        self,
        tokens: list[Token],
        i: int,
        close: str | None,
        para_style: ParagraphStyle,
        depth: int,
    ) -> tuple[list[Flowable], int]:
        out: list[Flowable] = []
        while i < len(tokens):
            tok = tokens[i]
            if close is not None and tok.type == close:
                return out, i + 1
            if tok.type == "heading_open":
                level = min(int(tok.tag[1:]), 3)
                markup = _inline_markup(tokens[i + 1], self.fonts)
                out.append(Paragraph(markup, self.styles.headings[level]))
                if level == 1:
                    out.append(_title_rule())
                i += 3
            elif tok.type == "paragraph_open":
                out.append(Paragraph(_inline_markup(tokens[i + 1], self.fonts), para_style))
                i += 3
            elif tok.type in ("bullet_list_open", "ordered_list_open"):
                flowable, i = self.list_block(tokens, i, depth)
                out.append(flowable)
            elif tok.type == "blockquote_open":
                inner, i = self.blocks(tokens, i + 1, "blockquote_close", self.styles.quote, depth)
                out += [Indenter(left=14), *inner, Indenter(left=-14)]
            elif tok.type in ("code_block", "fence"):
                text = _CONTROL_RE.sub("", tok.content.rstrip("\n"))
                out.append(Preformatted(text, self.styles.code, maxLineLength=92))
                i += 1
            elif tok.type == "hr":
                out.append(
                    HRFlowable(
                        width="100%", thickness=0.6, color=_RULE, spaceBefore=6, spaceAfter=12
                    )
                )
                i += 1
            elif tok.type == "table_open":
                flowable, i = self.table(tokens, i)
                out.append(flowable)
            elif tok.type == "inline":
                out.append(Paragraph(_inline_markup(tok, self.fonts), para_style))
                i += 1
            elif tok.type == "html_block" and tok.content.strip():
                out.append(Paragraph(_xml(tok.content), para_style))
                i += 1
            else:
                i += 1
        return out, i

    def list_block(self, tokens: list[Token], i: int, depth: int) -> tuple[Flowable, int]:
        open_tok = tokens[i]
        ordered = open_tok.type == "ordered_list_open"
        close = "ordered_list_close" if ordered else "bullet_list_close"
        items: list[ListItem] = []
        i += 1
        while i < len(tokens) and tokens[i].type != close:
            if tokens[i].type == "list_item_open":
                inner, i = self.blocks(
                    tokens, i + 1, "list_item_close", self.styles.list_body, depth + 1
                )
                items.append(ListItem(inner or [Spacer(1, 1)]))
            else:
                i += 1
        common: dict[str, Any] = {
            "bulletFontName": self.fonts.regular,
            "bulletFontSize": 10,
            "bulletColor": _INK,
            "leftIndent": 18,
            "spaceAfter": 9 if depth == 0 else 0,
        }
        if ordered:
            start = int(str(open_tok.attrGet("start") or 1))
            delim = (open_tok.markup or ".")[-1:]
            flowable = ListFlowable(
                items, bulletType="1", start=start, bulletFormat=f"%s{delim}", **common
            )
        else:
            flowable = ListFlowable(
                items, bulletType="bullet", start=_BULLETS[depth % len(_BULLETS)], **common
            )
        return flowable, i + 1

    def table(self, tokens: list[Token], i: int) -> tuple[Flowable, int]:
        rows: list[list[tuple[Token, str | None, bool]]] = []
        row: list[tuple[Token, str | None, bool]] = []
        header_rows = 0
        in_head = False
        i += 1
        while i < len(tokens) and tokens[i].type != "table_close":
            tok = tokens[i]
            if tok.type == "thead_open":
                in_head = True
            elif tok.type == "thead_close":
                in_head = False
            elif tok.type == "tr_open":
                row = []
            elif tok.type == "tr_close":
                rows.append(row)
                header_rows += 1 if in_head else 0
            elif tok.type in ("th_open", "td_open"):
                style = str(tok.attrGet("style") or "")
                match = re.search(r"text-align:(\w+)", style)
                row.append((tokens[i + 1], match.group(1) if match else None, in_head))
                i += 2
            i += 1
        ncols = max((len(r) for r in rows), default=1)
        data: list[list[Paragraph | str]] = []
        for r in rows:
            cells: list[Paragraph | str] = []
            for inline, align, head in r:
                base = self.styles.header_cell if head else self.styles.cell
                cells.append(
                    Paragraph(_inline_markup(inline, self.fonts), self.styles.align(base, align))
                )
            cells += [""] * (ncols - len(cells))
            data.append(cells)
        widths = self.column_widths(rows, ncols)
        table = Table(data, colWidths=widths, repeatRows=header_rows, hAlign="LEFT")
        commands: list[tuple[Any, ...]] = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 7),
            ("RIGHTPADDING", (0, 0), (-1, -1), 7),
            ("TOPPADDING", (0, 0), (-1, -1), 5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ("GRID", (0, 0), (-1, -1), 0.5, _RULE),
        ]
        if header_rows:
            commands += [
                ("BACKGROUND", (0, 0), (-1, header_rows - 1), _HEADER_FILL),
                ("LINEBELOW", (0, header_rows - 1), (-1, header_rows - 1), 0.9, _MUTED),
            ]
        table.setStyle(TableStyle(commands))
        table.spaceBefore = 2
        table.spaceAfter = 12
        return table, i + 1

    def column_widths(
        self, rows: list[list[tuple[Token, str | None, bool]]], ncols: int
    ) -> list[float]:
        pad = 24.0
        natural = [pad + 20] * ncols
        minimum = [pad + 20] * ncols
        for r in rows:
            for col, (inline, _, head) in enumerate(r):
                font = self.fonts.bold if head else self.fonts.regular
                text = _plain_text(inline)
                width = pdfmetrics.stringWidth(text, font, 10) + pad
                longest = max(
                    (pdfmetrics.stringWidth(w, font, 10) for w in text.split()), default=0
                )
                natural[col] = max(natural[col], width)
                minimum[col] = max(minimum[col], min(longest + pad, self.width / ncols))
        total = sum(natural)
        if total <= self.width:
            extra = self.width - total
            if ncols == 2:  # a "label | value" table: labels stay compact
                return [natural[0], natural[1] + extra]
            return [n + extra * n / total for n in natural]
        spare = self.width - sum(minimum)
        if spare <= 0:
            return [self.width / ncols] * ncols
        flexible = [n - m for n, m in zip(natural, minimum, strict=True)]
        flex_total = sum(flexible) or 1.0
        return [m + spare * f / flex_total for m, f in zip(minimum, flexible, strict=True)]


# --------------------------------------------------------------------------------------------
# Page furniture


def _numbered_canvas(title: str, fonts: _Fonts) -> Callable[..., Canvas]:
    """A canvas class that draws "Page N of M" once the page count is known."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # reportlab API name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._footer(total)
                super().showPage()
            super().save()

        def _footer(self, total: int) -> None:
            width, _ = self._pagesize
            y = PAGE_MARGIN - 0.95 * cm
            self.saveState()
            self.setStrokeColor(_RULE)
            self.setLineWidth(0.5)
            self.line(PAGE_MARGIN, y + 11, width - PAGE_MARGIN, y + 11)
            self.setFillColor(_MUTED)
            self.setFont(fonts.regular, 8)
            label = f"Page {self._pageNumber} of {total}"
            self.drawRightString(width - PAGE_MARGIN, y, label)
            room = width - 2 * PAGE_MARGIN - pdfmetrics.stringWidth(label, fonts.regular, 8) - 24
            shown = title
            if pdfmetrics.stringWidth(shown, fonts.regular, 8) > room:
                while shown and pdfmetrics.stringWidth(shown + "…", fonts.regular, 8) > room:
                    shown = shown[:-1]
                shown = shown.rstrip() + "…"
            self.drawString(PAGE_MARGIN, y, shown)
            self.restoreState()

    return NumberedCanvas


def _watermark(fonts: _Fonts) -> Callable[[Canvas, BaseDocTemplate], None]:
    def draw(canvas: Canvas, doc: BaseDocTemplate) -> None:
        width, height = doc.pagesize
        canvas.saveState()
        canvas.setFillColor(colors.HexColor("#d9dde3"))
        canvas.setFillAlpha(0.55)
        canvas.translate(width / 2, height / 2)
        canvas.rotate(45)
        canvas.setFont(fonts.bold, 110)
        canvas.drawCentredString(0, -38, "SAMPLE")
        canvas.restoreState()

    return draw


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def render_pdf(
    body: str,
    values: Mapping[str, str],
    merge_keys: Sequence[MergeKey],
    *,
    title: str,
    sample: bool = False,
) -> bytes:
    """Merge ``values`` into ``body`` and lay it out as an A4 PDF.

    Raises :class:`AuthoringError` when the body has problems. ``sample=True`` adds a
    diagonal "SAMPLE" watermark (previews with sample data). About 6 cm is left free after
    the last paragraph for signature fields placed later in the template editor.
    """
    text = merge(body, values, merge_keys)
    fonts = _fonts()
    styles = _Styles(fonts)
    title = " ".join(_CONTROL_RE.sub("", title or "").split()) or "Document"

    buffer = io.BytesIO()
    doc = BaseDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=PAGE_MARGIN,
        rightMargin=PAGE_MARGIN,
        topMargin=PAGE_MARGIN,
        bottomMargin=PAGE_MARGIN,
        title=title,
        subject=title,
        author="",
        creator="Signing portal",
        displayDocTitle=True,
        lang="en",
        invariant=True,  # same input, same bytes: callers compare hashes to skip re-saves
    )
    frame = Frame(
        doc.leftMargin,
        doc.bottomMargin,
        doc.width,
        doc.height,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
        id="body",
    )
    on_page = _watermark(fonts) if sample else _no_op
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=on_page)])

    flowables = _FlowableBuilder(styles, doc.width).build(_markdown().parse(text))
    flowables.append(Spacer(1, SIGNATURE_ROOM))
    doc.build(flowables, canvasmaker=_numbered_canvas(title, fonts))
    return buffer.getvalue()


def _no_op(canvas: Canvas, doc: BaseDocTemplate) -> None:
    return None
