"""Shipping requests with their stock commitments, fulfillments and cancellation through orders.services
(orders/shipping.py, orders/fulfillments.py, orders/cancellation.py)."""

import pytest
from django.core.exceptions import ValidationError

from integrations.models import OutboxEvent
from inventory import services as inventory
from inventory.models import InventoryLevel, Location
from orders import services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import Fulfillment


def level(product, location):
    return InventoryLevel.objects.get(product=product, location=location)


def counts(product, location):
    lv = level(product, location)
    return lv.on_hand, lv.committed


def lines_of(order):
    return {line.sku: line for line in order.lines.all()}


@pytest.fixture
def west(org, warehouse_integration):
    return Location.objects.create(
        organization=org, name="West", kind="3pl", managed_by=warehouse_integration, priority=2
    )


# --- shipping requests and commitments ----------------------------------------------------------------


def test_shipping_request_commits_stock(ready_order, warehouse, products, warehouse_integration):
    request = services.create_shipping_request(ready_order, warehouse)

    assert counts(products["TSHIRT-S"], warehouse) == (10, 2)
    assert counts(products["MUG"], warehouse) == (10, 1)
    assert counts(products["TSHIRT-M"], warehouse) == (10, 0)
    assert request.fulfiller == warehouse_integration
    assert sorted(request.lines.values_list("quantity", flat=True)) == [1, 2]
    ready_order.refresh_from_db()
    assert ready_order.status == OrderStatus.SENT_TO_FULFILLMENT
    event = OutboxEvent.objects.get(type="shipping_request.created")
    assert event.integration == warehouse_integration


def test_shipping_request_creates_a_missing_level(ready_order, west, products):
    request = services.create_shipping_request(ready_order, west)

    assert counts(products["TSHIRT-S"], west) == (0, 2)
    assert counts(products["MUG"], west) == (0, 1)
    assert request.location == west


def test_shipping_request_refused_for_an_order_not_ready(ingest, order_body, products, warehouse):
    order, _ = ingest(order_body)  # held: shipping method unmapped

    with pytest.raises(services.OrderConflict):
        services.create_shipping_request(order, warehouse)

    assert not InventoryLevel.objects.filter(committed__gt=0).exists()


def test_routing_more_than_ordered_is_refused(ready_order, warehouse, west, products):
    # given the whole order routed to East
    services.create_shipping_request(ready_order, warehouse)

    # when it is routed in full a second time, to West, then that is refused and nothing more is committed
    with pytest.raises(ValidationError):
        services.create_shipping_request(ready_order, west)

    assert not InventoryLevel.objects.filter(location=west).exists()
    assert ready_order.shipping_requests.count() == 1


def test_a_line_split_across_locations_is_never_routed_past_its_quantity(
    ready_order, warehouse, west, products
):
    # given one of the two T-shirts routed to East
    tee_line = lines_of(ready_order)["TSHIRT-S"]
    services.create_shipping_request(ready_order, warehouse, [(tee_line, 1)])

    # when West is asked for two more, then that is refused, naming the line
    with pytest.raises(ValidationError) as caught:
        services.create_shipping_request(ready_order, west, [(tee_line, 2)])
    assert set(caught.value.message_dict) == {"lines.0.quantity"}

    # and routing "the rest" to West routes exactly what is left
    rest = services.create_shipping_request(ready_order, west)
    assert sorted(rest.lines.values_list("product__sku", "quantity")) == [("MUG", 1), ("TSHIRT-S", 1)]
    assert (counts(products["TSHIRT-S"], warehouse), counts(products["TSHIRT-S"], west)) == ((10, 1), (0, 1))


def test_partial_fulfillment_releases_exactly_what_shipped(ready_order, warehouse, products):
    request = services.create_shipping_request(ready_order, warehouse)
    tee = products["TSHIRT-S"]

    fulfillment, created = services.create_fulfillment(request, {"external_id": "F1", "lines": [(tee.pk, 1)]})

    assert created and fulfillment.lines.get().quantity == 1
    assert counts(tee, warehouse) == (9, 1)
    assert counts(products["MUG"], warehouse) == (10, 1)
    request.refresh_from_db()
    ready_order.refresh_from_db()
    assert request.status == ShippingRequestStatus.PARTIALLY_FULFILLED
    assert ready_order.status == OrderStatus.PARTIALLY_FULFILLED


def test_full_fulfillment_completes_request_and_order(ready_order, warehouse, products, integration):
    request = services.create_shipping_request(ready_order, warehouse)
    tee, mug = products["TSHIRT-S"], products["MUG"]

    services.create_fulfillment(request, {"lines": [(tee.pk, 1)]})
    services.create_fulfillment(request, {"lines": [(tee.pk, 1), (mug.pk, 1)], "carrier": "UPS"})

    assert counts(tee, warehouse) == (8, 0)
    assert counts(mug, warehouse) == (9, 0)
    request.refresh_from_db()
    ready_order.refresh_from_db()
    assert request.status == ShippingRequestStatus.FULFILLED
    assert ready_order.status == OrderStatus.FULFILLED
    assert set(
        OutboxEvent.objects.filter(type="fulfillment.created").values_list("integration_id", flat=True)
    ) == {integration.pk}


def test_two_requests_at_two_locations(ready_order, warehouse, west, products):
    # given the T-shirts routed to East and the mug to West
    tee, mug = products["TSHIRT-S"], products["MUG"]
    lines = lines_of(ready_order)
    east_request = services.create_shipping_request(ready_order, warehouse, [(lines["TSHIRT-S"], 2)])
    west_request = services.create_shipping_request(ready_order, west, [(lines["MUG"], 1)])
    assert (counts(tee, warehouse), counts(mug, warehouse), counts(mug, west)) == ((10, 2), (10, 0), (0, 1))

    # when East ships, the order is partly fulfilled; when West ships too, fulfilled
    services.create_fulfillment(east_request, {"lines": [(tee.pk, 2)]})
    ready_order.refresh_from_db()
    assert ready_order.status == OrderStatus.PARTIALLY_FULFILLED

    InventoryLevel.objects.filter(product=mug, location=west).update(on_hand=4)
    services.create_fulfillment(west_request, {"lines": [(mug.pk, 1)]})
    ready_order.refresh_from_db()
    assert ready_order.status == OrderStatus.FULFILLED
    assert (counts(tee, warehouse), counts(mug, warehouse), counts(mug, west)) == ((8, 0), (10, 0), (3, 0))


def test_cancel_releases_commitments_and_cancels_open_requests(
    ready_order, warehouse, west, products, warehouse_integration, integration
):
    lines = lines_of(ready_order)
    east = services.create_shipping_request(ready_order, warehouse, [(lines["TSHIRT-S"], 2)])
    services.acknowledge(east)
    services.create_shipping_request(ready_order, west, [(lines["MUG"], 1)])

    services.cancel_order(ready_order)

    assert counts(products["TSHIRT-S"], warehouse) == (10, 0)
    assert counts(products["MUG"], west) == (0, 0)
    assert set(ready_order.shipping_requests.values_list("status", flat=True)) == {
        ShippingRequestStatus.CANCELED
    }
    canceled = OutboxEvent.objects.filter(type="shipping_request.canceled")
    assert canceled.count() == 2
    assert set(canceled.values_list("integration_id", flat=True)) == {warehouse_integration.pk}
    assert OutboxEvent.objects.get(type="order.canceled").integration == integration


def test_cancel_after_a_fulfillment_is_refused_and_keeps_commitments(ready_order, warehouse, products):
    request = services.create_shipping_request(ready_order, warehouse)
    services.create_fulfillment(request, {"lines": [(products["TSHIRT-S"].pk, 1)]})

    with pytest.raises(services.OrderConflict):
        services.cancel_order(ready_order)

    request.refresh_from_db()
    assert request.status == ShippingRequestStatus.PARTIALLY_FULFILLED
    assert counts(products["TSHIRT-S"], warehouse) == (9, 1)
    assert counts(products["MUG"], warehouse) == (10, 1)


def test_cancel_never_takes_committed_below_zero(ready_order, warehouse, products):
    # given a routed order whose commitment a stock correction already wiped out
    services.create_shipping_request(ready_order, warehouse)
    InventoryLevel.objects.filter(location=warehouse).update(committed=0)

    services.cancel_order(ready_order)

    assert counts(products["TSHIRT-S"], warehouse) == (10, 0)
    assert counts(products["MUG"], warehouse) == (10, 0)


def test_shipping_never_takes_committed_below_zero(ready_order, warehouse, products):
    request = services.create_shipping_request(ready_order, warehouse)
    InventoryLevel.objects.filter(location=warehouse).update(committed=0)

    services.create_fulfillment(request, {"lines": [(products["TSHIRT-S"].pk, 2)]})

    assert counts(products["TSHIRT-S"], warehouse) == (8, 0)


def test_release_stock_floors_at_zero(stock, warehouse, products):
    inventory.commit_stock(warehouse.pk, {products["MUG"].pk: 2})
    inventory.release_stock(warehouse.pk, {products["MUG"].pk: 5})

    assert counts(products["MUG"], warehouse) == (10, 0)


def test_over_shipment_is_refused_and_nothing_changes(ready_order, warehouse, products):
    request = services.create_shipping_request(ready_order, warehouse)
    tee, mug = products["TSHIRT-S"], products["MUG"]

    with pytest.raises(ValidationError) as caught:
        services.create_fulfillment(request, {"external_id": "F1", "lines": [(mug.pk, 1), (tee.pk, 3)]})

    assert set(caught.value.message_dict) == {"lines.1.quantity"}
    assert not Fulfillment.objects.exists()
    assert (counts(tee, warehouse), counts(mug, warehouse)) == ((10, 2), (10, 1))
    assert set(request.lines.values_list("fulfilled_quantity", flat=True)) == {0}
    request.refresh_from_db()
    assert request.status == ShippingRequestStatus.PENDING


def test_shipping_a_product_not_requested_is_refused(ready_order, warehouse, products):
    request = services.create_shipping_request(ready_order, warehouse)

    with pytest.raises(ValidationError) as caught:
        services.create_fulfillment(request, {"lines": [(products["TSHIRT-M"].pk, 1)]})

    assert set(caught.value.message_dict) == {"lines.0.sku"}
    assert counts(products["TSHIRT-M"], warehouse) == (10, 0)


def test_fulfillment_external_id_repeat_returns_the_first(
    ready_order, warehouse, products, warehouse_integration
):
    request = services.create_shipping_request(ready_order, warehouse)
    body = {"external_id": "SHIP-1", "tracking_number": "1Z", "lines": [(products["TSHIRT-S"].pk, 1)]}
    first, created = services.create_fulfillment(request, body, integration=warehouse_integration)

    again, created_again = services.create_fulfillment(request, body, integration=warehouse_integration)

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert Fulfillment.objects.count() == 1
    assert counts(products["TSHIRT-S"], warehouse) == (9, 1)
    assert request.lines.get(product=products["TSHIRT-S"]).fulfilled_quantity == 1
    assert OutboxEvent.objects.filter(type="fulfillment.created").count() == 1


def test_fulfillment_on_a_canceled_request_conflicts(ready_order, warehouse, products):
    request = services.create_shipping_request(ready_order, warehouse)
    services.cancel_order(ready_order)

    with pytest.raises(services.OrderConflict):
        services.create_fulfillment(request, {"lines": [(products["TSHIRT-S"].pk, 1)]})

    assert counts(products["TSHIRT-S"], warehouse) == (10, 0)
