"""What public pages say about getting help is true for each page: a signer's pages name the
person who sent the document; /verify, a link that leads nowhere and error pages (where no
email may have brought anyone) name the organisation; no page tells anyone to reply to an
email they may not have."""

from __future__ import annotations

import pytest

from tests.test_signing import _path, sent  # noqa: F401  (fixture)

REPLY = "Reply to the email that brought you here"
ORG_HELP = "Questions about a document from Signing Portal? Contact Signing Portal directly."


def _footer(html: str) -> str:
    return html[html.index('<footer class="site-footer">') :]


@pytest.mark.parametrize("path", ["/verify", "/s/not-a-real-link"])
def test_public_pages_without_an_envelope_point_to_the_organisation(app, path):
    page = app.test_client().get(path).get_data(as_text=True)
    assert ORG_HELP in _footer(page)
    assert REPLY not in page


def test_a_signers_page_names_the_sender_who_can_answer(app, sent):  # noqa: F811
    _, public_id, link = sent()
    client = app.test_client()
    client.get(_path(link))
    footer = _footer(client.get(f"/sign/{public_id}").get_data(as_text=True))
    assert "Questions about this document? Contact Alex Agent, who sent it to you." in footer
    assert REPLY not in footer


def test_a_spanish_signer_reads_it_in_spanish(app, sent):  # noqa: F811
    _, public_id, link = sent(locale="es")
    client = app.test_client()
    client.get(_path(link))
    footer = _footer(client.get(f"/sign/{public_id}").get_data(as_text=True))
    assert "¿Dudas sobre este documento? Póngase en contacto con Alex Agent, que se lo envió." in (
        footer
    )


def test_a_spanish_visitor_to_verify_reads_it_in_spanish(app):
    page = app.test_client().get("/verify", headers={"Accept-Language": "es"})
    assert "Póngase en contacto directamente con Signing Portal." in _footer(
        page.get_data(as_text=True)
    )


def test_an_error_page_sends_no_visitor_to_the_staff_start_page(app, signed_in):
    anonymous = app.test_client().get("/no-such-page")
    assert anonymous.status_code == 404
    assert "Go to the start page" not in anonymous.get_data(as_text=True)
    portal, _ = signed_in("agent")
    staff = portal.client.get("/no-such-page")
    assert staff.status_code == 404 and "Go to the start page" in staff.get_data(as_text=True)


def test_a_visitor_refused_a_page_is_not_told_to_ask_an_admin(app, signed_in):
    from portal.web import error_response

    with app.test_request_context("/sign/x"):
        html, code = error_response(403)
    assert code == 403 and "Ask an admin" not in html and "most recent email" in html
    with app.test_request_context("/sign/x"):
        html, _ = error_response(500)
    assert "tell your admin" not in html and "organisation that sent you" in html
