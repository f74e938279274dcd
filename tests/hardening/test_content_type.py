"""
A request body is read only when its Content-Type is application/json (#14, finding 10d). DRF matched the
declared type against its parsers with media_type_matches, for which `*/*` and `application/*` name every
parser: `Content-Type: */*` was read as JSON. Anything else with a body is 415 `unsupported_media_type` and
changes nothing; bodyless requests need no Content-Type at all.
"""

import json

import pytest

from automations.models import SyncException
from integrations.models import Integration
from orders import services as order_services
from tests.api.helpers import api_routes, assert_error
from tokens import grants
from tokens import issuing as key_services
from tokens.choices import KeyKind

REFUSED = [
    "*/*",
    "application/*",
    "*/json",
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/merge-patch+json",
    "application/jsonx",
    "application/json; foo=bar",
    "application/json; charset=utf-8; q=1",
    "",  # a body with no Content-Type
]
ACCEPTED = ["application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8"]
BODY = json.dumps({"message": "stock feed late"}).encode()


@pytest.fixture
def client(api_client, integration):
    Integration.objects.filter(pk=integration.pk).update(
        **{f.name: True for f in Integration._meta.fields if f.name.startswith("flow_")}
    )
    issued = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="shop key", integration=integration, grants=grants.GRANTS
    )
    return api_client(issued)


def post(client, content_type, body=BODY, path="/api/v1/exceptions"):
    response = client.generic("POST", path, body, content_type=content_type)
    assert response.wsgi_request.META.get("CONTENT_TYPE", "") == content_type
    return response


@pytest.mark.parametrize("content_type", REFUSED)
def test_a_body_not_declared_as_json_is_415_and_changes_nothing(client, content_type):
    response = post(client, content_type)

    assert_error(response, 415, "unsupported_media_type")
    assert not SyncException.objects.exists()


@pytest.mark.parametrize("content_type", ACCEPTED)
def test_a_body_declared_as_json_goes_through(client, content_type):
    assert post(client, content_type).status_code == 201
    assert SyncException.objects.count() == 1


def test_a_charset_other_than_utf8_is_still_a_400(client):
    assert_error(post(client, "application/json; charset=latin-1"), 400, "validation_error")


def test_every_write_route_refuses_a_wildcard_content_type(client):
    """Each route that takes a body: none reads `*/*` as JSON."""
    writes = [r for r in api_routes() if "POST" in r.methods or "PATCH" in r.methods]
    assert writes
    for route in writes:
        for method in sorted({"POST", "PATCH"} & set(route.methods)):
            response = client.generic(method, route.url(), b'{"a": 1}', content_type="*/*")
            # 415, or a 404 where the placeholder id names nothing (the object is looked up first).
            assert response.status_code in (404, 415), (route.name, method, response.status_code)
            if response.status_code == 415:
                assert_error(response, 415, "unsupported_media_type")


def test_requests_without_a_body_need_no_content_type(
    api_client, integration, warehouse_integration, warehouse, products, stock, standard_method, order_body
):
    order, _ = order_services.ingest_order(integration, order_body)
    shipping_request = order_services.create_shipping_request(order_services.make_ready(order), warehouse)
    tpl = api_client(
        key_services.issue_key(
            kind=KeyKind.INTEGRATION, name="3pl key", integration=warehouse_integration, grants=grants.GRANTS
        )
    )
    shop = api_client(
        key_services.issue_key(
            kind=KeyKind.INTEGRATION, name="shop key", integration=integration, grants=grants.GRANTS
        )
    )

    acknowledged = post(tpl, "", b"", f"/api/v1/shipping-requests/{shipping_request.pk}/acknowledge")
    connected = post(shop, "", b"", "/api/v1/integration/connect")
    # An empty body under any declared type is no body to parse either (some clients always send one).
    canceled = post(shop, "*/*", b"", f"/api/v1/orders/{order.pk}/cancel")

    assert acknowledged.status_code == 200, acknowledged.content
    assert acknowledged.json()["status"] == "acknowledged"
    assert connected.status_code == 200, connected.content
    assert canceled.status_code in (200, 409), canceled.content
