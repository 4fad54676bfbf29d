"""Web basics: CSRF, role checks on every route, security headers, friendly errors, health."""

from __future__ import annotations

import re

import pytest

from tests.conftest import audit_events, write_p12

PUBLIC = {
    "static",
    "health.healthz",
    "auth.login",
    "auth.code",
    "auth.enrol",
    "auth.logout",
    "console.index",
    "public.verify",  # anyone may check a document
    "public.copy",  # the signed token in the link is the credential
}


def _concrete(rule) -> str:
    """A URL that matches the rule: ids become 1, ``any(a, b)`` becomes its first choice."""

    def value(match: re.Match) -> str:
        converter, name = match.group(1) or "", match.group(2)
        if converter.startswith("any("):
            return converter[4:].split(",")[0].strip(" '\")")
        return "1" if converter.startswith("int") or "id" in name or name == "number" else "x"

    return re.sub(r"<(?:([^:>]+):)?([^>]+)>", value, rule.rule)


API_PREFIX = "/api/v1/"
# The API's own pages anyone may read: the OpenAPI document, its reference page and what each
# problem type means (every problem answer links there).
API_PUBLIC = {
    "api-docs.openapi_json": "/api/v1/openapi.json",
    "api_docs_page.reference": "/api/v1/docs",
    "api_docs_page.problem_type": "/api/v1/problems/unauthorized",
}
# Signer pages: the link's token (or the signer's own session) is the credential.
SIGNER_PAGES = ("signing.", "embedded.")


def test_every_non_public_route_sends_anonymous_visitors_to_sign_in(app):
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or rule.endpoint.startswith(SIGNER_PAGES):
            continue
        if rule.rule.startswith(API_PREFIX):
            continue  # the API's own answer: test_api_routes_answer_anonymous_callers_401
        method = "GET" if "GET" in rule.methods else "POST"
        response = client.open(_concrete(rule), method=method)
        assert response.status_code in (302, 400), (rule.rule, response.status_code)
        if response.status_code == 302:
            assert "/auth/login" in response.headers["Location"], rule.rule
        checked += 1
    assert checked >= 8


def test_api_routes_answer_anonymous_callers_401_but_its_documents_are_public(app):
    client = app.test_client()
    closed = opened = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        if rule.endpoint in API_PUBLIC:
            response = client.get(API_PUBLIC[rule.endpoint])
            assert response.status_code == 200, (rule.rule, response.status_code)
            opened += 1
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(_concrete(rule), method=method)
            assert response.status_code == 401, (method, rule.rule, response.status_code)
            assert response.mimetype == "application/problem+json", (method, rule.rule)
            body = response.get_json()
            assert body["status"] == 401 and body["type"].endswith("/problems/unauthorized")
            assert "/auth/login" not in response.headers.get("Location", "")
            closed += 1
    assert opened == len(API_PUBLIC) and closed >= 15


def test_signing_pages_without_a_signer_session_show_nothing(app):
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(SIGNER_PAGES):
            continue
        method = "GET" if "GET" in rule.methods else "POST"
        response = client.open(_concrete(rule), method=method)
        # no document, no field, no image without the recipient's own session (or a CSRF stop)
        assert response.status_code in (400, 404, 410), (rule.rule, response.status_code)
        checked += 1
    assert checked >= 8


def test_agents_and_compliance_get_403_on_admin_pages(signed_in):
    for role in ("agent", "compliance"):
        portal, _ = signed_in(role)
        for rule in portal.app.url_map.iter_rules():
            if not rule.endpoint.startswith("admin."):
                continue
            method = "GET" if "GET" in rule.methods else "POST"
            if method == "GET":
                response = portal.client.get(_concrete(rule))
            else:
                response = portal.post(_concrete(rule))
            assert response.status_code == 403, (role, rule.rule)
            assert "You do not have access to this page" in response.get_data(as_text=True)
        portal.post("/auth/logout")


def test_post_without_csrf_token_is_refused_and_changes_nothing(signed_in, make_staff):
    portal, _ = signed_in("admin")
    target = make_staff("agent")
    response = portal.client.post(f"/admin/users/{target.id}/deactivate")
    assert response.status_code == 400
    assert "did not come from this portal" in response.get_data(as_text=True)
    assert audit_events(portal.app, "user.deactivated") == []
    # with the token in the htmx header it works
    ok = portal.htmx_post(f"/admin/users/{target.id}/deactivate")
    assert ok.status_code == 200
    assert audit_events(portal.app, "user.deactivated")


def test_login_post_without_csrf_is_refused(portal, make_staff):
    staff = make_staff("agent")
    response = portal.client.post(
        "/auth/login", data={"email": staff.email, "password": staff.password}
    )
    assert response.status_code == 400
    assert audit_events(portal.app, "auth.login.password_ok") == []


def test_security_headers_on_pages(portal):
    response = portal.client.get("/auth/login")
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    for part in (
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert part in csp
    assert "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert "HX-Request" in headers["Vary"]
    assert headers["Cache-Control"] == "no-store"
    assert "<script>" not in response.get_data(as_text=True), "no inline scripts"
    assert not re.search(r"\son[a-z]+=", response.get_data(as_text=True)), "no inline handlers"


def test_session_cookie_is_httponly_and_samesite(portal, make_staff):
    staff = make_staff("agent")
    portal.client.get("/auth/login")
    response = portal.password_step(staff.email, staff.password)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_cookies_are_secure_and_host_prefixed(make_app, monkeypatch, tmp_path):
    monkeypatch.setenv("SEAL_PKCS12_PATH", str(write_p12(tmp_path / "seal.p12")))
    monkeypatch.setenv("SEAL_PKCS12_PASSWORD", "seal-pass")
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.setenv("DATA_KEY", "ab" * 32)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///unused.db")
    app = make_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_NAME"].startswith("__Host-")
    response = app.test_client().get("/auth/login", base_url="https://portal.example")
    assert "max-age" in response.headers["Strict-Transport-Security"]


@pytest.mark.parametrize(
    ("path", "code", "text"),
    [
        ("/no/such/page", 404, "We could not find that page"),
        ("/auth/logout", 405, "That action is not available here"),
    ],
)
def test_friendly_error_pages(portal, path, code, text):
    response = portal.client.get(path)
    assert response.status_code == code
    page = response.get_data(as_text=True)
    assert text in page and "<html" in page and "Traceback" not in page


def test_unexpected_error_shows_the_friendly_500_page(make_app):
    app = make_app(TESTING=False, PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong on our side" in page and "kaboom" not in page


def test_rate_limit_per_ip_answers_429(make_app, make_staff):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    from tests.conftest import Portal

    portal = Portal(app, app.test_client())
    codes = [portal.password_step("x@example.test", "wrong wrong").status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    page = portal.password_step("x@example.test", "wrong wrong").get_data(as_text=True)
    assert "Too many attempts" in page


def test_htmx_fragment_or_full_page(signed_in):
    portal, _ = signed_in("admin")
    full = portal.client.get("/admin/users").get_data(as_text=True)
    fragment = portal.client.get("/admin/users?q=admin", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "<html" in full and "<html" not in fragment
    assert "<tr>" in fragment and "Admin 1" in fragment
    boosted = portal.client.get(
        "/admin/users", headers={"HX-Request": "true", "HX-Boosted": "true"}
    ).get_data(as_text=True)
    assert "<html" in boosted
    restored = portal.client.get(
        "/admin/users?q=admin", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    ).get_data(as_text=True)
    assert "<html" in restored, "a history restore after a cache miss needs the whole page"


def test_expired_htmx_session_redirects_the_browser_to_sign_in(portal):
    response = portal.client.get("/admin/users", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert "/auth/login" in response.headers["HX-Redirect"]


def test_healthz_reports_database_and_inline_queue(portal):
    response = portal.client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["database"]["ok"] is True
    assert body["queue"] == {"mode": "inline"}


def test_healthz_reports_redis_queues(make_app, redis_server):
    app = make_app(REDIS_URL=redis_server.url, JOBS_INLINE=False)
    body = app.test_client().get("/healthz").get_json()
    assert body["queue"]["mode"] == "rq"
    assert set(body["queue"]["queued"]) == {"default", "pdf", "mail", "webhooks"}


def test_healthz_is_503_when_redis_is_unreachable(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", JOBS_INLINE=False)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
