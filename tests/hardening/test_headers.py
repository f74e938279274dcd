"""
Security headers (#7): a strict Content-Security-Policy on admin pages, `default-src 'none'` on JSON API
answers, what Swagger UI needs on the docs, and the other hardening headers on all of them.
"""

import pytest
from csp.middleware import CSPMiddleware

from core.security import PolicyByPathMiddleware

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def policy(response) -> dict[str, set[str]]:
    """The Content-Security-Policy header as {directive: {sources}}."""
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = set(sources)
    return directives


def assert_common(response):
    for name, value in COMMON.items():
        assert response[name] == value, name
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    permissions = response["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in permissions


def assert_strict_admin_policy(response):
    csp = policy(response)
    assert csp["default-src"] == {"'self'"}
    assert csp["script-src"] == {"'self'"}
    assert csp["style-src"] == {"'self'"}
    assert csp["img-src"] == {"'self'", "data:"}
    assert csp["frame-ancestors"] == {"'none'"}
    assert csp["form-action"] == {"'self'"}
    assert csp["base-uri"] == {"'self'"}
    assert csp["object-src"] == {"'none'"}
    assert not any("unsafe" in source for sources in csp.values() for source in sources)


def test_the_policy_middleware_is_django_csps():
    assert issubclass(PolicyByPathMiddleware, CSPMiddleware)


@pytest.mark.parametrize("path", ["/admin/login/", "/admin/login/?next=/admin/"])
def test_login_page(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    assert_common(response)
    assert_strict_admin_policy(response)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/automations/dashboard/",
        "/admin/orders/order/",
        "/admin/integrations/integration/",
        "/admin/automations/automationrule/add/",
        "/admin/tokens/apikey/",
    ],
)
def test_admin_pages(admin_client_for, superuser, path):
    response = admin_client_for(superuser).get(path, follow=True)
    assert response.status_code == 200
    assert_common(response)
    assert_strict_admin_policy(response)
    # Nothing inline for the policy to refuse: no <style>, style="", <script> body or on…= handler.
    html = response.content.decode()
    for needle in ("<style", ' style="', "onclick=", "onchange=", "onsubmit="):
        assert needle not in html, needle
    assert "<script>" not in html


def test_admin_error_pages_carry_the_policy_too(admin_client_for, superuser):
    response = admin_client_for(superuser).get("/admin/orders/order/999999999/change/", follow=True)
    assert_strict_admin_policy(response)


@pytest.mark.parametrize(
    ("path", "status"), [("/api/v1/me", 401), ("/api/v1/no-such-thing", 404), ("/api/v1/schema/", 200)]
)
def test_json_api_answers(client, db, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert_common(response)
    assert policy(response) == {"default-src": {"'none'"}, "frame-ancestors": {"'none'"}}


def test_authenticated_api_answers(api_client, integration_key):
    response = api_client(integration_key).get("/api/v1/me")
    assert response.status_code == 200
    assert_common(response)
    assert policy(response) == {"default-src": {"'none'"}, "frame-ancestors": {"'none'"}}


def test_413_from_the_body_limit_carries_the_headers(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    response = client.post("/api/v1/orders", {"x": "y" * 20}, content_type="application/json")
    assert response.status_code == 413
    assert_common(response)
    assert policy(response)["default-src"] == {"'none'"}


def test_docs_page_and_its_script(client, db):
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    assert_common(page)
    csp = policy(page)
    # Swagger UI's scripts are files (the split view serves the init script at ?script), its styles inline.
    assert csp["script-src"] == {"'self'"}
    assert csp["style-src"] == {"'self'", "'unsafe-inline'"}
    assert csp["connect-src"] == {"'self'"}
    assert csp["frame-ancestors"] == {"'none'"}
    html = page.content.decode()
    assert "<script>" not in html
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()
