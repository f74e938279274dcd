"""POST and GET /orders and POST /orders/{id}/cancel (docs/connectors/contract.md, "Orders"): upserts,
idempotency, concurrent pushes."""

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
from inventory.models import Location, SkuMapping
from orders import ingest
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import Order, OrderLine, ShippingRequest
from tests.api.helpers import assert_error
from tests.orders.helpers import FULFILLMENTS, ORDER_GRANTS, ORDERS, committed, integration_key, shipment
from tokens import issuing as key_services
from tokens.choices import KeyKind

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
