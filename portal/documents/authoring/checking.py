"""Checking a document body: merge-field definitions and a walk of the parsed Jinja AST.

Only ``{{ field }}`` output, ``{% if / elif / else / endif %}``, ``==``/``!=``/``in``
comparisons with quoted text, ``and``/``or``/``not`` and a few filters are allowed, and every
field must be a declared :class:`MergeKey`. Problems come back as a list, never as an
exception.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

from jinja2 import TemplateError, TemplateSyntaxError, nodes

from .model import MergeKey, Problem
from .sandbox import ALLOWED_FILTERS, _environment
from .syntax import _friendly_syntax_problems, _translate_syntax_error

MAX_BODY_CHARS = 200_000

_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_RESERVED_NAMES = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is"}
    | {"if", "elif", "else", "endif", "loop", "self", "super", "caller", "varargs", "kwargs"}
)


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
