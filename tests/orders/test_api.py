"""The order flow over the API (API.md, Orders; Fulfillment): orders in, shipping requests out, shipments back."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import Integration
from inventory.models import InventoryLevel, Location, SkuMapping
from orders import ingest, services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import (
    Fulfillment,
    FulfillmentLine,
    Order,
    OrderLine,
    ShippingMethod,
    ShippingMethodMapping,
    ShippingRequest,
    ShippingRequestLine,
)
from tests.api.helpers import assert_error
from tokens import issuing as key_services
from tokens.choices import KeyKind

ORDERS = "/api/v1/orders"
REQUESTS = "/api/v1/shipping-requests"
FULFILLMENTS = "/api/v1/fulfillments"
ORDER_GRANTS = [
    "orders:read",
    "orders:write",
    "shipping_requests:read",
    "shipping_requests:write",
    "fulfillments:read",
    "fulfillments:write",
]


def integration_key(integration, grants=None):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name=f"{integration.name} key", integration=integration, grants=grants
    )


@pytest.fixture
def channel(api_client, integration_key):
    """The web shop's client (custom-channel's recommended grants)."""
    return api_client(integration_key)


@pytest.fixture
def tpl(api_client, warehouse_integration):
    """The 3PL's client: custom-3pl's recommended grants, and orders:read to see the orders routed to it."""
    grants = [*warehouse_integration.connector.recommended_grants, "orders:read"]
    return api_client(integration_key(warehouse_integration, grants=grants))


@pytest.fixture
def routed(channel, order_body, stock, standard_method, warehouse):
    """The channel's order #1001 (2 × TSHIRT-S, 1 × MUG), routed whole to the 3PL's warehouse."""
    response = channel.post(ORDERS, order_body, format="json")
    assert response.status_code == 201, response.content
    order = services.make_ready(Order.objects.get(pk=response.json()["id"]))  # as the hold engine, no rules
    return order, services.create_shipping_request(order, warehouse)


def shipment(request, lines, external_id="SHIP-1", **extra):
    return {
        "shipping_request": str(request.pk),
        "external_id": external_id,
        "carrier": "UPS",
        "tracking_number": "1Z999",
        "tracking_url": "https://track.example.test/1Z999",
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "shipped_at": "2025-05-01T12:00:00Z",
        **extra,
    }


def committed(product, location) -> int:
    return InventoryLevel.objects.get(product=product, location=location).committed


# --- POST /orders -------------------------------------------------------------------------------------


def test_order_push_creates_then_upserts(channel, order_body, products, standard_method):
    first = channel.post(ORDERS, order_body, format="json")
    again = channel.post(ORDERS, {**order_body, "notes": "gift wrap"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["id"] == first.json()["id"]
    assert isinstance(first.json()["id"], str)
    assert Order.objects.filter(external_id="1001").count() == 1
    assert again.json()["notes"] == "gift wrap"


def test_order_is_returned_as_sent_plus_its_state(channel, order_body, products, standard_method):
    body = channel.post(ORDERS, order_body, format="json").json()

    for field in ("external_id", "number", "currency", "customer", "shipping_address", "shipping_method"):
        assert body[field] == order_body[field], field
    assert body["lines"] == [
        {"sku": "TSHIRT-S", "quantity": 2, "unit_price": "12.50", "tax": "0.00", "discount": "0.00"},
        {"sku": "MUG", "quantity": 1, "unit_price": "8.00", "tax": "0.00", "discount": "0.00"},
    ]
    assert body["status"] == "new"  # until the hold engine applied the rules (tests/automations)
    assert body["hold"] is None
    assert body["totals"] == {
        "subtotal": "33.00",
        "shipping": "0.00",
        "tax": "0.00",
        "discount": "0.00",
        "total": "33.00",
    }
    assert (body["shipping_requests"], body["fulfillments"]) == ([], [])
    assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")


def test_order_totals_and_optional_fields_are_taken(channel, order_body, products, standard_method):
    order_body.update(
        billing_address={"name": "Ada", "country": "US"},
        payment_status="authorized",
        tags=["vip"],
        currency="eur",
        totals={"shipping": "4.99", "tax": "2.00", "total": "39.99"},
    )

    body = channel.post(ORDERS, order_body, format="json").json()

    assert (body["billing_address"], body["payment_status"], body["tags"]) == (
        {"name": "Ada", "country": "US"},
        "authorized",
        ["vip"],
    )
    assert body["currency"] == "EUR"
    assert body["totals"] == {
        "subtotal": "33.00",
        "shipping": "4.99",
        "tax": "2.00",
        "discount": "0.00",
        "total": "39.99",
    }


@pytest.mark.parametrize(
    "change,field",
    [
        ({"lines": []}, "lines"),
        ({"lines": [{"sku": "MUG", "quantity": 0, "unit_price": "1"}]}, "lines.0.quantity"),
        ({"lines": [{"sku": "MUG", "quantity": 1, "unit_price": "1"}, {"quantity": 1}]}, "lines.1.sku"),
        ({"lines": [{"sku": "MUG", "quantity": 1, "unit_price": "-1"}]}, "lines.0.unit_price"),
        ({"lines": [{"sku": "MUG", "quantity": 1, "unit_price": "1"}] * 501}, "lines"),
        ({"currency": "US"}, "currency"),
        ({"currency": "U$D"}, "currency"),
        ({"external_id": ""}, "external_id"),
        ({"payment_status": "maybe"}, "payment_status"),
        ({"totals": {"total": "abc"}}, "totals.total"),
    ],
)
def test_invalid_order_bodies_name_the_field(channel, order_body, products, change, field):
    response = channel.post(ORDERS, {**order_body, **change}, format="json")

    details = assert_error(response, 400, "validation_error")
    assert field in details, details
    assert not Order.objects.exists()


def test_unmapped_sku_holds_the_order_and_raises_an_exception(channel, order_body, products, standard_method):
    order_body["lines"][0]["sku"] = "NOPE-1"

    body = channel.post(ORDERS, order_body, format="json").json()

    assert body["status"] == "on_hold"
    assert "unmapped SKU NOPE-1" in body["hold"]["reason"]
    assert body["hold"]["until"] is None
    assert body["lines"][0]["sku"] == "NOPE-1"
    exception = SyncException.objects.get(kind=ExceptionKind.UNMAPPED_SKU)
    assert (exception.entity_type, exception.entity_id) == ("order", body["id"])
    assert "NOPE-1" in exception.message


def test_mapped_channel_sku_routes_and_comes_back_as_sent(
    channel, integration, order_body, products, standard_method
):
    SkuMapping.objects.create(
        integration=integration, external_sku="SHOP-TEE-S", product=products["TSHIRT-S"]
    )
    order_body["lines"][0]["sku"] = "SHOP-TEE-S"

    body = channel.post(ORDERS, order_body, format="json").json()

    assert (body["status"], body["hold"]) == ("new", None)
    assert body["lines"][0]["sku"] == "SHOP-TEE-S"
    assert OrderLine.objects.get(order_id=body["id"], line_number=1).product == products["TSHIRT-S"]
    assert not SyncException.objects.exists()


def test_a_workflow_switched_off_refuses_orders(channel, integration, order_body, products):
    Integration.objects.filter(pk=integration.pk).update(flow_orders_in=False)

    response = channel.post(ORDERS, order_body, format="json")

    assert_error(response, 403, "workflow_disabled")
    assert not Order.objects.exists()


def test_a_key_without_orders_write_gets_missing_grant(api_client, integration, order_body, products):
    client = api_client(integration_key(integration, grants=["orders:read"]))

    response = client.post(ORDERS, order_body, format="json")

    assert assert_error(response, 403, "missing_grant") == {"required": ["orders:write"]}


def test_a_key_without_orders_read_gets_missing_grant(api_client, integration, routed):
    client = api_client(integration_key(integration, grants=["fulfillments:read"]))
    order, _ = routed

    assert_error(client.get(ORDERS), 403, "missing_grant")
    assert_error(client.get(f"{ORDERS}/{order.pk}"), 403, "missing_grant")


@pytest.mark.parametrize("kind", [KeyKind.ORG, KeyKind.GLOBAL])
def test_org_and_global_keys_cannot_push_orders(
    api_client, org, org_admin, superuser, order_body, products, kind
):
    # An order's source is the channel that sent it; a key of no integration has none (documented in the schema).
    owner = {"organization": org, "user": org_admin} if kind == KeyKind.ORG else {"user": superuser}
    issued = key_services.issue_key(kind=kind, name="k", grants=["orders:write"], **owner)

    response = api_client(issued).post(ORDERS, order_body, format="json")

    assert assert_error(response, 403, "missing_grant") == {"key_kind": ["integration"]}
    assert not Order.objects.exists()


def test_idempotency_key_replays_an_order_push(channel, order_body, products, standard_method):
    first = channel.post(ORDERS, order_body, format="json", HTTP_IDEMPOTENCY_KEY="push-1001")
    again = channel.post(ORDERS, order_body, format="json", HTTP_IDEMPOTENCY_KEY="push-1001")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_pushes_of_a_new_order_create_it_once(
    integration_key, integration, order_body, products, monkeypatch
):
    # Given: the first writer holds its new row uncommitted a moment, so the second one meets the unique
    # constraint rather than the finished order (no Idempotency-Key: the upsert alone must hold).
    real = ingest._create_order

    def slow_create(*args, **kwargs):
        order = real(*args, **kwargs)
        time.sleep(0.3)
        return order

    monkeypatch.setattr(ingest, "_create_order", slow_create)
    barrier = threading.Barrier(2)
    responses = [None, None]

    def worker(index):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {integration_key.plaintext}")
        try:
            barrier.wait(timeout=5)
            responses[index] = client.post(ORDERS, order_body, content_type="application/json")
        finally:
            connection.close()

    # When
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    # Then
    assert all(r is not None for r in responses), "a worker thread failed"
    assert sorted(r.status_code for r in responses) == [200, 201], [r.content for r in responses]
    assert responses[0].json()["id"] == responses[1].json()["id"]
    assert Order.objects.filter(source=integration, external_id="1001").count() == 1
    assert OrderLine.objects.filter(order__external_id="1001").count() == 2


# --- GET /orders --------------------------------------------------------------------------------------


def test_order_list_and_filters(channel, ingest, order_body, products, standard_method):
    first, _ = ingest(order_body)
    second, _ = ingest(
        {**order_body, "external_id": "1002", "lines": [{"sku": "NOPE", "quantity": 1, "unit_price": "1"}]}
    )
    Order.objects.filter(pk=first.pk).update(updated_at=timezone.now() - timedelta(days=2))
    since = (timezone.now() - timedelta(days=1)).isoformat()

    def ids(query=""):
        response = channel.get(f"{ORDERS}{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [str(second.pk), str(first.pk)]  # newest first
    assert ids("?status=on_hold") == [str(second.pk)]
    assert ids("?external_id=1001") == [str(first.pk)]
    assert ids(f"?updated_since={since.replace('+', '%2B')}") == [str(second.pk)]
    assert ids("?limit=1") == [str(second.pk)]
    assert channel.get(f"{ORDERS}?limit=1").json()["next"]
    assert "status" in assert_error(channel.get(f"{ORDERS}?status=lost"), 400, "validation_error")


def test_order_detail(channel, routed):
    order, request = routed

    body = channel.get(f"{ORDERS}/{order.pk}").json()

    assert body["id"] == str(order.pk)
    assert body["status"] == "sent_to_fulfillment"
    assert body["shipping_requests"] == [
        {"id": str(request.pk), "location": str(request.location_id), "status": "pending"}
    ]


def test_a_3pl_sees_orders_routed_to_it_but_not_other_fulfillers_shares(
    tpl, api_client, org, tpl_connector, make_integration, routed, ingest, order_body, products
):
    # Given: a second 3PL ships the mug of the same order; and an order routed nowhere
    order, request = routed
    other = make_integration(org, tpl_connector, "West 3PL")
    west = ShippingRequest.objects.create(
        organization=org,
        order=order,
        location=Location.objects.create(organization=org, name="West", managed_by=other),
        fulfiller=other,
    )
    unrouted, _ = ingest({**order_body, "external_id": "2002"})

    # When
    listed = tpl.get(ORDERS).json()["results"]
    other_view = api_client(integration_key(other, grants=ORDER_GRANTS)).get(f"{ORDERS}/{order.pk}").json()

    # Then
    assert [row["id"] for row in listed] == [str(order.pk)]
    assert [r["id"] for r in listed[0]["shipping_requests"]] == [str(request.pk)]
    assert [r["id"] for r in other_view["shipping_requests"]] == [str(west.pk)]
    assert_error(tpl.get(f"{ORDERS}/{unrouted.pk}"), 404, "not_found")


def test_org_key_sees_the_organizations_orders(
    api_client, org, org_admin, routed, make_integration, channel_connector, ingest, order_body
):
    marketplace = make_integration(org, channel_connector, "Marketplace")
    ingest({**order_body, "external_id": "M-1"}, source=marketplace)
    issued = key_services.issue_key(
        kind=KeyKind.ORG, name="k", organization=org, user=org_admin, grants=["orders:read"]
    )

    listed = api_client(issued).get(ORDERS).json()["results"]

    assert len(listed) == 2


# --- POST /orders/{id}/cancel -------------------------------------------------------------------------


def test_cancel_releases_commitments_and_cancels_open_requests(channel, routed, products, warehouse):
    order, request = routed
    assert committed(products["TSHIRT-S"], warehouse) == 2

    response = channel.post(f"{ORDERS}/{order.pk}/cancel", {"reason": "customer asked"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "canceled"
    assert body["shipping_requests"][0]["status"] == "canceled"
    request.refresh_from_db()
    assert request.status == ShippingRequestStatus.CANCELED
    assert committed(products["TSHIRT-S"], warehouse) == 0
    assert committed(products["MUG"], warehouse) == 0
    assert "customer asked" in body["notes"]


def test_cancel_without_a_body_and_twice(channel, ingest, order_body, products):
    order, _ = ingest(order_body)

    first = channel.post(f"{ORDERS}/{order.pk}/cancel")
    again = channel.post(f"{ORDERS}/{order.pk}/cancel", {}, format="json")

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["status"] == "canceled"


def test_cancel_after_a_shipment_is_a_conflict(channel, tpl, routed):
    order, request = routed
    assert tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json").status_code == 201

    response = channel.post(f"{ORDERS}/{order.pk}/cancel")

    assert_error(response, 409, "conflict")
    order.refresh_from_db()
    assert order.status == OrderStatus.PARTIALLY_FULFILLED


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
        "order": {"id": str(order.pk), "number": "#1001", "shipping_address": order.shipping_address},
        "location": str(request.location_id),
        "shipping_method": "GROUND",
        "lines": [
            {"sku": "WH-TEE-S", "quantity": 2, "fulfilled_quantity": 0},
            {"sku": "MUG", "quantity": 1, "fulfilled_quantity": 0},
        ],
        "status": "pending",
        "acknowledged_at": None,
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
        "carrier": "UPS",
        "tracking_number": "1Z999",
        "tracking_url": "https://track.example.test/1Z999",
        "lines": [{"sku": "TSHIRT-S", "quantity": 2}],
        "shipped_at": "2025-05-01T12:00:00Z",
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


# --- tenancy: another organization's objects are 404 ----------------------------------------------------


def test_another_organizations_objects_are_not_found(api_client, other_integration, tpl, routed):
    # Given: Globex's key, with every grant of the order flow (and its fulfillments-in switch on)
    order, request = routed
    Integration.objects.filter(pk=other_integration.pk).update(flow_fulfillments_in=True)
    shipped = tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json").json()
    globex = api_client(integration_key(other_integration, grants=ORDER_GRANTS))
    before = list(Order.objects.values()), list(ShippingRequest.objects.values())

    # When / then
    for response in (
        globex.get(f"{ORDERS}/{order.pk}"),
        globex.post(f"{ORDERS}/{order.pk}/cancel"),
        globex.get(f"{REQUESTS}/{request.pk}"),
        globex.post(f"{REQUESTS}/{request.pk}/acknowledge"),
        globex.get(f"{FULFILLMENTS}/{shipped['id']}"),
        globex.post(FULFILLMENTS, shipment(request, [("TSHIRT-S", 1)], external_id="X"), format="json"),
    ):
        assert_error(response, 404, "not_found")
    for url in (ORDERS, REQUESTS, FULFILLMENTS):
        assert globex.get(url).json()["results"] == []
    assert (list(Order.objects.values()), list(ShippingRequest.objects.values())) == before


# --- query counts -------------------------------------------------------------------------------------

# Per list: the key look-up and the request log (2), the page, and one per prefetch or SKU translation —
# the same for 3 rows or 300.
QUERY_BOUNDS = {
    ("channel", ORDERS): 6,  # orders, lines, shipping requests, fulfillments
    ("tpl", ORDERS): 6,
    ("tpl", REQUESTS): 5,  # requests (with order and method code joined), lines, the 3PL's SKUs
    ("tpl", FULFILLMENTS): 5,  # fulfillments, lines, the 3PL's SKUs
    ("channel", FULFILLMENTS): 4,  # fulfillments, lines (its own orders' SKUs need no look-up)
}


def make_shipped_orders(n, channel_integration, location, products, method):
    """n orders of the channel, each routed whole to `location` and shipped in part, in a few bulk queries."""
    now = timezone.now()
    org_id, fulfiller = channel_integration.organization_id, location.managed_by
    orders = Order.objects.bulk_create(
        Order(
            organization_id=org_id,
            source=channel_integration,
            external_id=f"B{i}",
            number=f"#B{i}",
            status=OrderStatus.PARTIALLY_FULFILLED,
            shipping_method=method,
            shipping_method_code="shopify-std",
        )
        for i in range(n)
    )
    lines = OrderLine.objects.bulk_create(
        OrderLine(order=o, line_number=k, product=p, sku=p.sku, external_sku=p.sku, quantity=2, unit_price=1)
        for o in orders
        for k, p in enumerate(products.values(), start=1)
    )
    requests = ShippingRequest.objects.bulk_create(
        ShippingRequest(
            organization_id=org_id, order=o, location=location, fulfiller=fulfiller, shipping_method=method
        )
        for o in orders
    )
    request_of = {r.order_id: r for r in requests}
    request_lines = ShippingRequestLine.objects.bulk_create(
        ShippingRequestLine(
            request=request_of[line.order_id], order_line=line, product=line.product, quantity=2
        )
        for line in lines
    )
    fulfillments = Fulfillment.objects.bulk_create(
        Fulfillment(
            organization_id=org_id,
            order=r.order,
            shipping_request=r,
            integration=fulfiller,
            external_id=f"F{r.pk}",
            shipped_at=now,
        )
        for r in requests
    )
    fulfillment_of = {f.shipping_request_id: f for f in fulfillments}
    FulfillmentLine.objects.bulk_create(
        FulfillmentLine(
            fulfillment=fulfillment_of[rl.request_id], request_line=rl, product=rl.product, quantity=1
        )
        for rl in request_lines
    )


@pytest.mark.parametrize("n", [3, 300])
@pytest.mark.parametrize("who,url", list(QUERY_BOUNDS))
def test_lists_run_a_bounded_number_of_queries(
    request,
    django_assert_max_num_queries,
    integration,
    warehouse_integration,
    warehouse,
    products,
    standard_method,
    who,
    url,
    n,
):
    # Given: mapped SKUs on both sides, so the translations run too
    make_shipped_orders(n, integration, warehouse, products, standard_method)
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="WH-MUG", product=products["MUG"]
    )
    client = request.getfixturevalue(who)
    client.get(url)  # the key's first use writes its last-used time; not the list's cost

    # When
    with django_assert_max_num_queries(QUERY_BOUNDS[who, url]):
        response = client.get(f"{url}?limit=500")

    # Then
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == n
    text = response.content.decode()
    if url == REQUESTS:
        assert '"WH-MUG"' in text and '"GROUND"' in text
