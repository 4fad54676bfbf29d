"""Reading on a phone, in Chromium at 390x844 (device pixel ratio 3): the authored refund as
text (nothing under 16 px, no sideways scroll, fields inline, "View as PDF"), an uploaded
2-page PDF as page images (2x, lazy after the first page, labelled boxes, full screen)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from tests.browser import PHONE, Tab, no_sideways_scroll, open_tab
from tests.smtp import SmtpServer
from tests.test_reading import uploaded_refund
from tests.test_signing_browser import (  # noqa: F401
    accessible,
    app,
    link_path,
    mailer,
    send,
    shot,
)

pytestmark = pytest.mark.browser

PHONE3 = {**PHONE, "device_scale_factor": 3}


@pytest.fixture
def phone3(browser: Browser, base_url: str):
    """The phone of the issue: 390x844 at device pixel ratio 3."""
    with open_tab(browser, base_url, **PHONE3) as tab:
        yield tab


def small_text(page: Page, selector: str) -> list[str]:
    """Elements under ``selector`` holding text whose computed font size is under 16 px."""
    return page.evaluate(
        """selector => {
            const out = [];
            const root = document.querySelector(selector);
            const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                if (!node.textContent.trim()) { continue; }
                const el = node.parentElement;
                if (!el.getClientRects().length) { continue; }
                const size = parseFloat(getComputedStyle(el).fontSize);
                if (size < 16) { out.push(`${el.tagName}.${el.className}: ${size}px`); }
            }
            for (const el of root.querySelectorAll('td[data-label]')) {
                const size = parseFloat(getComputedStyle(el, '::before').fontSize);
                if (size < 16) { out.push(`td::before: ${size}px`); }
            }
            return out;
        }""",
        selector,
    )


def open_document(tab: Tab, link: str, public_id: str) -> None:
    """From the signing link (a path, or a URL on any host) to the document, past the
    disclosure."""
    tab.goto(urlsplit(link).path)
    expect(tab.page).to_have_url(tab.url(f"/sign/{public_id}"))
    tab.page.get_by_role("button", name="I agree to use electronic records and signatures").click()
    expect(tab.page.get_by_role("button", name="Adopt and sign", exact=True)).to_be_visible()


def test_authored_refund_reads_on_a_phone_without_zooming(
    phone3: Tab,
    app: Flask,  # noqa: F811
    mailer: SmtpServer,  # noqa: F811
    send,  # noqa: F811
):
    sent = send(auth_method="link")
    page = phone3.page
    open_document(phone3, link_path(mailer), sent.public_id)
    reading = page.locator("article.reading")
    expect(reading.get_by_role("heading", name="Refund details")).to_be_visible()
    assert not small_text(page, "article.reading")
    # the whole signer page, its header (document title) and footer too
    assert not small_text(page, "body")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    no_sideways_scroll(page)
    # the table fits inside the text column
    table = reading.locator("table").first.bounding_box()
    box = reading.bounding_box()
    assert table and box and table["x"] + table["width"] <= box["x"] + box["width"] + 0.5
    # the fields are in the text, after the last paragraph, and lead to their inputs
    sign = reading.locator('.reading-field[data-key="customer_signature"]')
    expect(sign).to_contain_text("Sign here")
    expect(reading.locator('.reading-field[data-key="full_name"]')).to_contain_text("Zoë")
    photo = reading.locator('.reading-field[data-key="receipt_photo"]')
    expect(photo).to_contain_text("Photo of the receipt")
    accessible(page)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "reading-phone-top.png")
    shot(page, "reading-phone-fields.png", sign)
    phone3.screenshot("reading-phone-full.png")
    # typing in the form shows in the text
    page.get_by_label("Full name", exact=True).first.fill("Zoë Ł. Rivera")
    expect(reading.locator('.reading-field[data-key="full_name"]')).to_contain_text("Zoë Ł. Rivera")
    sign.click()
    expect(page.locator("#adopt-heading")).to_be_in_viewport()
    # nothing looks signed until the signature is adopted
    expect(sign).to_contain_text("Sign here")
    page.get_by_role("button", name="Adopt this signature").click()
    expect(sign.locator(".reading-field-value")).to_have_text("Signed")
    expect(sign).to_have_class(re.compile(r"\bis-done\b"))
    # "View as PDF" is the exact record
    pdf_link = reading.get_by_role("link", name="View as PDF").get_attribute("href")
    assert pdf_link
    response = page.request.get(phone3.url(pdf_link))
    assert response.status == 200 and response.headers["content-type"] == "application/pdf"
    assert response.body().startswith(b"%PDF-")
    phone3.assert_clean()


def test_uploaded_pdf_shows_sharp_lazy_pages_with_labelled_boxes(
    phone3: Tab,
    app: Flask,  # noqa: F811
    mailer: SmtpServer,  # noqa: F811
    send,  # noqa: F811
):
    public_id, link = uploaded_refund(app)
    page = phone3.page
    open_document(phone3, link, public_id)
    images = page.locator(".doc-pages figure.page > img")
    expect(images).to_have_count(2)
    first, second = images.nth(0), images.nth(1)
    assert first.get_attribute("loading") != "lazy"
    assert second.get_attribute("loading") == "lazy"
    for img in (first, second):
        assert img.get_attribute("width") and img.get_attribute("height")
        assert "800w" in img.get_attribute("srcset") and "1600w" in img.get_attribute("srcset")
    expect(first).to_have_js_property("complete", True)
    # the browser took the 1600-pixel drawing: at least two image pixels per CSS pixel
    assert first.evaluate("img => img.currentSrc").endswith("-1600w")
    shown = first.evaluate("img => img.getBoundingClientRect().width")
    assert 1600 / shown >= 2, shown
    # the boxes say what they are and show what is typed
    marker = page.locator('.field-marker[data-key="order_note"]')
    expect(marker.locator(".marker-tag")).to_have_text("Your note")
    page.get_by_label("Your note").fill("Box was wet")
    expect(marker.locator(".marker-value")).to_have_text("Box was wet")
    expect(page.locator('.field-marker[data-key="customer_signature"] .marker-tag')).to_have_text(
        "Customer signature"
    )
    no_sideways_scroll(page)
    accessible(page)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "reading-phone-uploaded.png")
    # each page opens alone, full screen, where two fingers zoom
    zoom = page.get_by_role("link", name="Open page 1 full screen to zoom")
    href = zoom.get_attribute("href")
    assert href and href.endswith("/pages/1-1600w")
    second.scroll_into_view_if_needed()
    expect(second).to_have_js_property("complete", True)
    zoom.click()
    expect(page).to_have_url(phone3.url(href))
    assert page.evaluate("document.contentType") == "image/webp"
    phone3.assert_clean()


def test_desktop_shows_the_text_and_the_pages_in_a_wide_column(
    desktop: Tab,
    app: Flask,  # noqa: F811
    mailer: SmtpServer,  # noqa: F811
    send,  # noqa: F811
):
    sent = send(auth_method="link")
    page = desktop.page
    open_document(desktop, link_path(mailer), sent.public_id)
    reading = page.locator("article.reading")
    assert 600 <= reading.evaluate("el => el.getBoundingClientRect().width") <= 760
    assert not small_text(page, "article.reading")
    no_sideways_scroll(page)
    accessible(page)
    desktop.screenshot("reading-desktop.png")
    public_id, link = uploaded_refund(app)
    open_document(desktop, link, public_id)
    first = page.locator(".doc-pages figure.page > img").first
    expect(first).to_have_js_property("complete", True)
    assert first.evaluate("img => img.currentSrc").endswith("-800w")  # a desktop at 1x
    no_sideways_scroll(page)
    accessible(page)
    desktop.screenshot("reading-desktop-uploaded.png")
    desktop.assert_clean()
