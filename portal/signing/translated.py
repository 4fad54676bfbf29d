"""The signer's pages from templates whose texts are translated once, when they are compiled.

A page of the signer's has some thirty ``_('...')`` texts; called while rendering, each costs
a template function call, a catalogue lookup and an escape, on every request. A catalogue does
not change while the process lives, so each locale gets its own compiled copy of a template in
which every ``_('text')`` is already the catalogue's text, and ``_('text', name=value)`` the
text formatted with the values: what ``portal.web``'s template ``_`` would give, as a constant
Jinja merges into the page's markup. Everything else renders as it does elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

from flask import current_app
from flask_babel import get_translations
from jinja2 import Environment, Template
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream

from portal.signing import inlined

_ENVIRONMENTS = "portal_translated_templates"  # app.extensions: locale -> environment
_OPENING = {"lparen": "rparen", "lbracket": "rbracket", "lbrace": "rbrace"}


def template(name: str, locale: str) -> Template:
    """``name`` compiled for ``locale``'s catalogue; call it inside ``force_locale(locale)``.

    (Flask-Babel keeps one catalogue per locale for good: looked up once here, not on every
    page, where the lookup costs more than finding the compiled template.)
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    environments: dict[str, Environment] = app.extensions.setdefault(_ENVIRONMENTS, {})
    environment = environments.get(locale)
    if environment is None:
        # An overlay shares the app's loader, globals, filters and autoescaping; it has its
        # own cache of compiled templates, for this catalogue.
        environment = app.jinja_env.overlay(extensions=[_Translated])
        environment.portal_gettext = get_translations().ugettext
        environments[locale] = environment
    return environment.get_template(name)


class _Translated(Extension):
    """Replace ``_('text'...)`` with the translated text, as Jinja tokens; and a page that
    only extends a layout becomes one template with it (``portal.signing.inlined``)."""

    def filter_stream(self, stream: TokenStream) -> TokenStream | Iterator[Token]:
        tokens = list(stream)
        if _rewritable(self.environment, stream.name, tokens):
            tokens = self._translated(tokens)
        if not self.environment.auto_reload and inlined.layout_name(tokens) is not None:
            merged = inlined.inlined(tokens, partial(self._tokens, page=stream.name))
            if merged is not None:
                return iter(merged)
        return iter(tokens)

    def _translated(self, tokens: list[Token]) -> list[Token]:
        gettext = self.environment.portal_gettext  # type: ignore[attr-defined]
        out: list[Token] = []
        i = 0
        while i < len(tokens):
            call = _call(tokens, i)
            if call is None:
                out.append(tokens[i])
                i += 1
                continue
            end, message, arguments = call
            out.extend(_constant(tokens[i].lineno, gettext(message), arguments))
            i = end + 1
        return out

    def _tokens(self, name: str, page: str | None) -> list[Token]:
        """Another template's tokens, as Jinja reads them for compiling (so translated)."""
        environment = self.environment
        name = environment.join_path(name, page) if page else name
        assert environment.loader is not None
        source, filename, _uptodate = environment.loader.get_source(environment, name)
        source = environment.preprocess(source, name, filename)
        stream: Iterable[Token] = environment.lexer.tokenize(source, name, filename)
        for extension in environment.iter_extensions():
            stream = extension.filter_stream(TokenStream(stream, name, filename))
        return list(stream)


def _rewritable(environment: Environment, name: str | None, tokens: list[Token]) -> bool:
    """Only autoescaped templates (the texts are markup, their values escaped) in which ``_``
    is never anything but the gettext call and autoescaping never changes."""
    autoescape = environment.autoescape
    if not (autoescape(name) if callable(autoescape) else autoescape):
        return False
    for n, token in enumerate(tokens):
        if token.type == "name" and token.value == "autoescape":
            return False
        if token.type == "name" and token.value == "_":
            after = tokens[n + 1] if n + 1 < len(tokens) else None
            before = tokens[n - 1] if n else None
            if after is None or after.type != "lparen" or (before and before.type == "dot"):
                return False
    return True


def _call(tokens: list[Token], start: int) -> tuple[int, str, list[tuple[str, list[Token]]]] | None:
    """``_('text', name=value, ...)`` at ``start``: the index of its closing parenthesis, the
    text and the keyword arguments; None for anything else (left as it is)."""
    if not (
        tokens[start].type == "name"
        and tokens[start].value == "_"
        and start + 2 < len(tokens)
        and tokens[start + 1].type == "lparen"
        and tokens[start + 2].type == "string"
    ):
        return None
    message = tokens[start + 2].value
    arguments: list[tuple[str, list[Token]]] = []
    i = start + 3
    while True:
        if i >= len(tokens):
            return None
        if tokens[i].type == "rparen":
            return i, message, arguments
        if tokens[i].type != "comma":
            return None
        if i + 1 < len(tokens) and tokens[i + 1].type == "rparen":  # a trailing comma
            return i + 1, message, arguments
        if not (
            i + 2 < len(tokens) and tokens[i + 1].type == "name" and tokens[i + 2].type == "assign"
        ):
            return None  # a positional argument: not a form we rewrite
        key, value, i = tokens[i + 1].value, [], i + 3
        closing: list[str] = []
        while i < len(tokens) and (closing or tokens[i].type not in ("comma", "rparen")):
            token = tokens[i]
            if token.type in _OPENING:
                closing.append(_OPENING[token.type])
            elif closing and token.type == closing[-1]:
                closing.pop()
            elif token.type in ("rparen", "rbracket", "rbrace", "variable_end", "block_end"):
                return None
            value.append(token)
            i += 1
        if not value:
            return None
        arguments.append((key, value))


def _constant(line: int, text: str, arguments: list[tuple[str, list[Token]]]) -> list[Token]:
    """``('text'|safe)``, or ``(('text'|safe) % {'name': value, ...})``: what the template
    ``_`` returns (``portal.web``), the first a constant that Jinja compiles into the page."""

    def t(kind: str, value: str) -> Token:
        return Token(line, kind, value)

    if not arguments:
        if "%" in text:
            text = text % {}  # as the template function formats every text with a %
        return [t("lparen", "("), t("string", text), t("pipe", "|"), t("name", "safe"),
                t("rparen", ")")]  # fmt: skip
    out = [t("lparen", "("), t("lparen", "("), t("string", text), t("pipe", "|"),
           t("name", "safe"), t("rparen", ")"), t("mod", "%"), t("lbrace", "{")]  # fmt: skip
    for key, value in arguments:
        out += [t("string", key), t("colon", ":"), *value, t("comma", ",")]
    return [*out, t("rbrace", "}"), t("rparen", ")")]
