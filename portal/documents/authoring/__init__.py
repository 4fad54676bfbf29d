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
   Paragraph mini-markup; the only markup emitted is what this package writes itself.

Known limitation: a merge field inside a `code span` shows its escaping backslashes, because
CommonMark does not process escapes in code.

Modules: ``model`` (merge keys, problems, the error), ``examples`` (the refund
authorization), ``sandbox`` (the Jinja environment and value escaping), ``checking`` and
``syntax`` (stage 1), ``merging`` (stage 2), ``fonts``, ``styles``, ``flowables`` and
``rendering`` (stage 3).
"""

from __future__ import annotations

from .checking import check_body
from .examples import REFUND_EXAMPLE, REFUND_MERGE_KEYS
from .merging import merge
from .model import AuthoringError, MergeKey, Problem, sample_values
from .rendering import render_pdf

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
