"""Authored documents: checking merge fields and conditions, literal merging, PDF rendering."""

from __future__ import annotations

import io
import re

import pypdfium2 as pdfium
import pytest
from markdown_it import MarkdownIt
from pypdf import PdfReader

from portal.documents.authoring import (
    REFUND_EXAMPLE,
    REFUND_MERGE_KEYS,
    AuthoringError,
    MergeKey,
    Problem,
    check_body,
    merge,
    render_pdf,
    sample_values,
)
from tests.conftest import ARTIFACTS

KEYS = REFUND_MERGE_KEYS
INJECTION = "**bold** <b>x</b> # H {{ 7*7 }} {% if %}"


def pdf_pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def pdf_text(pdf: bytes) -> str:
    return "\n".join(pdf_pages(pdf))


def render(body: str, values: dict[str, str] | None = None, **kwargs: object) -> bytes:
    options: dict[str, object] = {"title": "Test document", **kwargs}
    return render_pdf(body, values if values is not None else {}, KEYS, **options)  # type: ignore[arg-type]


def messages(problems: list[Problem]) -> str:
    return "\n".join(p.message for p in problems)


# --- check_body ------------------------------------------------------------------------------


def test_refund_example_is_clean_and_uses_every_key():
    assert check_body(REFUND_EXAMPLE, KEYS) == []
    for key in KEYS:
        assert "{{ " + key.key in REFUND_EXAMPLE or key.key in REFUND_EXAMPLE
    assert sample_values(KEYS)["refund.method"] == "card"
    assert sample_values(KEYS) == {k.key: k.sample for k in KEYS}


def test_unknown_merge_field_reported_with_line_and_suggestion():
    body = "Dear customer,\n\nThanks.\nYour name: {{ customer.nmae }}\n"
    [problem] = check_body(body, KEYS)
    assert problem.line == 4
    assert problem.message.startswith('Unknown merge field "{{ customer.nmae }}" on line 4.')
    assert 'Did you mean "customer.name"' in problem.message
    assert "Known fields: customer.name, customer.email, order.number" in problem.message


def test_unknown_field_in_if_test_is_reported():
    problems = check_body('a\n{% if refund.methd == "card" %}x{% endif %}', KEYS)
    assert [p.line for p in problems] == [2]
    assert 'Unknown merge field "refund.methd" on line 2' in problems[0].message
    assert '"refund.method"' in problems[0].message


def test_group_alone_is_unknown_in_output_but_fine_as_an_if_test():
    [problem] = check_body("{{ customer }}", KEYS)
    assert 'Unknown merge field "{{ customer }}" on line 1' in problem.message
    assert "customer.name, customer.email" in problem.message
    assert check_body("{% if customer %}known{% endif %}", KEYS) == []
    assert check_body("{{ customer['name'] }}", KEYS) == []


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        (
            'Intro\n\n{% if refund.method == "card" %}\nCard text\n',
            3,
            "Line 3: the {% if %} section is never closed with {% endif %}.",
        ),
        ("a\n{% frobnicate %}", 2, '"{% frobnicate %}" is not a recognised tag'),
        ("a\nb\n{% endif %}", 3, "{% endif %} has no matching {% if %}"),
        ("Hello {{ customer.name }\nmore", 1, "a {{ merge field }} is not closed with }}"),
        ("x\n{% if %}y{% endif %}", 2, "missing its condition"),
        ("{% else %}", 1, "must be inside an {% if %} section"),
        ("{{ }}", 1, "needs a merge field name"),
        ("{{ customer.name | }}", 1, "the template syntax is not valid"),
    ],
)
def test_syntax_errors_are_reported_not_raised(body, line, expected):
    problems = check_body(body, KEYS)
    assert problems, body
    assert problems[0].line == line
    assert expected in problems[0].message
    with pytest.raises(AuthoringError) as caught:
        merge(body, {}, KEYS)
    assert caught.value.problems == problems


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{% for x in customer %}{{ x }}{% endfor %}", "{% for %} loops are not allowed"),
        ("{% set total = 1 %}", "{% set %} is not allowed"),
        ("{% set block %}x{% endset %}", "{% set %} is not allowed"),
        ("{% include 'other.md' %}", "{% include %} is not allowed"),
        ("{% import 'x' as y %}", "{% import %} is not allowed"),
        ("{% from 'x' import y %}", "{% from ... import %} is not allowed"),
        ("{% extends 'base' %}", "{% extends %} is not allowed"),
        ("{% block body %}x{% endblock %}", "{% block %} is not allowed"),
        ("{% macro m() %}x{% endmacro %}", "{% macro %} is not allowed"),
        ("{% filter upper %}x{% endfilter %}", "{% filter %} is not allowed"),
        ("{% autoescape false %}x{% endautoescape %}", "{% autoescape %} is not allowed"),
        ("{{ lipsum() }}", 'calling functions, like "lipsum()", is not allowed'),
        ("{{ customer.name.upper() }}", "calling functions"),
        ("{{ customer.name.__class__ }}", '"customer.name.__class__" is not allowed'),
        ("{{ ''.__class__.__mro__ }}", 'names starting with "_"'),
        ("{{ customer['__class__'] }}", "is not allowed"),
        ("{{ customer.name | safe }}", 'the "|safe" filter is not allowed'),
        ("{{ customer.name | attr('x') }}", 'the "|attr" filter is not allowed'),
        ("{{ 7 * 7 }}", "arithmetic"),
        ("{{ customer.name ~ 'x' }}", "arithmetic and joining"),
        ("{{ customer[0] }}", "lookups such as [0]"),
        ("{% if customer.name is defined %}x{% endif %}", '"is defined" tests are not allowed'),
        ("{% if refund.amount > '100' %}x{% endif %}", 'the ">" comparison is not allowed'),
        ("{% if refund.amount == 100 %}x{% endif %}", "compare them with quoted text"),
    ],
)
def test_disallowed_constructs_are_reported(body, expected):
    problems = check_body("Some text\n" + body, KEYS)
    assert problems, body
    assert expected in messages(problems)
    assert all(p.line in (2, None) for p in problems)
    assert "not allowed in documents" in messages(problems) or "quoted text" in messages(problems)


def test_allowed_constructs_pass():
    body = (
        "{{ customer.name | upper }} {{ customer.name|lower|title|trim }}\n"
        '{{ refund.reason | default("Not stated") }} {{ order.number | replace("-", " ") }}\n'
        '{% if refund.method == "card" and not refund.reason %}a'
        '{% elif refund.method in ("bank transfer", "transfer") or customer %}b'
        "{% else %}c{% endif %}\n"
        "{# a comment for staff #}{% raw %}{{ shown as-is }}{% endraw %}"
    )
    assert check_body(body, KEYS) == []


@pytest.mark.parametrize(
    "body",
    [None, 42, b"bytes", "{%" * 5000, "{{" + "(" * 3000 + "x" + ")" * 3000 + "}}", "x" * 300_000],
)
def test_check_body_never_raises(body):
    problems = check_body(body, KEYS)  # type: ignore[arg-type]
    assert problems
    assert all(isinstance(p, Problem) and p.message for p in problems)


def test_bad_merge_key_definitions_are_problems():
    keys = [MergeKey("order", "Order", "1"), MergeKey("order.number", "No", "2")]
    assert 'cannot also be a group of fields ("order.number")' in messages(check_body("x", keys))
    assert "not a valid name" in messages(check_body("x", [MergeKey("_secret", "S", "")]))


# --- merge -----------------------------------------------------------------------------------


def test_merge_inserts_values_literally():
    merged = merge("Hello {{ customer.name }}!", {"customer.name": INJECTION}, KEYS)
    tokens = MarkdownIt("commonmark", {"html": False}).enable("table").parseInline(merged)
    children = tokens[0].children or []
    assert [c.type for c in children] == ["text"]
    assert children[0].content == f"Hello {INJECTION}!"


def test_values_cannot_start_blocks_or_break_tables():
    body = "{{ customer.name }}\n\n| A | B |\n| - | - |\n| x | {{ order.number }} |\n"
    values = {"customer.name": "# Heading\n\n- item\n1. one", "order.number": "a | b"}
    types = {
        t.type for t in MarkdownIt("commonmark").enable("table").parse(merge(body, values, KEYS))
    }
    assert not types & {"heading_open", "bullet_list_open", "ordered_list_open", "html_block"}
    text = pdf_text(render(body, values))
    assert "# Heading - item 1. one" in text
    assert "a | b" in text


def test_merge_never_reevaluates_values():
    merged = merge("{{ customer.name }}", {"customer.name": "{{ 7*7 }} {% if x %}"}, KEYS)
    assert "49" not in merged


def test_default_filter_applies_to_empty_values():
    body = '{{ refund.reason | default("Not stated") }}'
    assert merge(body, {"refund.reason": ""}, KEYS) == "Not stated"
    assert merge(body, {}, KEYS) == "Not stated"
    assert merge(body, {"refund.reason": "Late"}, KEYS) == "Late"


def test_field_names_that_shadow_dict_methods_use_the_value():
    keys = [MergeKey("order.items", "Items", "3 mugs"), MergeKey("order.values", "V", "")]
    assert merge("{{ order.items }}|{{ order.values }}", {"order.items": "2 mugs"}, keys) == (
        "2 mugs|"
    )


# --- render_pdf ------------------------------------------------------------------------------

CONDITIONAL = """\
# Refund

{% if refund.method == "card" %}
Refunded to your card.
{% elif refund.method == "bank transfer" %}
Refunded by bank transfer.
{% else %}
We will contact you about payment.
{% endif %}

End of document.
"""


@pytest.mark.parametrize(
    ("method", "shown", "hidden"),
    [
        ("card", "Refunded to your card.", ["bank transfer", "contact you"]),
        ("bank transfer", "Refunded by bank transfer.", ["your card", "contact you"]),
        ("cheque", "We will contact you about payment.", ["your card", "bank transfer"]),
        ("", "We will contact you about payment.", ["your card", "bank transfer"]),
    ],
)
def test_conditional_sections_follow_the_merge_value(method, shown, hidden):
    text = pdf_text(render(CONDITIONAL, {"refund.method": method}))
    assert shown in text
    assert "End of document." in text
    for phrase in hidden:
        assert phrase not in text


def test_refund_example_switches_between_card_and_bank_transfer():
    values = sample_values(KEYS)
    card = pdf_text(render(REFUND_EXAMPLE, values))
    values["refund.method"] = "Bank Transfer"
    bank = pdf_text(render(REFUND_EXAMPLE, values))
    assert "payment card you used" in card and "by bank transfer" not in card
    assert "by bank transfer" in bank and "payment card you used" not in bank


def test_table_of_merge_values_renders_the_values():
    body = (
        "| Detail | Value |\n| --- | --- |\n"
        "| Order number | {{ order.number }} |\n| Refund amount | {{ refund.amount }} |\n"
    )
    text = pdf_text(render(body, {"order.number": "ORD-77", "refund.amount": "€12.50"}))
    assert "Order number" in text and "ORD-77" in text
    assert "Refund amount" in text and "€12.50" in text


def test_unicode_names_survive_into_the_pdf_text():
    name = "Zoë Łukasiewicz-Παπαδοπούλου"
    text = pdf_text(
        render("Dear {{ customer.name }},\n\n**{{ customer.name }}**", {"customer.name": name})
    )
    assert text.count(name) == 2
    assert "Ñandú Ąęśćż" in pdf_text(render("Señor Ñandú Ąęśćż"))


def test_injected_markup_appears_literally():
    body = (
        "# Title\n\nName: {{ customer.name }}\n\n"
        "| A | B |\n| - | - |\n| x | {{ customer.name }} |\n"
    )
    pdf = render(body, {"customer.name": INJECTION})
    text = pdf_text(pdf)
    assert text.count(INJECTION) == 2
    assert "49" not in text
    assert text.splitlines()[0] == "Title"


def test_raw_html_in_the_body_is_shown_as_text():
    text = pdf_text(
        render("Hello <b>there</b> &amp; <script>alert(1)</script>\n\n<div>block</div>")
    )
    assert "Hello <b>there</b> & <script>alert(1)</script>" in text
    assert "<div>block</div>" in text


def test_missing_and_empty_values_give_empty_text():
    body = "Name: [{{ customer.name }}] Email: [{{ customer.email }}] Date: [{{ order.date }}]"
    text = pdf_text(render(body, {"customer.name": "", "order.date": None}))  # type: ignore[dict-item]
    assert "Name: [] Email: [] Date: []" in text
    assert "None" not in text and "Undefined" not in text


def test_markdown_features_render():
    body = (
        "# Heading one\n\n## Heading two\n\n### Heading three\n\n"
        "Plain, **bold** and *italic* text.\n\n"
        "- first\n- second\n  - nested\n\n3. three\n4. four\n\n---\n\n> quoted\n\n"
        "    code block\n\nA [link](https://example.com) and ![alt text](/etc/passwd).\n"
    )
    text = pdf_text(render(body))
    for phrase in (
        "Heading one",
        "Heading two",
        "Heading three",
        "Plain, bold and italic text.",
        "first",
        "nested",
        "3.",
        "four",
        "quoted",
        "code block",
        "A link and alt text.",
    ):
        assert phrase in text


def test_page_numbers_and_title_metadata():
    pdf = render("Short.", title="Service change addendum: Łódź, Ελλάδα")
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.metadata is not None
    assert reader.metadata.title == "Service change addendum: Łódź, Ελλάδα"
    assert "Page 1 of 1" in reader.pages[0].extract_text()
    width, height = (float(v) for v in reader.pages[0].mediabox.upper_right)
    assert (round(width), round(height)) == (595, 842)  # A4


def test_long_document_spans_several_pages():
    sections = "\n\n".join(
        f"## Section {n}\n\n" + "This paragraph explains the terms in plain language. " * 12
        for n in range(1, 16)
    )
    pages = pdf_pages(render(sections))
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page
    assert "Section 1\n" in pages[0]
    assert "Section 15" in "".join(pages[-2:])  # the last page may hold only signature room


@pytest.mark.parametrize("paragraphs", [20, 24, 27, 30])
def test_room_for_signatures_after_the_last_paragraph(paragraphs):
    body = "\n\n".join(f"Paragraph {n} of the agreement." for n in range(paragraphs))
    pdf = render(body)
    document = pdfium.PdfDocument(pdf)
    try:
        page = document[len(document) - 1]
        textpage = page.get_textpage()
        bottoms = [textpage.get_charbox(i)[1] for i in range(textpage.count_chars())]
        footer_top = 2 * 28.35 - 10
        content = [b for b in bottoms if b > footer_top]
        lowest = min(content, default=page.get_height())
        assert lowest - 2 * 28.35 >= 6 * 28.35 - 1  # 6 cm free above the bottom margin
    finally:
        document.close()


def test_sample_watermark_only_on_previews():
    body = "\n\n".join(["Text. " * 80] * 12)
    sample = pdf_pages(render(body, sample=True))
    assert len(sample) >= 2 and all("SAMPLE" in page for page in sample)
    assert "SAMPLE" not in pdf_text(render(body))


def test_render_raises_for_a_body_with_problems():
    with pytest.raises(AuthoringError) as caught:
        render("{{ customer.nmae }}")
    assert caught.value.problems[0].line == 1
    assert isinstance(caught.value, ValueError)


def test_refund_authorization_artifacts():
    values = sample_values(KEYS)
    values["customer.name"] = "Zoë Łukasiewicz-Παπαδοπούλου"
    pdf = render_pdf(
        REFUND_EXAMPLE, values, KEYS, title="Refund authorization ORD-104233", sample=False
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "authored-refund.pdf").write_bytes(pdf)
    document = pdfium.PdfDocument(pdf)
    try:
        image = document[0].render(scale=1.5).to_pil()
        image.save(ARTIFACTS / "authored-refund-p1.png")
    finally:
        document.close()
    assert image.size == (893, 1263)
    text = pdf_text(pdf)
    assert "Refund authorization" in text
    assert "Zoë Łukasiewicz-Παπαδοπούλου" in text
    assert "€149.90" in text and "ORD-104233" in text
    assert "payment card you used" in text
    assert re.search(r"Page 1 of \d", text)
    assert "{{" not in text and "{%" not in text and "\\" not in text


def test_rendering_is_deterministic():
    values = sample_values(KEYS)
    first = render_pdf(REFUND_EXAMPLE, values, KEYS, title="Refund")
    assert render_pdf(REFUND_EXAMPLE, values, KEYS, title="Refund") == first
    assert render_pdf(REFUND_EXAMPLE, values, KEYS, title="Refund", sample=True) != first
