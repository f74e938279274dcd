"""Ingest through orders.services (orders/ingest.py): upsert per channel, totals, mappings holding and
releasing the order with their exceptions, the outbox, and what may still change once it is routed."""

from decimal import Decimal

import pytest
from django.db import transaction

from automations.choices import ExceptionStatus
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import OutboxEvent
from integrations.workflows import WorkflowDisabled
from inventory.models import Product, SkuMapping
from orders import services
from orders.choices import OrderStatus
from orders.models import Order, ShippingMethodMapping


@pytest.fixture
def second_channel(org, channel_connector, make_integration):
    return make_integration(org, channel_connector, "Acme marketplace")


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
