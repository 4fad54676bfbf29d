"""The whole flow a CRM drives: create through the API, the customer signs from the email, the
sealed PDF and the audit report come back through the API and are checked independently.

Nothing here reaches into the database to act: the template is found and the envelope sent
through ``/api/v1``, the signing link is read from the email the SMTP server received, the
customer uses the signing pages, and the documents are downloaded through ``/api/v1``.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess

from pypdf import PdfReader

from portal.documents.seal import check_seal
from tests.api_helpers import Api, make_key
from tests.conftest import audit_events
from tests.test_envelopes import REFUND_VALUES
from tests.test_signing import _csrf

BASE = "http://127.0.0.1:5000"


def _signing_link(smtp_server, address: str) -> str:
    for received in smtp_server.messages:
        if address in received.rcpt_tos:
            text = received.message.get_body(("plain",)).get_content()
            found = re.search(rf"{re.escape(BASE)}/s/[A-Za-z0-9_-]+", text)
            if found:
                return found.group(0)
    raise AssertionError(f"no signing email to {address}")


def _sign_from_the_email(app, link: str, public_id: str) -> None:
    customer = app.test_client()
    opened = customer.get(link.removeprefix(BASE))
    assert opened.status_code == 302 and opened.headers["Location"] == f"/sign/{public_id}"
    token = _csrf(customer, f"/sign/{public_id}")
    customer.post(f"/sign/{public_id}/consent", data={"csrf_token": token, "decision": "accept"})
    page = customer.get(f"/sign/{public_id}").get_data(as_text=True)
    assert "Adopt and sign" in page
    signed = customer.post(
        f"/sign/{public_id}/sign",
        data={
            "csrf_token": token,
            "adoption": "typed",
            "typed_name": "Zoë Łukasiewicz",
            "agree": "yes",
        },
    )
    assert signed.status_code == 302, signed.get_data(as_text=True)


def test_create_sign_and_collect_the_sealed_record_through_the_api(
    make_app, smtp_server, runner_for, tmp_path
):
    app = make_app(**smtp_server.config())
    smtp_server.clear()
    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    api = Api(app.test_client(), make_key(app))

    # the CRM finds the template and what it needs
    listed = api.get("/api/v1/templates").get_json()["items"]
    refund = next(t for t in listed if t["name"] == "Refund authorization")
    template = api.get(f"/api/v1/templates/{refund['id']}").get_json()
    signer = next(role for role in template["roles"] if role["kind"] == "signer")
    body = {
        "template_id": refund["id"],
        "merge_data": {k["key"]: REFUND_VALUES[k["key"]] for k in template["merge_keys"]},
        "recipients": [
            {"role": signer["key"], "name": "Zoë Łukasiewicz", "email": "zoe@example.com"}
        ],
        "ticket_id": "CRM-4711",
        "ticket_url": "https://crm.example.com/tickets/4711",
    }

    # ... and sends it, once even when its request is retried
    created = api.post("/api/v1/envelopes", body, headers={"Idempotency-Key": "crm-4711-refund"})
    assert created.status_code == 201, created.get_data(as_text=True)
    envelope = created.get_json()
    retried = api.post("/api/v1/envelopes", body, headers={"Idempotency-Key": "crm-4711-refund"})
    assert retried.get_json()["id"] == envelope["id"]
    assert retried.headers.get("Idempotent-Replayed") == "true"
    public_id, links = envelope["id"], envelope["links"]
    assert envelope["status"] == "sent" and envelope["ticket_id"] == "CRM-4711"
    early = api.get(links["sealed"])
    assert early.status_code == 409 and early.mimetype == "application/problem+json"

    # the customer signs from the email
    _sign_from_the_email(app, _signing_link(smtp_server, "zoe@example.com"), public_id)

    # the CRM sees it completed and sealed
    done = api.get(links["self"]).get_json()
    assert done["status"] == "completed" and done["recipients"][0]["status"] == "signed"
    assert done["seal"]["status"] == "sealed" and done["seal"]["sealed_at"].endswith("Z")

    sealed = api.get(links["sealed"])
    assert sealed.status_code == 200 and sealed.mimetype == "application/pdf"
    data = sealed.data
    assert hashlib.sha256(data).hexdigest() == done["seal"]["sha256"]
    check = check_seal(data)
    assert check.outcome == "intact", check
    path = tmp_path / "sealed.pdf"
    path.write_bytes(data)
    pdfsig = subprocess.run(
        ["pdfsig", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Signature is Valid" in pdfsig.stdout, pdfsig.stdout + pdfsig.stderr
    certificate = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert "Certificate of completion" in certificate and "Zoë Łukasiewicz" in certificate
    # the sender is the key's team, sent through the key its admin made; no made-up address
    flat = re.sub(r"\s+", " ", certificate)
    assert "Customer Care" in flat and "api-keys.invalid" not in flat
    assert "Sent through API key: CRM sync, made by Keys Admin <keys-admin-" in flat

    report = api.get(links["audit_report"])
    assert report.status_code == 200 and report.mimetype == "application/pdf"
    assert check_seal(report.data).outcome == "intact"
    pages = PdfReader(io.BytesIO(report.data)).pages
    text = re.sub(r"\s+", "", "".join(page.extract_text() for page in pages))
    assert done["seal"]["sha256"] in text, "the report names the sealed file's SHA-256"
    assert public_id in text

    timeline = api.get(links["timeline"]).get_json()["items"]
    names = [item["event"] for item in timeline]
    for name in ("envelope.created", "recipient.opened", "recipient.signed",
                 "envelope.completed", "envelope.sealed"):  # fmt: skip
        assert name in names, name

    key_name = "API key: CRM sync"
    assert [e.actor_label for e in audit_events(app, "envelope.created")] == [key_name]
    assert [e.actor_label for e in audit_events(app, "envelope.document_downloaded")] == [key_name]
    assert [e.actor_label for e in audit_events(app, "envelope.report_downloaded")] == [key_name]
