"""The signer's document page on a phone: everything the browser transfers to show it.

Design budget (issue 14): a 2-page refund form, images included, <= 250 KB.

Setup: a temporary instance folder and SQLite database, ``flask portal seed-demo``, and two
envelopes to one customer (link-only) whose disclosure is accepted: the demo refund
authorization (an authored text: the reading view) and the same refund form uploaded as a
2-page PDF with a field on each page (page images). The portal runs in-process on a loopback
port (werkzeug); Debian's Chromium (Playwright) opens the signing link at 390x844 with device
pixel ratio 2 (and, as information, 3, and a 1280x800 desktop at 2), scrolls to the end so
that every lazy page image loads, and waits until the network is idle.

Weight: every same-origin response the page caused (document, stylesheets, scripts, images).
Text (HTML, CSS, JS) is counted gzipped at level 6, as the signer page benchmark does, since
the portal's server compresses it in production; images as served (WebP and PNG do not
compress further). KB = 1024 bytes.

Baseline: the same page as it was before the reading work, on the same run: the same HTML,
CSS and JS (a small overestimate: the old page had no reader.js) with each page shown as its
single PNG at 1.5 px per point (the template editor's image, which the signing page served
until then). The ratio is ours over that baseline.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.bench.common import REFUND_VALUES, environment, server_env

BUDGET_KB = 250
NAME = "signer page weight with images"
ENV = server_env("bench-page-weight-secret-key")
VIEWS: list[tuple[str, dict[str, Any], bool]] = [
    ("phone 390x844 @2x", {"width": 390, "height": 844, "scale": 2, "mobile": True}, True),
    ("phone 390x844 @3x", {"width": 390, "height": 844, "scale": 3, "mobile": True}, False),
    ("desktop 1280x800 @2x", {"width": 1280, "height": 800, "scale": 2, "mobile": False}, False),
]
TEXT_TYPES = ("text/html", "text/css", "text/javascript", "application/javascript")


@dataclass
class Transfer:
    """What one page view fetched, by kind, in bytes as counted (see the module docstring)."""

    sizes: dict[str, int] = field(default_factory=lambda: {"html": 0, "css": 0, "js": 0, "img": 0})
    images: list[str] = field(default_factory=list)

    @property
    def total_kb(self) -> float:
        return sum(self.sizes.values()) / 1024

    def add(self, url: str, content_type: str, body: bytes) -> None:
        kind = content_type.split(";")[0].strip()
        if kind.startswith("image/"):
            self.sizes["img"] += len(body)
            self.images.append(f"{urlsplit(url).path.rsplit('/', 1)[-1]} {len(body) / 1024:.0f} KB")
            return
        counted = len(gzip.compress(body, compresslevel=6)) if kind in TEXT_TYPES else len(body)
        if kind == "text/html":
            self.sizes["html"] += counted
        elif kind == "text/css":
            self.sizes["css"] += counted
        else:
            self.sizes["js"] += counted


def _uploaded_refund(app: Any) -> None:
    """The refund form as an uploaded 2-page PDF with a field on each page, approved."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.documents import authoring
    from portal.documents.geometry import Rect
    from portal.extensions import db
    from portal.library import operations as library

    pdf = authoring.render_pdf(
        authoring.REFUND_EXAMPLE, REFUND_VALUES, authoring.REFUND_MERGE_KEYS, title="Refund"
    )
    admin = db.session.execute(select(User).where(User.email == "admin@demo.example")).scalar_one()
    reviewer = db.session.execute(
        select(User).where(User.email == "compliance@demo.example")
    ).scalar_one()
    version = library.create_from_pdf(
        "Refund form (PDF)", "refund_authorization", admin.team, pdf, "refund.pdf", by=admin
    )
    note = library.add_field(version, "text", 1, Rect(300, 330, 220, 22), "customer", by=admin)
    library.update_field(note, {"label": "Your note", "required": False}, by=admin)
    library.add_field(version, "signature", 2, Rect(57, 680, 200, 54), "customer", by=admin)
    library.submit(version, by=admin)
    library.approve(version, by=reviewer)


def _prepare() -> tuple[Any, dict[str, str], list[int]]:
    """Migrate, seed, send both documents and consent; (app, {name: link path}, PNG sizes of
    the uploaded form's pages)."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from portal import create_app, storage
    from portal.accounts.models import User
    from portal.envelopes import operations as envelopes
    from portal.envelopes.operations import RecipientInput
    from portal.extensions import db
    from portal.library import operations as library
    from portal.library.models import Template
    from portal.signing import operations as signing

    app = create_app()
    links: dict[str, str] = {}
    with app.app_context():
        upgrade()
        seeded = app.test_cli_runner().invoke(args=["portal", "seed-demo"])
        if seeded.exit_code != 0:
            raise RuntimeError(f"seed-demo failed: {seeded.output}") from seeded.exception
        db.session.rollback()
        _uploaded_refund(app)
        agent = db.session.execute(
            select(User).where(User.email == "agent@demo.example")
        ).scalar_one()
        pngs: list[int] = []
        for name, values in (
            ("Refund authorization", REFUND_VALUES),
            ("Refund form (PDF)", {}),
        ):
            template = db.session.execute(
                select(Template).where(Template.name == name)
            ).scalar_one()
            customer = RecipientInput(
                role="customer", name="Zoë Łukasiewicz", email="zoe@example.com"
            )
            envelope, sent = envelopes.create_and_send(
                library.approved_version(template), values, [customer], by=agent
            )
            (recipient,) = envelope.recipients
            signing.give_consent(recipient.id)
            links[name] = urlsplit(sent[recipient.id]).path
            if name == "Refund form (PDF)":
                pngs = [len(storage.get(str(p["image_blob_id"]))) for p in envelope.pages]
        db.session.remove()
    return app, links, pngs


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def _view(browser: Any, base: str, link: str, view: dict[str, Any]) -> Transfer:
    """One fresh browser (empty cache) opening the link, scrolled to the end."""
    transfer = Transfer()
    context = browser.new_context(
        viewport={"width": view["width"], "height": view["height"]},
        device_scale_factor=view["scale"],
        is_mobile=view["mobile"],
        has_touch=view["mobile"],
    )
    try:
        page = context.new_page()
        bodies: list[Any] = []
        page.on("response", lambda r: bodies.append(r) if r.url.startswith(base) else None)
        page.goto(base + link, wait_until="networkidle")
        page.evaluate(
            """async () => {
                for (const img of document.querySelectorAll('img')) {
                    img.scrollIntoView();
                    await new Promise(r => setTimeout(r, 150));
                }
                window.scrollTo(0, document.documentElement.scrollHeight);
            }"""
        )
        page.wait_for_load_state("networkidle")
        page.wait_for_function("[...document.images].every(i => i.complete)")
        for response in bodies:
            if response.status == 200:
                transfer.add(
                    response.url, response.headers.get("content-type", ""), response.body()
                )
    finally:
        context.close()
    return transfer


def _report(label: str, ours: Transfer, baseline_kb: float | None, budgeted: bool) -> None:
    s = ours.sizes
    detail = (
        f"html {s['html'] / 1024:.1f}, css {s['css'] / 1024:.1f}, js {s['js'] / 1024:.1f},"
        f" images {s['img'] / 1024:.1f}"
    )
    line = f"{NAME}, {label}: ours {ours.total_kb:.1f} KB ({detail})"
    if baseline_kb is not None:
        line += f" / baseline {baseline_kb:.1f} KB = {ours.total_kb / baseline_kb:.2f}"
    if budgeted:
        verdict = "OK" if ours.total_kb <= BUDGET_KB else "OVER BUDGET (missed)"
        line += f"; budget {BUDGET_KB} KB: {verdict}"
    print(line, flush=True)
    if ours.images:
        print(f"  images: {', '.join(ours.images)}", flush=True)


def run() -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with tempfile.TemporaryDirectory(prefix="portal-bench-weight-") as folder:
        instance = os.path.join(folder, "instance")
        os.makedirs(instance)
        database = f"sqlite:///{os.path.join(folder, 'bench.db')}"
        with environment({**ENV, "PORTAL_INSTANCE": instance, "DATABASE_URL": database}):
            app, links, pngs = _prepare()
            with _serving(app) as base, sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    for label, view, budgeted in VIEWS:
                        authored = _view(browser, base, links["Refund authorization"], view)
                        _report(
                            f"authored refund (reading view), {label}", authored, None, budgeted
                        )
                        uploaded = _view(browser, base, links["Refund form (PDF)"], view)
                        text = sum(v for k, v in uploaded.sizes.items() if k != "img")
                        baseline = (text + sum(pngs)) / 1024
                        _report(
                            f"uploaded 2-page refund PDF, {label}", uploaded, baseline, budgeted
                        )
                finally:
                    browser.close()
            print(
                f"  baseline: the same page's HTML, CSS and JS with the pages as the PNGs the"
                f" page served before ({', '.join(f'{n / 1024:.0f} KB' for n in pngs)})",
                flush=True,
            )


if __name__ == "__main__":
    run()
