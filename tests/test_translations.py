"""Signer pages and messages in Spanish: the catalogue is complete and compiled."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from tests.test_signing import _csrf, _path, sent  # noqa: F401  (fixture)

CATALOG = Path(__file__).parents[1] / "portal" / "translations" / "es" / "LC_MESSAGES"


def test_every_signer_text_has_a_spanish_translation_and_the_mo_is_current(tmp_path):
    with open(CATALOG / "messages.po", "rb") as handle:
        po = read_po(handle)
    with open(CATALOG / "messages.mo", "rb") as handle:
        mo = read_mo(handle)
    untranslated = [m.id for m in po if m.id and not m.string]
    assert untranslated == []
    assert {m.id: m.string for m in po if m.id} == {m.id: m.string for m in mo if m.id}
    root = CATALOG.parents[3]
    extracted = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "-q", "extract", "-F", "babel.cfg",
         "-k", "_", "-k", "gettext", "-o", str(extracted), "."],
        cwd=root, check=True,
    )  # fmt: skip
    with open(extracted, "rb") as handle:
        template = read_po(handle)
    missing = {m.id for m in template if m.id} - {m.id for m in po if m.id}
    assert not missing, f"run `make translations` and translate: {sorted(missing)}"


def test_a_spanish_recipient_signs_in_spanish(app, sent):  # noqa: F811
    _, public_id, link = sent(locale="es")
    client = app.test_client()
    client.get(_path(link))
    consent = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert (
        'lang="es"' in consent
        and "Antes de empezar" in consent
        and "Derecho a una copia en papel" in consent
    )
    token = _csrf(client, f"/sign/{public_id}")
    client.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    document = client.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Adoptar y firmar" in document
    refused = client.post(
        f"/sign/{public_id}/sign",
        data={"csrf_token": token, "adoption": "typed", "typed_name": "Z"},
    )
    text = refused.get_data(as_text=True)
    assert (
        "Escriba su nombre completo para firmar." in text
        and "Confirme que esta es su firma." in text
    )
    assert (
        re.search(r"Gracias, ha firmado", client.get(f"/sign/{public_id}").get_data(as_text=True))
        is None
    )


def test_spanish_emails_are_spanish_throughout(app, sent):  # noqa: F811
    from sqlalchemy import select

    from portal.extensions import db
    from portal.mail import Message

    sent(locale="es")
    with app.app_context():
        message = db.session.execute(select(Message)).scalar_one()
    assert "Este es un mensaje automático" in message.text_body
    assert "O abra esta dirección" in message.html_body and "Or open" not in message.html_body
