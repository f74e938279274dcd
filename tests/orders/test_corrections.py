"""
Correcting a fulfillment in the services (orders/corrections.py): what a cancel locks and puts back when two
arrive at once, what the webhooks carry, and how the admin shows a canceled fulfillment.
"""

import json
import threading

import pytest
from django.db import connection, transaction
from django.urls import reverse

from integrations.models import WebhookDelivery
from integrations.webhooks import outbox, subscriptions
from inventory.models import InventoryLevel
from orders import services
from orders.choices import FulfillmentStatus, OrderStatus, ShippingRequestStatus
from orders.models import Fulfillment, Order
from tokens import issuing as key_services
from tokens.choices import KeyKind

HOOK_EVENTS = ["fulfillment.created", "fulfillment.updated", "fulfillment.canceled"]


@pytest.fixture
def shipment(ready_order, warehouse, products, warehouse_integration):
    """
    #1001 routed to the warehouse and shipped in full by its 3PL in two parcels: this one (2 × TSHIRT-S), and
    F-2 (the mug), so that its request stays partially fulfilled when this one is voided.
    """
    request = services.create_shipping_request(ready_order, warehouse)
    fulfillment, _ = services.create_fulfillment(
        request,
        {
            "external_id": "F-1",
            "carrier": "UPS",
            "tracking_number": "1Z1",
            "lines": [(products["TSHIRT-S"].pk, 2)],
        },
        integration=warehouse_integration,
    )
    services.create_fulfillment(
        request, {"external_id": "F-2", "lines": [(products["MUG"].pk, 1)]}, integration=warehouse_integration
    )
    return fulfillment


def stock(warehouse):
    return sorted(
        InventoryLevel.objects.filter(location=warehouse).values_list("product__sku", "on_hand", "committed")
    )


def test_update_refuses_any_field_but_carrier_and_tracking(shipment):
    with pytest.raises(ValueError):
        services.update_fulfillment(shipment, {"shipped_at": None, "carrier": "DHL"})

    shipment.refresh_from_db()
    assert shipment.carrier == "UPS"


def test_a_canceled_request_refuses_a_cancel_of_its_fulfillment(shipment, warehouse):
    # A request canceled under a shipment (no flow does this today): voiding it would reserve stock for a
    # request that owes nothing, so it is refused and nothing changes.
    shipment.shipping_request.__class__.objects.filter(pk=shipment.shipping_request_id).update(
        status=ShippingRequestStatus.CANCELED
    )
    before = stock(warehouse)

    with pytest.raises(services.OrderConflict):
        services.cancel_fulfillment(shipment)

    shipment.refresh_from_db()
    assert (shipment.status, shipment.canceled_at) == (FulfillmentStatus.SHIPPED, None)
    assert stock(warehouse) == before


def test_cancels_move_a_fulfilled_order_back_a_parcel_at_a_time(shipment, warehouse):
    order, request = Order.objects.get(pk=shipment.order_id), shipment.shipping_request
    assert (order.status, stock(warehouse)) == (
        "fulfilled",
        [("MUG", 9, 0), ("TSHIRT-M", 10, 0), ("TSHIRT-S", 8, 0)],
    )

    services.cancel_fulfillment(shipment)
    order.refresh_from_db()
    request.refresh_from_db()
    assert (order.status, request.status) == (OrderStatus.PARTIALLY_FULFILLED, "partially_fulfilled")
    assert stock(warehouse) == [("MUG", 9, 0), ("TSHIRT-M", 10, 0), ("TSHIRT-S", 10, 2)]

    services.cancel_fulfillment(Fulfillment.objects.get(external_id="F-2"))
    order.refresh_from_db()
    request.refresh_from_db()
    assert (order.status, request.status) == (OrderStatus.SENT_TO_FULFILLMENT, "pending")
    assert stock(warehouse) == [("MUG", 10, 1), ("TSHIRT-M", 10, 0), ("TSHIRT-S", 10, 2)]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_cancels_at_once_put_the_stock_back_once(shipment, warehouse):
    # Given: two requests to void the same shipment, released together
    start, outcomes = threading.Barrier(2), []

    def cancel():
        try:
            start.wait(timeout=10)
            services.cancel_fulfillment(Fulfillment.objects.get(pk=shipment.pk))
            outcomes.append("canceled")
        except services.OrderConflict:
            outcomes.append("conflict")
        except Exception as exc:
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=cancel) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then: one voided it, the other was refused, and the units came back once
    assert sorted(outcomes) == ["canceled", "conflict"]
    assert stock(warehouse) == [("MUG", 9, 0), ("TSHIRT-M", 10, 0), ("TSHIRT-S", 10, 2)]
    with transaction.atomic():
        assert Fulfillment.objects.get(pk=shipment.pk).status == FulfillmentStatus.CANCELED


def test_the_channel_hears_of_corrections_as_its_api_shows_them(
    shipment, integration, warehouse_integration, api_client, settings
):
    # Given: the channel and the 3PL each subscribed to the fulfillment events with fulfillments:read
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    grants = ["webhooks:write", "fulfillments:read"]
    keys = {}
    for name, who in (("channel", integration), ("3pl", warehouse_integration)):
        keys[name] = key_services.issue_key(
            kind=KeyKind.INTEGRATION, name=name, integration=who, grants=grants
        )
        subscriptions.subscribe(who, f"http://127.0.0.1:9/{name}", HOOK_EVENTS, keys[name].key)

    services.update_fulfillment(shipment, {"tracking_number": "1Z2"})
    outbox.dispatch_outbox()
    services.cancel_fulfillment(shipment)
    outbox.dispatch_outbox()

    # Then: the channel got both, each body as GET answered it at that moment; the 3PL, whose
    # "fulfillments out" flow is off (it sends them), is told of none, as of fulfillment.created
    bodies = [
        json.loads(d.body)
        for d in WebhookDelivery.objects.filter(integration=integration).order_by("sequence")
    ]
    assert [b["type"] for b in bodies] == ["fulfillment.updated", "fulfillment.canceled"]
    updated, canceled = (b["data"] for b in bodies)
    assert (updated["status"], updated["tracking_number"]) == ("shipped", "1Z2")
    assert canceled == api_client(keys["channel"]).get(f"/api/v1/fulfillments/{shipment.pk}").json()
    assert canceled["status"] == "canceled" and canceled["canceled_at"]
    assert not WebhookDelivery.objects.filter(integration=warehouse_integration).exists()


def test_an_event_type_subscription_needs_fulfillments_read(integration):
    key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=["webhooks:write"]
    )

    with pytest.raises(subscriptions.MissingEventGrant) as refused:
        subscriptions.check_events(["fulfillment.updated", "fulfillment.canceled"], key.key)

    assert refused.value.details == {"required": ["fulfillments:read"]}


def test_the_admin_shows_a_canceled_fulfillment_as_canceled(admin_client_for, org_admin, shipment):
    client = admin_client_for(org_admin)
    services.cancel_fulfillment(shipment)

    changelist = client.get(reverse("admin:orders_fulfillment_changelist")).content.decode()
    page = client.get(reverse("admin:orders_fulfillment_change", args=[shipment.pk])).content.decode()
    order_page = client.get(reverse("admin:orders_order_change", args=[shipment.order_id])).content.decode()
    only_canceled = client.get(reverse("admin:orders_fulfillment_changelist"), {"status__exact": "canceled"})

    for html in (changelist, page, order_page):
        assert 'data-status="canceled">Canceled</span>' in html
    assert [f.pk for f in only_canceled.context["cl"].result_list] == [shipment.pk]
