"""Browser tests of the template field editor (static/js/field-editor.js).

A phone adds a field by tapping the page and drags it with real touch events (CDP);
a desktop adds, drags and resizes with the mouse; the keyboard moves and resizes a
field; a move that cannot be sent is reported and undone on screen. Every change is
checked where it counts: the field's rectangle stored in PDF points, and the audit
chain. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import CDPSession, Locator, Page, expect
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas
from sqlalchemy import select

from portal import audit
from portal.accounts.admin import find_team
from portal.accounts.models import User
from portal.documents.geometry import Rect
from portal.extensions import db
from portal.library import operations as ops
from portal.library.models import Field, TemplateVersion
from tests.browser import (
    Tab,
    describe_violations,
    no_sideways_scroll,
    overlays_line_up,
    serious_violations,
)
from tests.conftest import ARTIFACTS, Staff, audit_events

pytestmark = pytest.mark.browser

PAGE_W, PAGE_H = A4  # points: 595.28 x 841.89


def refund_pdf() -> bytes:
    """Two A4 pages of a refund form with lines where fields would go."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for number in (1, 2):
        pdf.setFont("Helvetica-Bold", 18)
        pdf.drawString(72, PAGE_H - 90, f"Refund authorisation — page {number}")
        pdf.setFont("Helvetica", 11)
        lines = [
            "I ask for the amount below to be refunded to the account I name here.",
            "The refund is made within 10 working days of this signed form.",
            "Customer name: ____________________________",
            "IBAN: ______________________________________",
            "Amount: ____________________",
        ]
        for index, line in enumerate(lines):
            pdf.drawString(72, PAGE_H - 140 - 24 * index, line)
        pdf.line(72, 160, 300, 160)
        pdf.drawString(72, 145, "Signature")
        pdf.line(340, 160, 520, 160)
        pdf.drawString(340, 145, "Date")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_template(app: Flask, staff: Staff) -> int:
    """A draft template from the generated PDF (page images render inline); its version id."""
    with app.app_context():
        user = db.session.get(User, staff.id)
        version = ops.create_from_pdf(
            "Refund authorisation",
            "refund_authorization",
            find_team("Customer Care"),
            refund_pdf(),
            "refund.pdf",
            by=user,
        )
        assert version.images_status == "ready"
        return version.id


def add_field_directly(app: Flask, staff: Staff, version_id: int, kind: str, at: Rect) -> int:
    """A field placed by the operations layer (``at`` in display points of page 1)."""
    with app.app_context():
        version = db.session.get(TemplateVersion, version_id)
        field = ops.add_field(version, kind, 1, at, None, by=db.session.get(User, staff.id))
        return field.id


def stored(app: Flask, field_id: int) -> Rect:
    """A field's rectangle as stored: PDF points, origin at the bottom-left."""
    with app.app_context():
        field = db.session.get(Field, field_id)
        assert field is not None
        return Rect(field.x, field.y, field.w, field.h)


def field_ids(app: Flask, version_id: int) -> list[int]:
    with app.app_context():
        stmt = select(Field.id).where(Field.version_id == version_id).order_by(Field.id)
        return list(db.session.execute(stmt).scalars())


# ------------------------------------------------------------------ browser helpers


def saved(page: Page, action: Callable[[], None]) -> None:
    """Run ``action``, which changes the editor, and wait until the answer is swapped in."""
    page.evaluate("document.getElementById('editor').dataset.stale = 'yes'")
    with page.expect_response(
        lambda r: r.request.method == "POST" and "/library/versions/" in r.url
    ) as answer:
        action()
    response = answer.value
    assert response.status == 200, response.text()
    assert response.request.headers.get("x-csrftoken"), "the editor sent no CSRF header"
    expect(page.locator("#editor:not([data-stale])")).to_have_count(1)
    expect(page.locator("#editor")).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#request-error")).to_be_hidden()


def centre(locator: Locator) -> tuple[float, float]:
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    assert box, "not on screen"
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def points_per_px(page: Page, number: int = 1) -> float:
    """How many PDF points one CSS pixel of the rendered page image is."""
    box = page.locator(f"#page-{number} img").bounding_box()
    assert box
    return PAGE_W / box["width"]


def touch(cdp: CDPSession, kind: str, points: list[dict[str, Any]]) -> None:
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def touch_tap(cdp: CDPSession, x: float, y: float) -> None:
    touch(cdp, "touchStart", [{"x": x, "y": y, "id": 1}])
    touch(cdp, "touchEnd", [])


def touch_drag(cdp: CDPSession, x: float, y: float, dx: float, dy: float, steps: int = 8) -> None:
    touch(cdp, "touchStart", [{"x": x, "y": y, "id": 1}])
    for step in range(1, steps + 1):
        touch(cdp, "touchMove", [{"x": x + dx * step / steps, "y": y + dy * step / steps, "id": 1}])
    touch(cdp, "touchEnd", [])


def mouse_drag(page: Page, x: float, y: float, dx: float, dy: float) -> None:
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=10)
    page.mouse.up()


def overlays_line_up_boxes(page: Page) -> None:
    overlays_line_up(page, ".field-box", "data-field-id")


def screen_shot(page: Page, subject: Locator, name: str) -> None:
    """What the screen shows from the top of ``subject`` (in tests/artifacts/).

    Not full-page: Playwright's full-page capture re-emulates the screen (a phone loses
    its coarse pointer, so its touch-sized handles), and the sticky fields panel would be
    cut off at one screen's height anyway.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    subject.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.mouse.move(0, 0)
    page.evaluate("document.fonts.ready.then(() => true)")
    page.screenshot(path=str(ARTIFACTS / name), animations="disabled")


def audited(app: Flask, version_id: int) -> list[str]:
    with app.app_context():
        assert audit.verify().ok, "the audit chain does not verify"
    return [
        e.event
        for e in audit_events(app)
        if e.event.startswith("template.field") and e.subject_id == str(version_id)
    ]


# ------------------------------------------------------------------ tests


def test_phone_author_taps_a_signature_onto_the_page_and_drags_it_by_touch(
    phone: Tab, app: Flask, make_staff
):
    admin = make_staff("admin")
    version_id = make_template(app, admin)
    page = phone.page
    phone.sign_in(admin)
    phone.goto(f"/library/versions/{version_id}")
    expect(page.locator("#editor")).to_have_attribute("data-editable", "true")
    page.get_by_label("Add a field").select_option(label="Signature")
    cdp = page.context.new_cdp_session(page)

    # A scroll gesture over the page adds nothing.
    image = page.locator("#page-1 img")
    x, y = centre(image)
    touch_drag(cdp, x, y, 0, -120)
    page.wait_for_timeout(300)
    expect(page.locator(".field-box")).to_have_count(0)

    # A tap adds a signature field whose top-left corner is where the finger was.
    image.scroll_into_view_if_needed()
    frame = image.bounding_box()
    assert frame
    tap_x, tap_y = frame["x"] + frame["width"] * 0.15, frame["y"] + frame["height"] * 0.3
    saved(page, lambda: touch_tap(cdp, tap_x, tap_y))
    boxes = page.locator("#page-1 .field-box")
    expect(boxes).to_have_count(1)
    box = boxes.first
    expect(box).to_have_class(re.compile(r"\bfield-signature\b"))
    expect(box).to_have_class(re.compile(r"\bis-selected\b"))
    [field_id] = field_ids(app, version_id)
    added = stored(app, field_id)
    assert added.x == pytest.approx(PAGE_W * 0.15, abs=1.5)
    assert added.y + added.h == pytest.approx(PAGE_H * 0.7, abs=1.5)  # top edge, y upward
    overlays_line_up_boxes(page)

    # Drag it 80px right and 60px down with a finger.
    scale = points_per_px(page)
    x, y = centre(box)
    saved(page, lambda: touch_drag(cdp, x, y, 80, 60))
    moved = stored(app, field_id)
    assert moved.x - added.x == pytest.approx(80 * scale, abs=1.5)
    assert moved.y - added.y == pytest.approx(-60 * scale, abs=1.5)
    assert (moved.w, moved.h) == pytest.approx((added.w, added.h), abs=0.2)
    overlays_line_up_boxes(page)

    # A tap on the field selects it (and adds nothing).
    page.locator(f"#field-{field_id} > summary").click()
    expect(page.locator(f"#field-{field_id}")).not_to_have_attribute("open", "")
    x, y = centre(box)
    touch_tap(cdp, x, y)
    expect(page.locator(f"#field-{field_id}")).to_have_attribute("open", "")
    assert field_ids(app, version_id) == [field_id]

    events = audited(app, version_id)
    assert events == ["template.field_added", "template.field_moved"]
    no_sideways_scroll(page)
    screen_shot(page, page.locator("#editor"), "phone-template-editor.png")
    phone.assert_clean()


def test_desktop_author_adds_drags_and_resizes_a_field_with_the_mouse(
    desktop: Tab, app: Flask, make_staff
):
    admin = make_staff("admin")
    version_id = make_template(app, admin)
    page = desktop.page
    desktop.sign_in(admin)
    desktop.goto(f"/library/versions/{version_id}")
    page.get_by_label("Add a field").select_option(label="Text")

    image = page.locator("#page-1 img")
    image.scroll_into_view_if_needed()
    frame = image.bounding_box()
    assert frame
    saved(page, lambda: page.mouse.click(frame["x"] + 100, frame["y"] + frame["height"] * 0.2))
    box = page.locator("#page-1 .field-box")
    expect(box).to_have_count(1)
    expect(box).to_have_class(re.compile(r"\bfield-text\b"))
    [field_id] = field_ids(app, version_id)
    added = stored(app, field_id)
    scale = points_per_px(page)
    assert added.x == pytest.approx(100 * scale, abs=1)

    # Drag it.
    x, y = centre(box)
    saved(page, lambda: mouse_drag(page, x, y, 120, 40))
    moved = stored(app, field_id)
    assert moved.x - added.x == pytest.approx(120 * scale, abs=1)
    assert moved.y - added.y == pytest.approx(-40 * scale, abs=1)
    assert (moved.w, moved.h) == pytest.approx((added.w, added.h), abs=0.2)

    # Resize it by its corner: wider and taller, the top-left corner stays.
    handle = box.locator(".field-box-handle")
    expect(handle).to_be_visible()
    x, y = centre(handle)
    saved(page, lambda: mouse_drag(page, x, y, 60, 20))
    resized = stored(app, field_id)
    assert resized.w - moved.w == pytest.approx(60 * scale, abs=1)
    assert resized.h - moved.h == pytest.approx(20 * scale, abs=1)
    assert resized.x == pytest.approx(moved.x, abs=0.2)
    assert resized.y + resized.h == pytest.approx(moved.y + moved.h, abs=0.2)
    overlays_line_up_boxes(page)

    # A click without movement selects the field and opens its properties; nothing is saved.
    details = page.locator(f"#field-{field_id}")
    details.locator("> summary").click()
    expect(details).not_to_have_attribute("open", "")
    box.click()
    expect(details).to_have_attribute("open", "")
    expect(details.get_by_label("Left (pt)")).to_be_visible()
    assert stored(app, field_id) == resized

    events = audited(app, version_id)
    assert events == ["template.field_added", "template.field_moved", "template.field_moved"]
    violations = serious_violations(Axe().run(page).response)
    assert not violations, describe_violations(violations)

    page.locator(".editor-panel").evaluate("panel => { panel.scrollTop = 0; }")
    screen_shot(page, page.locator("#editor"), "desktop-template-editor.png")
    desktop.assert_clean()


def test_keyboard_moves_and_resizes_the_focused_field(desktop: Tab, app: Flask, make_staff):
    admin = make_staff("admin")
    version_id = make_template(app, admin)
    field_id = add_field_directly(app, admin, version_id, "date", Rect(100, 200, 0, 0))
    before = stored(app, field_id)
    page = desktop.page
    desktop.sign_in(admin)
    desktop.goto(f"/library/versions/{version_id}")

    box = page.locator(f'.field-box[data-field-id="{field_id}"]')
    box.focus()

    def five_big_steps_right() -> None:
        for _ in range(5):
            page.keyboard.press("Shift+ArrowRight")

    saved(page, five_big_steps_right)
    after = stored(app, field_id)
    assert after.x - before.x == pytest.approx(50, abs=0.2)
    assert (after.y, after.w, after.h) == pytest.approx((before.y, before.w, before.h), abs=0.2)
    expect(box).to_be_focused()  # the same field, in the fresh fragment

    def grow() -> None:
        page.keyboard.press("Alt+ArrowRight")
        page.keyboard.press("Alt+ArrowRight")
        page.keyboard.press("Alt+ArrowDown")

    saved(page, grow)
    grown = stored(app, field_id)
    assert (grown.w - after.w, grown.h - after.h) == pytest.approx((2, 1), abs=0.2)
    assert grown.x == pytest.approx(after.x, abs=0.2)
    expect(box).to_be_focused()

    details = page.locator(f"#field-{field_id}")
    details.locator("> summary").click()
    expect(details).not_to_have_attribute("open", "")
    box.focus()
    page.keyboard.press("Enter")
    expect(details).to_have_attribute("open", "")
    # One save per burst of keys (more only if the machine is slow between presses).
    events = audited(app, version_id)
    assert events[0] == "template.field_added"
    assert events[1:] and set(events[1:]) == {"template.field_moved"}
    desktop.assert_clean()


def test_a_move_that_cannot_be_saved_is_shown_and_put_back(desktop: Tab, app: Flask, make_staff):
    admin = make_staff("admin")
    version_id = make_template(app, admin)
    field_id = add_field_directly(app, admin, version_id, "checkbox", Rect(300, 300, 0, 0))
    before = stored(app, field_id)
    page = desktop.page
    desktop.sign_in(admin)
    desktop.goto(f"/library/versions/{version_id}")
    box = page.locator(f'.field-box[data-field-id="{field_id}"]')
    image = page.locator("#page-1 img")

    def offset() -> tuple[float, float]:
        """Where the box is drawn on its page image, in CSS pixels."""
        inner, outer = box.bounding_box(), image.bounding_box()
        assert inner and outer
        return inner["x"] - outer["x"], inner["y"] - outer["y"]

    where = offset()

    # The connection drops while the move is sent.
    page.route(re.compile(r"/place$"), lambda route: route.abort("internetdisconnected"))
    x, y = centre(box)
    mouse_drag(page, x, y, 150, 90)
    error = page.locator("#request-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Could not reach the portal")
    expect(page.locator("#editor")).not_to_have_attribute("aria-busy", "true")
    # The box goes back to where the field really is.
    assert offset() == pytest.approx(where, abs=0.5)
    assert stored(app, field_id) == before

    # Once the connection is back, the same move is saved.
    page.unroute(re.compile(r"/place$"))
    x, y = centre(box)
    saved(page, lambda: mouse_drag(page, x, y, 150, 90))
    after = stored(app, field_id)
    assert after.x - before.x == pytest.approx(150 * points_per_px(page), abs=1)
    desktop.assert_clean()
