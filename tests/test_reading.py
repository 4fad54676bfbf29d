"""Reading on a phone, without a browser: the reading view of an authored document (its text,
fields in place, escaped, the same bytes as the PDF), page images at two widths for uploaded
PDFs (srcset, lazy loading, cached privately, the gate), labelled field boxes."""

from __future__ import annotations

import hashlib
import io
import re

from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import select

from portal.documents import authoring
from portal.documents.authoring import rendering
from portal.documents.pages import READING_WIDTHS, render_document
from portal.envelopes.models import Envelope
from portal.extensions import db
from tests.test_signing import _csrf, _path, sent  # noqa: F401

HOSTILE = "**Bob** <script>alert(1)</script> {{ 7*7 }} | x <img src=x onerror=alert(2)>"


def _opened(app, link: str, public_id: str):
    client = app.test_client()
    client.get(_path(link))
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    return client, token


def test_authored_document_reads_as_text_with_fields_in_place(app, sent):  # noqa: F811
    _, public_id, link = sent()
    client, _ = _opened(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    reading = page[page.index('<article class="reading"') : page.index("</article>")]
    assert "<h2>Refund authorization</h2>" in reading and "<h3>Refund details</h3>" in reading
    assert '<td data-label="Information">' in reading
    assert 'class="doc-pages"' not in page, "no page images for an authored text"
    assert f'href="/sign/{public_id}/document.pdf">View as PDF</a>' in reading
    # the fields come after the last paragraph, where the PDF has them, in reading order
    last = reading.index("Please keep a copy of this document")
    sign = reading.index('data-key="customer_signature"')
    assert (
        last
        < sign
        < reading.index('data-key="date_signed"')
        < reading.index('data-key="full_name"')
    )
    assert 'href="#adopt-heading"' in reading and "Sign here" in reading
    assert 'href="#f-full_name"' in reading and "Zoë Łukasiewicz" in reading  # prefilled
    assert 'href="#f-receipt_photo"' in reading and "Tap to fill in (optional)" in reading
    # the inputs keep their names in the form
    assert 'name="f-receipt_photo"' in page and 'name="typed_name"' in page


def test_reading_view_is_from_the_bytes_sent_and_escaped(app, sent, monkeypatch):  # noqa: F811
    from tests.test_envelopes import REFUND_VALUES

    monkeypatch.setitem(REFUND_VALUES, "refund.reason", HOSTILE)
    envelope_id, public_id, link = sent()
    client, _ = _opened(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "**Bob** &lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }} | x &lt;img" in page
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        version = envelope.version
        keys = [authoring.MergeKey(k["key"], k["label"], k["sample"]) for k in version.merge_keys]
        pdf, _ = rendering.laid_out(
            version.authored_body, envelope.merge_data, keys, title=version.template.name
        )
        assert hashlib.sha256(pdf).hexdigest() == envelope.original_sha256
        assert pdf == authoring.render_pdf(
            version.authored_body, envelope.merge_data, keys, title=version.template.name
        )


def uploaded_refund(app) -> tuple[str, str]:
    """The refund form as an uploaded 2-page PDF (fields on both pages), approved and sent to
    one customer with a link only (after seed-demo); returns the envelope's public id and
    the signing link."""
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.documents.geometry import Rect
    from portal.envelopes import operations as envelopes
    from portal.envelopes.operations import RecipientInput
    from portal.library import operations as library

    pdf = authoring.render_pdf(
        authoring.REFUND_EXAMPLE,
        {k.key: k.sample for k in authoring.REFUND_MERGE_KEYS},
        authoring.REFUND_MERGE_KEYS,
        title="Refund authorization",
    )
    with app.app_context():
        admin = db.session.scalars(select(User).where(User.email == "admin@demo.example")).one()
        reviewer = db.session.scalars(
            select(User).where(User.email == "compliance@demo.example")
        ).one()
        version = library.create_from_pdf(
            "Refund form (PDF)", "refund_authorization", admin.team, pdf, "refund.pdf", by=admin
        )
        note = library.add_field(version, "text", 1, Rect(300, 330, 220, 22), "customer", by=admin)
        library.update_field(note, {"label": "Your note", "key": "order_note", "required": False},
                             by=admin)  # fmt: skip
        sign = library.add_field(version, "signature", 2, Rect(57, 680, 200, 54), "customer",
                                 by=admin)  # fmt: skip
        library.update_field(sign, {"label": "Customer signature", "key": "customer_signature"},
                             by=admin)  # fmt: skip
        library.add_field(version, "date_signed", 2, Rect(300, 710, 120, 22), "customer", by=admin)
        library.submit(version, by=admin)
        library.approve(version, by=reviewer)
        person = RecipientInput(role="customer", name="Zoë Łukasiewicz", email="zoe@example.com",
                                auth_method="link")  # fmt: skip
        envelope, links = envelopes.create_and_send(version, {}, [person], by=admin)
        return envelope.public_id, next(iter(links.values()))


def test_a_spanish_signer_reads_the_spanish_text(app, sent):  # noqa: F811
    _, public_id, link = sent(locale="es")
    client, _ = _opened(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    reading = page[page.index('<article class="reading"') : page.index("</article>")]
    assert 'lang="es"' in reading and "Autorización de reembolso" in reading
    assert "Datos del reembolso" in reading and "Refund details" not in reading
    assert "Firme aquí" in reading and "Ver como PDF" in reading


def _webp_kind(data: bytes) -> str:
    """ "lossless" or "lossy", from the WebP's first chunk."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return {b"VP8L": "lossless", b"VP8 ": "lossy", b"VP8X": "extended"}[data[12:16]]


def _photo_pdf() -> bytes:
    """One A4 page that is a photograph (smooth gradients with noise: many colours)."""
    import random

    rng = random.Random(7)
    photo = Image.new("RGB", (600, 840))
    pixels = photo.load()
    for y in range(840):
        for x in range(600):
            n = rng.randint(-12, 12)
            pixels[x, y] = (
                min(255, max(0, x * 255 // 600 + n)),
                min(255, max(0, y * 255 // 840 + n)),
                128 + n,
            )
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    canvas.drawImage(ImageReader(photo), 0, 0, *A4)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def test_text_pages_are_lossless_webp_and_photos_lossy_at_both_widths():
    text = authoring.render_pdf(
        authoring.REFUND_EXAMPLE,
        {k.key: k.sample for k in authoring.REFUND_MERGE_KEYS},
        authoring.REFUND_MERGE_KEYS,
        title="Refund",
    )
    pages = render_document(text, 1.5, 40 << 20, reading_cpu_seconds=60)
    for page in pages:
        assert [r.nominal for r in page.renditions] == list(READING_WIDTHS)
        for r in page.renditions:
            assert r.mimetype == "image/webp" and _webp_kind(r.image) == "lossless"
            image = Image.open(io.BytesIO(r.image))
            assert image.format == "WEBP" and image.size == (r.width_px, r.height_px)
            assert r.width_px == r.nominal
    assert sum(len(p.renditions[0].image) for p in pages) < 80 * 1024  # 2 pages at 800 px
    photo = render_document(_photo_pdf(), 1.5, 40 << 20, reading_cpu_seconds=60)[0]
    assert {_webp_kind(r.image) for r in photo.renditions} == {"lossy"}
    # past its share of the sandbox's CPU time a page keeps only the editor's image
    assert render_document(text, 1.5, 40 << 20, reading_cpu_seconds=0)[0].renditions == ()


def test_uploaded_pages_are_served_at_two_widths_privately_behind_the_gate(app, sent):  # noqa: F811
    # (the sent fixture has seeded the demo team)
    public_id, link = uploaded_refund(app)
    client = app.test_client()
    client.get(_path(link))
    assert client.get(f"/sign/{public_id}/pages/1-800w").status_code == 403  # disclosure first
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    images = re.findall(r"<img [^>]+>", page)
    assert len(images) == 2
    assert 'fetchpriority="high"' in images[0] and 'loading="lazy"' not in images[0]
    assert 'loading="lazy"' in images[1]
    for n, img in enumerate(images, start=1):
        assert f"/pages/{n}-800w 800w, /sign/{public_id}/pages/{n}-1600w 1600w" in img
        assert 'width="800" height="1132"' in img
    assert f'href="/sign/{public_id}/pages/1-1600w">Open page 1 full screen to zoom' in page
    assert 'class="marker-tag" aria-hidden="true">Your note</span>' in page
    total = 0
    for n in (1, 2):
        for width in READING_WIDTHS:
            got = client.get(f"/sign/{public_id}/pages/{n}-{width}w")
            assert got.status_code == 200 and got.mimetype == "image/webp"
            assert got.headers["Cache-Control"] == "private, max-age=3600"
            assert Image.open(io.BytesIO(got.data)).size[0] == width
            again = client.get(
                f"/sign/{public_id}/pages/{n}-{width}w",
                headers={"If-None-Match": got.headers["ETag"]},
            )
            assert again.status_code == 304 and not again.data
            total += len(got.data) if width == 800 else 0
    assert total < 80 * 1024, total
    assert client.get(f"/sign/{public_id}/pages/1-900w").status_code == 404
    assert client.get(f"/sign/{public_id}/pages/3-800w").status_code == 404
    assert client.get(f"/sign/{public_id}").headers["Cache-Control"] == "no-store"
    assert client.get(f"/sign/{public_id}/pages/1.png").headers["Cache-Control"] == (
        "private, max-age=3600"
    )
    # another browser without the link's session sees nothing
    assert app.test_client().get(f"/sign/{public_id}/pages/1-800w").status_code == 404


def test_a_text_that_no_longer_lays_out_to_the_bytes_sent_shows_its_pages(app, sent):  # noqa: F811
    envelope_id, public_id, link = sent()
    with app.app_context():
        envelope = db.session.get(Envelope, envelope_id)
        envelope.merge_data = {**envelope.merge_data, "order.number": "ORD-CHANGED"}
        db.session.commit()
    client, _ = _opened(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert '<article class="reading"' not in page and "ORD-CHANGED" not in page
    assert 'class="doc-pages"' in page


def test_pages_rendered_before_renditions_show_their_single_image(app, sent):  # noqa: F811
    # (the sent fixture has seeded the demo team)
    public_id, link = uploaded_refund(app)
    with app.app_context():
        envelope = db.session.execute(
            select(Envelope).where(Envelope.public_id == public_id)
        ).scalar_one()
        envelope.pages = [{k: v for k, v in p.items() if k != "renditions"} for p in envelope.pages]
        db.session.commit()
    client, _ = _opened(app, link, public_id)
    page = client.get(f"/sign/{public_id}").get_data(as_text=True)
    images = re.findall(r"<img [^>]+>", page)
    assert f'src="/sign/{public_id}/pages/1.png"' in images[0] and "srcset" not in images[0]
    assert 'loading="lazy"' in images[1]
    assert f'href="/sign/{public_id}/pages/1.png">Open page 1 full screen' in page
    assert client.get(f"/sign/{public_id}/pages/1-800w").status_code == 404
