"""Shipping requests out and shipments back (docs/connectors/contract.md, "Fulfillment"): /shipping-requests
and /fulfillments."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import Integration
from inventory.models import InventoryLevel, SkuMapping
from orders import services
from orders.choices import OrderStatus
from orders.models import Fulfillment, Order, OrderLine, ShippingMethod, ShippingMethodMapping
from tests.api.helpers import assert_error
from tests.orders.helpers import (
    FULFILLMENTS,
    ORDER_GRANTS,
    ORDERS,
    REQUESTS,
    committed,
    integration_key,
    shipment,
)
from tokens import issuing as key_services
from tokens.choices import KeyKind

# --- shipping requests --------------------------------------------------------------------------------


def test_a_3pl_reads_its_requests_in_its_own_codes(tpl, warehouse_integration, routed, products):
    # Given: the 3PL has its own SKU for the T-shirt (not for the mug) and GROUND for the standard method
    order, request = routed
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="WH-TEE-S", product=products["TSHIRT-S"]
    )

    listed = tpl.get(REQUESTS).json()["results"]
    detail = tpl.get(f"{REQUESTS}/{request.pk}").json()

    assert listed == [detail]
    assert detail == {
        "id": str(request.pk),
        "order": {
            "id": str(order.pk),
            "number": "#1001",
            "shipping_address": order.shipping_address,
            "customer": order.customer,
        },
        "location": str(request.location_id),
        "shipping_method": "GROUND",
        "lines": [
            {"sku": "WH-TEE-S", "quantity": 2, "fulfilled_quantity": 0},
            {"sku": "MUG", "quantity": 1, "fulfilled_quantity": 0},
        ],
        "status": "pending",
        "acknowledged_at": None,
        "rejected_at": None,
        "rejection_reason": "",
        "created_at": detail["created_at"],
        "updated_at": detail["updated_at"],
    }


def test_shipping_method_without_a_3pl_code_is_the_hubs(
    tpl, channel, integration, org, order_body, stock, warehouse
):
    express = ShippingMethod.objects.create(organization=org, code="express", name="Express")
    ShippingMethodMapping.objects.create(integration=integration, external_code="shopify-x", method=express)
    order = Order.objects.get(
        pk=channel.post(ORDERS, {**order_body, "shipping_method": "shopify-x"}, format="json").json()["id"]
    )
    assert order.shipping_method == express
    services.create_shipping_request(services.make_ready(order), warehouse)

    assert tpl.get(REQUESTS).json()["results"][0]["shipping_method"] == "express"
    assert channel.get(f"{ORDERS}/{order.pk}").json()["shipping_method"] == "shopify-x"


def test_shipping_request_status_filter(tpl, routed):
    assert len(tpl.get(f"{REQUESTS}?status=pending").json()["results"]) == 1
    assert tpl.get(f"{REQUESTS}?status=fulfilled").json()["results"] == []
    assert_error(tpl.get(f"{REQUESTS}?status=lost"), 400, "validation_error")


def test_acknowledge(tpl, routed):
    _, request = routed

    response = tpl.post(f"{REQUESTS}/{request.pk}/acknowledge")
    again = tpl.post(f"{REQUESTS}/{request.pk}/acknowledge")

    assert (response.status_code, again.status_code) == (200, 200), response.content
    assert response.json()["status"] == "acknowledged"
    assert response.json()["acknowledged_at"]
    assert response.json()["shipping_method"] == "GROUND"


def test_acknowledging_a_canceled_request_is_a_conflict(tpl, channel, routed):
    order, request = routed
    channel.post(f"{ORDERS}/{order.pk}/cancel")

    assert_error(tpl.post(f"{REQUESTS}/{request.pk}/acknowledge"), 409, "conflict")


def test_a_channel_key_has_no_shipping_request_grant(channel, routed):
    assert assert_error(channel.get(REQUESTS), 403, "missing_grant") == {
        "required": ["shipping_requests:read"]
    }


# --- POST /fulfillments -------------------------------------------------------------------------------


def test_fulfillments_move_the_order_to_partially_then_fully_fulfilled(
    tpl, channel, routed, products, warehouse
):
    order, request = routed

    first = tpl.post(FULFILLMENTS, shipment(request, [("TSHIRT-S", 2)]), format="json")
    order.refresh_from_db()
    request.refresh_from_db()
    assert first.status_code == 201, first.content
    assert (order.status, request.status) == ("partially_fulfilled", "partially_fulfilled")

    second = tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1)], external_id="SHIP-2"), format="json")
    order.refresh_from_db()
    request.refresh_from_db()
    assert second.status_code == 201, second.content
    assert (order.status, request.status) == ("fulfilled", "fulfilled")

    body = first.json()
    assert body == {
        "id": body["id"],
        "shipping_request": str(request.pk),
        "order": str(order.pk),
        "external_id": "SHIP-1",
        "status": "shipped",
        "carrier": "UPS",
        "tracking_number": "1Z999",
        "tracking_url": "https://track.example.test/1Z999",
        "lines": [{"sku": "TSHIRT-S", "quantity": 2}],
        "shipped_at": "2025-05-01T12:00:00Z",
        "canceled_at": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    level = InventoryLevel.objects.get(product=products["TSHIRT-S"], location=warehouse)
    assert (level.on_hand, level.committed) == (8, 0)
    seen = channel.get(f"{ORDERS}/{order.pk}").json()
    assert seen["status"] == "fulfilled"
    assert {f["tracking_number"] for f in seen["fulfillments"]} == {"1Z999"}
    assert len(seen["fulfillments"]) == 2


def test_a_3pl_ships_in_its_own_skus(tpl, channel, warehouse_integration, integration, routed, products):
    # Given: the 3PL's SKU for the T-shirt, and the channel's own SKU for the mug on its order
    order, request = routed
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="WH-TEE-S", product=products["TSHIRT-S"]
    )
    OrderLine.objects.filter(order=order, sku="MUG").update(external_sku="SHOP-MUG")

    response = tpl.post(FULFILLMENTS, shipment(request, [("WH-TEE-S", 2), ("MUG", 1)]), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["lines"] == [{"sku": "WH-TEE-S", "quantity": 2}, {"sku": "MUG", "quantity": 1}]
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    # The channel reads the same shipment in the SKUs it sent.
    seen = channel.get(f"{FULFILLMENTS}/{response.json()['id']}").json()
    assert seen["lines"] == [{"sku": "TSHIRT-S", "quantity": 2}, {"sku": "SHOP-MUG", "quantity": 1}]


def test_shipping_more_than_requested_is_refused(tpl, routed, products, warehouse):
    _, request = routed

    response = tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1), ("TSHIRT-S", 3)]), format="json")

    details = assert_error(response, 400, "validation_error")
    assert set(details) == {"lines.1.quantity"}
    assert not Fulfillment.objects.exists()
    assert committed(products["TSHIRT-S"], warehouse) == 2


def test_over_shipment_details_name_the_callers_line_when_a_sku_repeats(tpl, routed):
    _, request = routed

    response = tpl.post(
        FULFILLMENTS, shipment(request, [("TSHIRT-S", 1), ("TSHIRT-S", 1), ("MUG", 5)]), format="json"
    )

    assert set(assert_error(response, 400, "validation_error")) == {"lines.2.quantity"}


def test_unknown_and_unrequested_skus_are_refused_per_line(tpl, org, routed):
    from inventory.models import Product

    _, request = routed
    Product.objects.create(organization=org, sku="HAT", name="Hat")

    unknown = tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1), ("NOPE", 1)]), format="json")
    unrequested = tpl.post(FULFILLMENTS, shipment(request, [("HAT", 1)]), format="json")

    assert set(assert_error(unknown, 400, "validation_error")) == {"lines.1.sku"}
    assert set(assert_error(unrequested, 400, "validation_error")) == {"lines.0.sku"}


@pytest.mark.parametrize(
    "change,field",
    [
        ({"lines": []}, "lines"),
        ({"lines": [{"sku": "MUG", "quantity": 0}]}, "lines.0.quantity"),
        ({"tracking_url": "not a url"}, "tracking_url"),
        ({"shipped_at": "yesterday"}, "shipped_at"),
    ],
)
def test_invalid_fulfillment_bodies_name_the_field(tpl, routed, change, field):
    _, request = routed

    response = tpl.post(FULFILLMENTS, {**shipment(request, [("MUG", 1)]), **change}, format="json")

    assert field in assert_error(response, 400, "validation_error")


def test_a_repeated_fulfillment_external_id_returns_the_first(tpl, routed, products, warehouse):
    _, request = routed

    first = tpl.post(FULFILLMENTS, shipment(request, [("TSHIRT-S", 1)]), format="json")
    again = tpl.post(FULFILLMENTS, shipment(request, [("TSHIRT-S", 1)]), format="json")

    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["id"] == first.json()["id"]
    assert Fulfillment.objects.count() == 1
    assert InventoryLevel.objects.get(product=products["TSHIRT-S"], location=warehouse).on_hand == 9


def test_shipping_a_canceled_request_is_a_conflict(tpl, channel, routed):
    order, request = routed
    channel.post(f"{ORDERS}/{order.pk}/cancel")

    assert_error(tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json"), 409, "conflict")


def test_a_request_routed_elsewhere_is_not_found(api_client, org, tpl_connector, make_integration, routed):
    _, request = routed
    stranger = api_client(integration_key(make_integration(org, tpl_connector, "West 3PL")))

    assert_error(
        stranger.post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json"), 404, "not_found"
    )
    # Not an id at all: a 400 naming the field (#14, finding 4).
    malformed = shipment(request, [("MUG", 1)], shipping_request="abc")
    details = assert_error(stranger.post(FULFILLMENTS, malformed, format="json"), 400, "validation_error")
    assert "shipping_request" in details
    assert not Fulfillment.objects.exists()


def test_fulfillments_workflow_switched_off(tpl, warehouse_integration, routed):
    _, request = routed
    Integration.objects.filter(pk=warehouse_integration.pk).update(flow_fulfillments_in=False)

    assert_error(
        tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json"), 403, "workflow_disabled"
    )


def test_org_keys_cannot_post_fulfillments(api_client, org, org_admin, routed):
    _, request = routed
    issued = key_services.issue_key(
        kind=KeyKind.ORG, name="k", organization=org, user=org_admin, grants=ORDER_GRANTS
    )

    response = api_client(issued).post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json")

    assert assert_error(response, 403, "missing_grant") == {"key_kind": ["integration"]}


# --- GET /fulfillments --------------------------------------------------------------------------------


def test_a_channel_sees_the_fulfillments_of_its_orders_only(
    tpl, channel, api_client, org, channel_connector, make_integration, routed
):
    _, request = routed
    shipped = tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json").json()
    marketplace = api_client(integration_key(make_integration(org, channel_connector, "Marketplace")))

    assert [f["id"] for f in channel.get(FULFILLMENTS).json()["results"]] == [shipped["id"]]
    assert [f["id"] for f in tpl.get(FULFILLMENTS).json()["results"]] == [shipped["id"]]
    assert marketplace.get(FULFILLMENTS).json()["results"] == []
    assert_error(marketplace.get(f"{FULFILLMENTS}/{shipped['id']}"), 404, "not_found")


def test_fulfillments_updated_since(tpl, routed):
    _, request = routed
    shipped = tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json").json()
    later = (timezone.now() + timedelta(minutes=1)).isoformat().replace("+", "%2B")

    assert [
        f["id"] for f in tpl.get(f"{FULFILLMENTS}?updated_since={shipped['updated_at']}").json()["results"]
    ] == [shipped["id"]]
    assert tpl.get(f"{FULFILLMENTS}?updated_since={later}").json()["results"] == []


def test_the_method_code_subquery_of_the_shared_list_query_joins_nothing():
    # The class-level queryset is shared by a gthread worker's threads; compiling a subquery whose ordering
    # needs a join adds that join to the shared query object, and two threads doing it at once produced
    # "missing FROM-clause entry for table u1". The mapping is unique per integration and method: no ordering.
    from api.orders.views import ShippingRequestViewSet

    sql = str(ShippingRequestViewSet.queryset.query)
    subquery = sql.split('AS "fulfiller_method_code"')[0].rsplit("(SELECT", 1)[1]
    assert "JOIN" not in subquery and "ORDER BY" not in subquery, subquery
