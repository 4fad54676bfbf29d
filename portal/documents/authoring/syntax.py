"""Explaining Jinja syntax errors in words the document's author can act on."""

from __future__ import annotations

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .model import Problem

_TAG_HELP = "Documents can use {% if %}, {% elif %}, {% else %} and {% endif %}."


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
