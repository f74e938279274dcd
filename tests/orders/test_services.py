"""The order flow through orders.services: ingest (upsert, totals, mappings, outbox), routing with stock
commitments, fulfillment and cancellation."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from automations.choices import ExceptionStatus
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import OutboxEvent
from integrations.workflows import WorkflowDisabled
from inventory import services as inventory
from inventory.models import InventoryLevel, Location, Product, SkuMapping
from orders import services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import Fulfillment, Order, ShippingMethodMapping


def level(product, location):
    return InventoryLevel.objects.get(product=product, location=location)


def counts(product, location):
    lv = level(product, location)
    return lv.on_hand, lv.committed


@pytest.fixture
def second_channel(org, channel_connector, make_integration):
    return make_integration(org, channel_connector, "Acme marketplace")


@pytest.fixture
def ready_order(ingest, order_body, stock, standard_method):
    """#1001: 2 × TSHIRT-S, 1 × MUG, ready to route."""
    order, _ = ingest(order_body)
    assert order.status == OrderStatus.READY
    return order


@pytest.fixture
def west(org, warehouse_integration):
    return Location.objects.create(
        organization=org, name="West", kind="3pl", managed_by=warehouse_integration, priority=2
    )


def lines_of(order):
    return {line.sku: line for line in order.lines.all()}


# --- ingest -------------------------------------------------------------------------------------------


def test_ingest_creates_then_updates_one_order(ingest, order_body, products, standard_method):
    order, created = ingest(order_body)
    order_body["customer"] = {"name": "Ada L.", "email": "ada@example.test"}
    again, created_again = ingest(order_body)

    assert (created, created_again) == (True, False)
    assert again.pk == order.pk
    assert Order.objects.count() == 1
    again.refresh_from_db()
    assert again.customer["name"] == "Ada L."
    assert again.lines.count() == 2


def test_another_channel_may_reuse_the_external_id(
    ingest, order_body, products, standard_method, second_channel
):
    ShippingMethodMapping.objects.create(
        integration=second_channel, external_code="shopify-std", method=standard_method
    )
    first, _ = ingest(order_body)

    second, created = ingest(order_body, source=second_channel)

    assert created and second.pk != first.pk
    assert sorted(Order.objects.values_list("source_id", flat=True)) == sorted(
        [first.source_id, second_channel.pk]
    )


def test_totals_are_computed_from_lines(ingest, order_body, products, standard_method):
    order_body["lines"] = [
        {"sku": "TSHIRT-S", "quantity": 2, "unit_price": "12.50", "discount": "1.00", "tax": "2.00"},
        {"sku": "MUG", "quantity": 3, "unit_price": "8.00", "tax": "1.50"},
    ]
    order_body.update(shipping_total="4.95", discount_total="5.00")

    order, _ = ingest(order_body)

    order.refresh_from_db()
    assert order.subtotal == Decimal("48.00")  # 2 × 12.50 − 1.00 + 3 × 8.00
    assert order.tax_total == Decimal("3.50")  # Σ line tax when the body names no tax_total
    assert order.total == Decimal("51.45")  # 48.00 + 4.95 + 3.50 − 5.00


def test_totals_from_the_body_win(ingest, order_body, products, standard_method):
    order_body.update(tax_total="2.64", shipping_total="5", total="40.64")

    order, _ = ingest(order_body)

    order.refresh_from_db()
    assert (order.subtotal, order.tax_total, order.total) == (
        Decimal("33.00"),
        Decimal("2.64"),
        Decimal("40.64"),
    )


def test_repush_with_a_changed_line_discount_recomputes_totals(ingest, order_body, products, standard_method):
    ingest(order_body)
    order_body["lines"][1]["discount"] = "3.00"

    order, _ = ingest(order_body)

    order.refresh_from_db()
    assert lines_of(order)["MUG"].discount == Decimal("3.00")
    assert (order.subtotal, order.total) == (Decimal("30.00"), Decimal("30.00"))


def test_unmapped_sku_holds_the_order_and_raises_one_exception(ingest, order_body, products, standard_method):
    order_body["lines"][0]["sku"] = "TSHIRT-XXL"

    order, _ = ingest(order_body)

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert "TSHIRT-XXL" in order.hold_reason
    assert lines_of(order)[""].external_sku == "TSHIRT-XXL"  # kept as sent, no hub SKU
    exc = SyncException.objects.get()
    assert (exc.kind, exc.status, exc.occurrences) == (ExceptionKind.UNMAPPED_SKU, ExceptionStatus.OPEN, 1)
    assert (exc.entity_type, exc.entity_id, exc.integration_id) == ("order", str(order.pk), order.source_id)
    assert "TSHIRT-XXL" in exc.message


def test_repeated_unmapped_push_counts_occurrences(ingest, order_body, products, standard_method):
    order_body["lines"][0]["sku"] = "TSHIRT-XXL"

    for _ in range(3):
        ingest(order_body)

    exc = SyncException.objects.get()
    assert (exc.status, exc.occurrences) == (ExceptionStatus.OPEN, 3)
    assert Order.objects.get().status == OrderStatus.ON_HOLD


def test_repush_after_the_product_exists_releases_the_order(
    ingest, order_body, products, standard_method, org
):
    # given an order held for an unknown SKU
    order_body["lines"][0]["sku"] = "TSHIRT-XXL"
    order, _ = ingest(order_body)
    assert order.status == OrderStatus.ON_HOLD

    # when the product is created and the channel pushes the same order again
    xxl = Product.objects.create(organization=org, sku="TSHIRT-XXL", name="XXL")
    order, created = ingest(order_body)

    # then the line is mapped, the order ready, and the exception resolved by itself
    order.refresh_from_db()
    assert not created
    assert (order.status, order.hold_reason) == (OrderStatus.READY, "")
    assert lines_of(order)["TSHIRT-XXL"].product == xxl
    assert SyncException.objects.get().status == ExceptionStatus.RESOLVED


def test_repush_after_a_sku_mapping_exists_releases_the_order(
    ingest, order_body, products, standard_method, integration
):
    order_body["lines"][0]["sku"] = "SHOP-TEE-S"
    order, _ = ingest(order_body)
    assert order.status == OrderStatus.ON_HOLD

    SkuMapping.objects.create(
        integration=integration, external_sku="SHOP-TEE-S", product=products["TSHIRT-S"]
    )
    order, _ = ingest(order_body)

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert lines_of(order)["TSHIRT-S"].external_sku == "SHOP-TEE-S"
    assert SyncException.objects.get().status == ExceptionStatus.RESOLVED


def test_unmapped_shipping_method_holds_then_a_repush_releases(
    ingest, order_body, products, standard_method, integration
):
    # given a channel code nobody mapped
    order_body["shipping_method"] = "shopify-express"
    order, _ = ingest(order_body)
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD and "shopify-express" in order.hold_reason
    exc = SyncException.objects.get()
    assert exc.kind == ExceptionKind.UNMAPPED_SHIPPING_METHOD

    # when the admin maps it and the channel pushes again
    ingest(order_body)
    assert SyncException.objects.get().occurrences == 2
    ShippingMethodMapping.objects.filter(integration=integration).update(external_code="shopify-express")
    order, _ = ingest(order_body)

    # then it is ready with the hub method, and the exception resolved
    order.refresh_from_db()
    assert (order.status, order.shipping_method) == (OrderStatus.READY, standard_method)
    assert SyncException.objects.get().status == ExceptionStatus.RESOLVED


def test_a_resolved_cause_that_recurs_opens_a_new_exception(
    ingest, order_body, products, standard_method, org
):
    order_body["lines"][0]["sku"] = "LATER"
    ingest(order_body)
    Product.objects.create(organization=org, sku="LATER", name="Later")
    ingest(order_body)

    order_body["lines"][0]["sku"] = "UNKNOWN-AGAIN"
    ingest(order_body)

    assert sorted(SyncException.objects.values_list("status", flat=True)) == ["open", "resolved"]


def test_channel_sku_mapping_translates_in(ingest, order_body, products, standard_method, integration):
    SkuMapping.objects.create(
        integration=integration, external_sku="SHOP-TEE-S", product=products["TSHIRT-S"]
    )
    order_body["lines"][0]["sku"] = "SHOP-TEE-S"

    order, _ = ingest(order_body)

    line = order.lines.get(line_number=1)
    assert (line.product, line.sku, line.external_sku) == (products["TSHIRT-S"], "TSHIRT-S", "SHOP-TEE-S")
    assert order.status == OrderStatus.READY


def test_another_channels_sku_mapping_is_not_used(
    ingest, order_body, products, standard_method, second_channel
):
    SkuMapping.objects.create(
        integration=second_channel, external_sku="SHOP-TEE-S", product=products["TSHIRT-S"]
    )
    order_body["lines"][0]["sku"] = "SHOP-TEE-S"

    order, _ = ingest(order_body)

    assert order.status == OrderStatus.ON_HOLD


def test_line_changes_after_sent_to_fulfillment_conflict(ready_order, order_body, ingest, warehouse):
    services.create_shipping_request(ready_order, warehouse)
    order_body["lines"][0]["quantity"] = 5

    with pytest.raises(services.OrderConflict):
        ingest(order_body)

    ready_order.refresh_from_db()
    assert ready_order.status == OrderStatus.SENT_TO_FULFILLMENT
    assert lines_of(ready_order)["TSHIRT-S"].quantity == 2
    assert ready_order.total == Decimal("33.00")


def test_header_changes_after_sent_to_fulfillment_are_applied(ready_order, order_body, ingest, warehouse):
    services.create_shipping_request(ready_order, warehouse)
    order_body["notes"] = "Leave at the door"

    order, created = ingest(order_body)

    order.refresh_from_db()
    assert not created and order.notes == "Leave at the door"
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT


def test_orders_in_switched_off_refuses(ingest, order_body, products, integration):
    integration.flow_orders_in = False
    integration.save(update_fields=["flow_orders_in"])

    with pytest.raises(WorkflowDisabled):
        ingest(order_body)

    assert not Order.objects.exists()
    assert not OutboxEvent.objects.filter(object_type="order").exists()


def test_ingest_writes_outbox_events_for_the_channel(
    ingest, order_body, products, standard_method, integration
):
    order, _ = ingest(order_body)
    ingest(order_body)

    events = list(
        OutboxEvent.objects.filter(object_type="order").values_list("type", "integration_id", "object_id")
    )
    assert events == [
        ("order.created", integration.pk, str(order.pk)),
        ("order.updated", integration.pk, str(order.pk)),  # new → ready (the `ingest` fixture's make_ready)
        ("order.updated", integration.pk, str(order.pk)),
    ]
    assert OutboxEvent.objects.get(type="order.created").payload["status"] == OrderStatus.NEW


def test_rolled_back_ingest_leaves_no_outbox_row(ingest, order_body, products):
    # order_body's shipping method is unmapped here, so the ingest also raises an exception: it rolls back too
    with pytest.raises(RuntimeError), transaction.atomic():
        ingest(order_body)
        assert OutboxEvent.objects.filter(type="order.created").exists()
        raise RuntimeError("the request failed after the ingest")

    assert not Order.objects.exists()
    assert not OutboxEvent.objects.filter(object_type="order").exists()
    assert not SyncException.objects.exists()


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


def test_a_review_hold_survives_an_unmapped_sku_and_its_fix(ingest, order_body, products, standard_method):
    # Given an order held for review
    order, _ = ingest(order_body)
    services.hold(order, "review: high value")

    # When a re-push names an unknown SKU, then the SKU is fixed by a later push
    body = {**order_body, "lines": [{"sku": "NOPE", "quantity": 1, "unit_price": "1.00"}]}
    held, _ = ingest(body)
    assert held.hold_reason == "review: high value; unmapped SKU NOPE"
    fixed, _ = ingest(order_body)

    # Then the review hold is still there: only a person releases it
    assert fixed.status == OrderStatus.ON_HOLD
    assert fixed.hold_reason == "review: high value"
