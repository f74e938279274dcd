"""POST /api/v1/orders/{id}/release: a held order is let through to routing; anything else is a conflict."""

import pytest

from orders import services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import ShippingRequest
from tests.api.helpers import assert_error
from tokens import issuing as key_services
from tokens.choices import KeyKind

ORDERS = "/api/v1/orders"

pytestmark = pytest.mark.django_db


def release(client, order):
    return client.post(f"{ORDERS}/{order.pk}/release")


def test_release_a_held_order(channel, new_order, django_capture_on_commit_callbacks):
    services.hold(new_order, "review")
    with django_capture_on_commit_callbacks() as callbacks:
        response = release(channel, new_order)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["status"], body["hold"]) == (str(new_order.pk), "ready", None)
    new_order.refresh_from_db()
    assert (new_order.status, new_order.hold_reason) == (OrderStatus.READY, "")
    assert callbacks  # the routing engine hears of it once committed


def test_release_of_an_order_not_on_hold_is_a_conflict(channel, new_order):
    services.make_ready(new_order)
    assert_error(release(channel, new_order), 409, "conflict")
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY


def test_release_while_a_sku_is_unmapped_is_a_conflict(channel, ingest_new, order_body):
    order = ingest_new(order_body, lines=[{"sku": "NOPE", "quantity": 1}])
    assert_error(release(channel, order), 409, "conflict")
    order.refresh_from_db()
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, "unmapped SKU NOPE")


def test_another_integrations_or_orgs_order_is_404(
    api_client, new_order, org, channel_connector, make_integration, other_integration_key
):
    services.hold(new_order, "review")
    sibling = make_integration(org, channel_connector, "Sibling shop")
    sibling_key = key_services.issue_key(kind=KeyKind.INTEGRATION, name="sibling", integration=sibling)
    for key in (sibling_key, other_integration_key):
        assert_error(release(api_client(key), new_order), 404, "not_found")
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.ON_HOLD


def test_release_needs_orders_write(api_client, integration, new_order):
    services.hold(new_order, "review")
    key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="read only", integration=integration, grants=["orders:read"]
    )
    assert_error(release(api_client(key), new_order), 403, "missing_grant")
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.ON_HOLD


def test_an_org_key_releases_any_order_of_its_organization(api_client, org, org_admin, new_order):
    services.hold(new_order, "review")
    key = key_services.issue_key(
        kind=KeyKind.ORG, name="ops", organization=org, user=org_admin, grants=["orders:write"]
    )
    assert release(api_client(key), new_order).json()["status"] == "ready"


def test_a_3pl_cannot_release_an_order_it_was_once_routed(
    api_client, new_order, warehouse, warehouse_integration
):
    # given: a held order whose (canceled) shipping request went to the 3PL, which reads it with orders:read
    services.hold(new_order, "fraud review")
    ShippingRequest.objects.create(
        organization=new_order.organization,
        order=new_order,
        location=warehouse,
        fulfiller=warehouse_integration,
        status=ShippingRequestStatus.CANCELED,
    )
    key = key_services.issue_key(
        kind=KeyKind.INTEGRATION,
        name="3pl",
        integration=warehouse_integration,
        grants=["orders:read", "orders:write"],
    )
    tpl = api_client(key)
    assert tpl.get(f"{ORDERS}/{new_order.pk}").status_code == 200

    assert_error(release(tpl, new_order), 404, "not_found")
    new_order.refresh_from_db()
    assert (new_order.status, new_order.hold_reason) == (OrderStatus.ON_HOLD, "fraud review")
