"""Control characters are refused in one place: every form, query string, path value and file
name gets a clear 400 and changes nothing (PostgreSQL cannot even store a NUL byte)."""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass

import pytest
from PIL import Image
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage

from portal.web import REFUSED_INPUT
from tests.conftest import Portal, Staff, audit_events, demo_agent, demo_template
from tests.test_documents import good_pdf
from tests.test_envelopes import REFUND_VALUES
from tests.test_web import _concrete

NUL = "\x00"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(out, format="PNG")
    return out.getvalue()


PNG = _png()  # a real (tiny) photo: attachments are decoded before they are kept


def _counts(app) -> dict[str, int]:
    """Rows in every table: a refused request leaves every count as it was."""
    from portal.extensions import db

    with app.app_context():
        counts = {
            table.name: int(db.session.scalar(select(func.count()).select_from(table)) or 0)
            for table in db.metadata.sorted_tables
        }
        db.session.rollback()
    return counts


def _refused(app, response, where: str, before: dict[str, int], case: str = "") -> None:
    if case.startswith("/api/v1/"):
        # The API answers in its own language: an RFC 9457 problem naming where the control
        # character was, before the key is even looked at.
        assert response.status_code == 422, (case, response.status_code)
        assert response.mimetype == "application/problem+json", case
        problem = response.get_json()
        assert problem["type"].endswith("/validation-failed"), case
        assert problem["errors"], case
        assert _counts(app) == before, case
        return
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 400, (case, response.status_code)
    assert REFUSED_INPUT[where] in page, case
    assert "Something in that request was not right" in page, case
    assert _counts(app) == before, case


def _file(data: bytes, name: str, kind: str = "application/pdf") -> FileStorage:
    return FileStorage(io.BytesIO(data), name, content_type=kind)


def _post(portal: Portal, url: str, data: dict, **kwargs):
    return portal.client.post(url, data={"csrf_token": portal.csrf(), **data}, **kwargs)


@dataclass
class World:
    """Demo content, a signed-in admin, a draft, a version in review and a sent envelope."""

    app: object
    admin: Portal
    agent: Staff
    version_id: int  # the approved refund
    draft_id: int
    in_review_id: int
    public_id: str
    recipient_id: int
    link: str


def send_refund(name: str, email: str, by=None):
    """Send the demo refund to one customer (in an app context, after ``seed-demo``); returns
    the envelope and the path of the customer's link."""
    from portal.envelopes import operations as envelopes
    from portal.library import operations as library

    envelope, links = envelopes.create_and_send(
        library.approved_version(demo_template()),
        REFUND_VALUES,
        [envelopes.RecipientInput(role="customer", name=name, email=email)],
        by=by or demo_agent(),
    )
    return envelope, next(iter(links.values())).replace("http://127.0.0.1:5000", "")


@pytest.fixture
def world(app, runner_for, signed_in, make_staff) -> World:
    from portal.accounts.models import User
    from portal.extensions import db
    from portal.library import operations as library

    with app.app_context():
        assert runner_for(app).invoke(args=["portal", "seed-demo"]).exit_code == 0
    admin, admin_staff = signed_in("admin")
    agent = make_staff("agent")
    with app.app_context():
        author = db.session.get(User, admin_staff.id)
        draft = library.create_from_pdf(
            "Warranty", "other", None, good_pdf(), "warranty.pdf", by=author
        )
        library.add_field(draft, "text", 1, None, "customer", by=author)
        in_review = library.create_from_pdf("NDA", "other", None, good_pdf(), "nda.pdf", by=author)
        library.add_field(in_review, "signature", 1, None, "customer", by=author)
        library.submit(in_review, by=author)
        envelope, link = send_refund("Zoë", "zoe@example.com")
        return World(
            app=app,
            admin=admin,
            agent=agent,
            version_id=envelope.template_version_id,
            draft_id=draft.id,
            in_review_id=in_review.id,
            public_id=envelope.public_id,
            recipient_id=envelope.recipients[0].id,
            link=link,
        )


def _signer(world: World) -> Portal:
    """The customer, through the consent and on the document page."""
    signer = Portal(world.app, world.app.test_client())
    assert signer.client.get(world.link).status_code == 302
    consent = _post(signer, f"/sign/{world.public_id}/consent", {"decision": "accept"})
    assert consent.status_code == 302
    return signer


def test_every_post_route_refuses_a_nul_byte_and_changes_nothing(world):
    before = _counts(world.app)
    checked = 0
    for rule in world.app.url_map.iter_rules():
        if "POST" not in rule.methods:
            continue
        for data in ({"name": f"a{NUL}b"}, {f"na{NUL}me": "value"}):
            response = _post(world.admin, _concrete(rule), data)
            _refused(world.app, response, "form", before, rule.rule)
        checked += 1
    assert checked >= 25
    assert audit_events(world.app, "security.rate_limited") == []


def test_every_get_route_refuses_a_nul_byte_in_its_query_string(world):
    before = _counts(world.app)
    for rule in world.app.url_map.iter_rules():
        if "GET" in rule.methods:
            response = world.admin.client.get(_concrete(rule) + "?q=%00")
            _refused(world.app, response, "address", before, rule.rule)


STAFF_FORMS = [
    ("admin: new user", "/admin/users/new",
     {"email": "eve@example.test", "name": f"Eve{NUL}", "role": "agent", "team": "0"}),
    ("admin: role and team", "/admin/users/{agent}/access", {"role": f"compliance{NUL}"}),
    ("admin: new team", "/admin/teams", {"name": f"Billing{NUL}"}),
    ("library: new template", "/library/new",
     {"name": f"NDA{NUL}", "document_type": "other", "team": "0", "source": "authored"}),
    ("library: add field", "/library/versions/{draft}/fields",
     {"type": "text", "page": "1", "role": f"customer{NUL}"}),
    ("library: field properties", "/library/versions/{draft}/fields/1",
     {"key": "order", "label": f"Order{NUL} number", "role": "customer"}),
    ("library: roles", "/library/versions/{draft}/roles",
     {"role-0-name": f"Customer{NUL}", "role-0-key": "customer", "role-0-kind": "signer"}),
    ("library: settings", "/library/versions/{draft}/settings",
     {"folder": f"Customer Documents{NUL}", "expiry_days": "30", "routing": "sequential"}),
    ("library: document text", "/library/versions/{draft}/body", {"body": f"# Terms{NUL}"}),
    ("library: review", "/library/versions/{in_review}/reject", {"comment": f"No{NUL}"}),
    ("console: send", "/envelopes/new/{version}",
     {**{f"m-{k}": v for k, v in REFUND_VALUES.items()}, "r-customer-name": f"Zo{NUL}ë",
      "r-customer-email": "zoe@example.com", "r-customer-auth": "link"}),
    ("console: void", "/envelopes/{public_id}/void", {"reason": f"Duplicate{NUL}"}),
    ("console: resend", "/envelopes/{public_id}/recipients/{recipient}/resend",
     {"note": f"again{NUL}"}),
    ("console: correct email", "/envelopes/{public_id}/recipients/{recipient}/email",
     {"email": f"zoe{NUL}@example.com"}),
    ("account: new recovery codes", "/account/recovery-codes", {"password": f"pw{NUL}"}),
    ("account: password", "/account/password",
     {"current": "correct horse battery", "new": f"a new {NUL} password", "confirm": "x"}),
]  # fmt: skip


def _url(world: World, template: str) -> str:
    return template.format(
        agent=world.agent.id,
        draft=world.draft_id,
        in_review=world.in_review_id,
        version=world.version_id,
        public_id=world.public_id,
        recipient=world.recipient_id,
    )


def test_staff_forms_refuse_a_nul_byte_and_change_nothing(world):
    before = _counts(world.app)
    for case, url, data in STAFF_FORMS:
        _refused(world.app, _post(world.admin, _url(world, url), data), "form", before, case)
    # the same kind of request without the NUL byte does change things
    assert _post(world.admin, "/admin/teams", {"name": "Billing"}).status_code == 302
    assert audit_events(world.app, "team.created")[-1].data == {"name": "Billing"}


def test_file_names_with_a_nul_byte_are_refused(world):
    before = _counts(world.app)
    uploads = [
        ("library: new template from a PDF", "/library/new",
         {"name": "NDA", "document_type": "other", "team": "0", "source": "pdf"}),
        ("library: replace the PDF", f"/library/versions/{world.draft_id}/source", {}),
    ]  # fmt: skip
    for case, url, data in uploads:
        files = {"file": _file(good_pdf(), f"nda{NUL}.pdf")}
        response = _post(world.admin, url, {**data, **files})
        _refused(world.app, response, "file", before, case)
    visitor = Portal(world.app, world.app.test_client())
    response = _post(visitor, "/verify", {"file": _file(good_pdf(), f"sealed{NUL}.pdf")})
    _refused(world.app, response, "file", before, "verify")
    assert audit_events(world.app, "template.upload_refused") == []


def test_sign_in_steps_refuse_a_nul_byte_and_record_nothing(world, make_staff):
    before = _counts(world.app)
    staff = make_staff("agent")
    fresh = make_staff("agent", enrolled=False)
    before = _counts(world.app)
    visitor = Portal(world.app, world.app.test_client())
    for data in ({"email": f"{staff.email}{NUL}", "password": staff.password},
                 {"email": staff.email, "password": f"{staff.password}{NUL}"}):  # fmt: skip
        _refused(world.app, _post(visitor, "/auth/login", data), "form", before, "sign-in")

    code_step = Portal(world.app, world.app.test_client())
    assert code_step.password_step(staff.email, staff.password).status_code == 302
    before = _counts(world.app)
    _refused(world.app, _post(code_step, "/auth/code", {"code": f"12{NUL}3456"}), "form", before)

    enrol_step = Portal(world.app, world.app.test_client())
    assert enrol_step.password_step(fresh.email, fresh.password).status_code == 302
    enrol_step.client.get("/auth/enrol")  # the key is made
    before = _counts(world.app)
    _refused(world.app, _post(enrol_step, "/auth/enrol", {"code": f"{NUL}123456"}), "form", before)


def test_signer_forms_refuse_a_nul_byte_and_change_nothing(world):
    signer = _signer(world)
    before = _counts(world.app)
    base = f"/sign/{world.public_id}"
    forms = [
        ("consent", f"{base}/consent", {"decision": f"accept{NUL}"}),
        ("code", f"{base}/code", {"code": f"12{NUL}3456"}),
        ("typed signature", f"{base}/sign",
         {"adoption": "typed", "typed_name": f"Zo{NUL}ë", "agree": "yes"}),
        ("decline", f"{base}/decline", {"reason": f"Changed my mind{NUL}"}),
        ("review", f"{base}/review", {"decision": "reject", "comment": f"No{NUL}"}),
    ]  # fmt: skip
    for case, url, data in forms:
        _refused(world.app, _post(signer, url, data), "form", before, case)
    attachment = {
        "adoption": "typed",
        "typed_name": "Zoë",
        "agree": "yes",
        "f-receipt_photo": _file(PNG, f"receipt{NUL}.png", "image/png"),
    }
    _refused(world.app, _post(signer, f"{base}/sign", attachment), "file", before, "attachment")
    # without the NUL byte the same signature goes through
    done = _post(signer, f"{base}/sign", {"adoption": "typed", "typed_name": "Zoë", "agree": "y"})
    assert done.status_code == 302
    assert audit_events(world.app, "recipient.signed")


@pytest.mark.parametrize(
    ("who", "url"),
    [
        ("admin", "/library/?q=%00"),
        ("admin", "/console?q=%00&status=sent"),
        ("admin", "/admin/users?q=a%00"),
        ("admin", "/dev/mailbox?page=%00"),
        ("visitor", "/auth/login?next=/console%00"),
        ("visitor", "/sign/AB%00CD"),
        ("visitor", "/s/tok%00en"),
        ("visitor", "/copy/%00"),
        ("admin", "/envelopes/ENV%00X"),
    ],
)
def test_query_strings_and_path_values_with_a_nul_byte_are_refused(world, who, url):
    client = world.admin.client if who == "admin" else world.app.test_client()
    before = _counts(world.app)
    _refused(world.app, client.get(url), "address", before, url)


def test_htmx_requests_get_the_refusal_as_a_fragment(world):
    response = world.admin.client.get("/console?q=%00", headers={"HX-Request": "true"})
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 400
    assert REFUSED_INPUT["address"] in page and "<html" not in page


def test_other_control_characters_are_refused_but_tab_and_line_breaks_are_not(world):
    before = _counts(world.app)
    for char in ("\x01", "\x08", "\x0b", "\x1b", "\x7f"):
        response = _post(world.admin, "/admin/teams", {"name": f"Billing{char}"})
        _refused(world.app, response, "form", before, repr(char))
    ok = _post(world.admin, f"/envelopes/{world.public_id}/void", {"reason": "Wrong\r\n\tplan"})
    assert ok.status_code == 302
    assert audit_events(world.app, "envelope.voided")


def test_a_nul_byte_in_the_user_agent_is_dropped_before_it_is_stored(world, make_staff):
    from portal.accounts.models import StaffSession
    from portal.extensions import db

    staff = make_staff("agent")
    portal = Portal(world.app, world.app.test_client())
    headers = {"User-Agent": f"Evil{NUL}Agent\x01/1.0"}
    assert (
        portal.post(
            "/auth/login", {"email": staff.email, "password": staff.password}, headers=headers
        ).status_code
        == 302
    )
    code = portal.post("/auth/code", {"code": _totp(staff)}, headers=headers)
    assert code.status_code == 302
    event = audit_events(world.app, "auth.login.succeeded")[-1]
    assert event.user_agent == "EvilAgent/1.0"
    with world.app.app_context():
        agents = db.session.execute(
            select(StaffSession.user_agent).where(StaffSession.user_id == staff.id)
        ).scalars()
        assert list(agents) == ["EvilAgent/1.0"]


def _totp(staff: Staff) -> str:
    from tests.conftest import totp_code

    return totp_code(staff.secret)


def test_refused_characters_are_found_in_any_string():
    from portal.text import first_refused, without_controls

    assert first_refused("Zoë Łukasiewicz\t\r\n") is None
    for value in ("a\x00", "\x1f", "\x7f", "lone \ud800 surrogate"):
        assert first_refused(value) is not None, repr(value)
    assert without_controls("a\x00b\x7fc\td") == "abc\td"
    assert re.fullmatch(r"[a-z\t]+", without_controls("a\x00b\x7fc\td"))
