"""The routing engine after a first try: unroutable orders held with their exception and retried when stock
moves or their retry is due, what routing leaves alone, and the sweep."""

from datetime import timedelta

import pytest
from django.utils import timezone

from automations.choices import ExceptionStatus
from automations.engine_settings import engine_settings
from automations.engines import routing
from automations.models import EngineStatus, SyncException
from inventory import allocation
from inventory.models import InventoryLevel, Product
from orders import services as order_services
from orders.choices import OrderStatus
from orders.models import Order, ShippingRequest
from orders.services import UNROUTABLE_REASON
from tests.automations.routing_helpers import committed, routed_to, unroutable_exception

pytestmark = pytest.mark.django_db


# --- unroutable orders and their retries ----------------------------------------------------------------


def test_unroutable_order_is_held_with_one_exception(ready_order, products, warehouse, west, shelve):
    shelve(warehouse, products["MUG"], 1)
    order = ready_order(("MUG", 3), ("TSHIRT-S", 1))

    counts = routing.route_order_by_id(order.pk)

    order.refresh_from_db()
    assert counts == {"unroutable": 1}
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, UNROUTABLE_REASON)
    exception = unroutable_exception(order)
    assert (exception.status, exception.occurrences, exception.integration) == (
        ExceptionStatus.OPEN,
        1,
        order.source,
    )
    assert "MUG (3 ordered, 1 available)" in exception.message
    assert "TSHIRT-S (1 ordered, 0 available)" in exception.message
    assert "East, West" in exception.message


def test_failed_retries_count_on_the_same_exception(ready_order, products, warehouse, shelve):
    order = ready_order(("MUG", 1))
    routing.route_order_by_id(order.pk)

    routing.run_now(order.organization)
    routing.retry_for_products(order.organization_id, [products["MUG"].pk])

    exception = unroutable_exception(order)  # .get(): still exactly one
    assert exception.occurrences == 3
    order.refresh_from_db()
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, UNROUTABLE_REASON)


def test_stock_arriving_routes_the_order_and_resolves_its_exception(ready_order, products, warehouse, shelve):
    order = ready_order(("MUG", 2))
    routing.route_order_by_id(order.pk)

    shelve(warehouse, products["MUG"], 2)
    counts = routing.retry_for_products(order.organization_id, [products["MUG"].pk])

    order.refresh_from_db()
    assert counts == {"retried_routed": 1}
    assert (order.status, order.hold_reason) == (OrderStatus.SENT_TO_FULFILLMENT, "")
    assert routed_to(order) == {"East": {"MUG": 2}}
    exception = unroutable_exception(order)
    assert (exception.status, exception.resolved_at is not None) == (ExceptionStatus.RESOLVED, True)


def test_retry_for_other_products_leaves_the_order_alone(ready_order, products, warehouse, shelve):
    order = ready_order(("MUG", 2))
    routing.route_order_by_id(order.pk)
    shelve(warehouse, products["MUG"], 2)

    counts = routing.retry_for_products(order.organization_id, [products["TSHIRT-M"].pk])

    order.refresh_from_db()
    assert counts == {}
    assert order.status == OrderStatus.ON_HOLD


def test_retry_takes_a_queryset_of_products_and_records_nothing_when_nothing_waits(
    ready_order, products, warehouse, shelve, org
):
    assert routing.retry_for_products(org.pk, Product.objects.filter(organization=org)) == {}
    assert not EngineStatus.objects.filter(engine="routing").exists()

    order = ready_order(("MUG", 1))
    routing.route_order_by_id(order.pk)
    shelve(warehouse, products["MUG"], 1)
    counts = routing.retry_for_products(org.pk, Product.objects.filter(organization=org).values("pk"))

    assert counts == {"retried_routed": 1}


def test_a_review_hold_beside_the_unroutable_one_is_kept(ready_order, products, warehouse, shelve):
    order = ready_order(("MUG", 2))
    routing.route_order_by_id(order.pk)
    order_services.hold(order, "review", add=True)
    shelve(warehouse, products["MUG"], 2)

    routing.retry_for_products(order.organization_id, [products["MUG"].pk])
    routing.run_now(order.organization)

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert order.hold_reason == f"{UNROUTABLE_REASON}; review"
    assert not ShippingRequest.objects.filter(order=order).exists()


def test_the_sweep_retries_only_when_the_retry_is_due(
    ready_order, routing_settings, products, warehouse, shelve
):
    order = ready_order(("MUG", 1))
    routing.route_order_by_id(order.pk)

    routing.sweep(order.organization)
    assert unroutable_exception(order).occurrences == 1  # tried a moment ago: not due

    due = timezone.now() - timedelta(minutes=routing_settings.unroutable_retry_minutes + 1)
    SyncException.objects.filter(entity_id=str(order.pk)).update(last_seen=due)
    routing.sweep(order.organization)
    assert unroutable_exception(order).occurrences == 2

    SyncException.objects.filter(entity_id=str(order.pk)).update(last_seen=due)
    shelve(warehouse, products["MUG"], 1)
    counts = routing.sweep(order.organization)
    order.refresh_from_db()
    assert counts == {"retried_routed": 1}
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT


# --- what routing leaves alone --------------------------------------------------------------------------


def test_switched_off_routing_does_nothing(ready_order, routing_settings, products, warehouse, shelve):
    shelve(warehouse, products["MUG"], 5)
    order = ready_order(("MUG", 1))
    routing_settings.routing_enabled = False
    routing_settings.save()
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    assert routing.route_order_by_id(order.pk) == {"skipped": 1}
    assert routing.sweep() == {}
    assert routing.run_now() == {}
    assert routing.retry_for_products(order.organization_id, [products["MUG"].pk]) == {"skipped": 1}

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert not EngineStatus.objects.filter(engine="routing").exists()


def test_a_duplicate_message_is_harmless(ready_order, products, warehouse, shelve):
    shelve(warehouse, products["MUG"], 5)
    order = ready_order(("MUG", 1))

    first, second = routing.route_order_by_id(order.pk), routing.route_order_by_id(order.pk)

    assert (first, second) == ({"routed": 1}, {"unchanged": 1})
    assert ShippingRequest.objects.filter(order=order).count() == 1
    assert committed(warehouse, products["MUG"]) == 1


def test_missing_order(db):
    assert routing.route_order_by_id(987654) == {"missing": 1}


def test_orders_on_hold_for_mapping_are_never_routed(routing_settings, ingest, order_body, stock):
    order, _ = ingest({**order_body, "lines": [{"sku": "NOPE", "quantity": 1}]})
    assert order.status == OrderStatus.ON_HOLD

    assert routing.route_order_by_id(order.pk) == {"unchanged": 1}
    assert routing.run_now(order.organization) == {}


def test_an_order_with_an_unmapped_line_is_not_routed_even_if_ready(
    ready_order, routing_settings, products, stock
):
    order = ready_order(("MUG", 1))
    order.lines.update(product=None, sku="")

    result = routing.route(order, routing_settings)

    assert (result.routed, result.held) == (False, False)
    assert "unmapped" in result.reason
    order.refresh_from_db()
    assert order.status == OrderStatus.READY


# --- the sweep ------------------------------------------------------------------------------------------


def test_sweep_routes_ready_orders_whose_message_was_lost(ready_order, products, warehouse, shelve):
    shelve(warehouse, products["MUG"], 5)
    lost, fresh = ready_order(("MUG", 1)), ready_order(("MUG", 1))
    Order.objects.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(minutes=5))

    counts = routing.sweep()

    lost.refresh_from_db()
    fresh.refresh_from_db()
    assert counts == {"routed": 1}
    assert (lost.status, fresh.status) == (OrderStatus.SENT_TO_FULFILLMENT, OrderStatus.READY)
    assert routing.run_now() == {"routed": 1}  # no grace period: the fresh one too


def test_sweep_makes_new_orders_ready_while_the_hold_engine_is_off(
    integration, order_body, products, warehouse, shelve, routing_settings
):
    # given an order that arrived while the hold engine was on, which was then switched off
    shelve(warehouse, products["MUG"], 5)
    shelve(warehouse, products["TSHIRT-S"], 5)
    routing_settings.hold_enabled = True
    routing_settings.save()
    order, _ = order_services.ingest_order(integration, {**order_body, "shipping_method": ""})
    assert order.status == OrderStatus.NEW
    routing_settings.hold_enabled = False
    routing_settings.save()

    assert routing.sweep() == {}  # still within its grace period
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    counts = routing.sweep()

    order.refresh_from_db()
    assert counts == {"made_ready": 1, "routed": 1}
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT


def test_sweep_leaves_new_orders_to_the_hold_engine_when_it_is_on(integration, order_body, stock):
    order, _ = order_services.ingest_order(integration, {**order_body, "shipping_method": ""})
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(hours=1))

    assert routing.run_now() == {}
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW


def test_one_failing_order_does_not_stop_the_sweep(ready_order, products, warehouse, shelve, monkeypatch):
    shelve(warehouse, products["MUG"], 5)
    broken, fine = ready_order(("MUG", 1)), ready_order(("MUG", 1))
    real_route = routing.route

    def route(order, settings):
        if order.pk == broken.pk:
            raise RuntimeError("boom")
        return real_route(order, settings)

    monkeypatch.setattr(routing, "route", route)

    counts = routing.run_now()

    fine.refresh_from_db()
    assert counts == {"failed": 1, "routed": 1}
    assert fine.status == OrderStatus.SENT_TO_FULFILLMENT


def test_lines_changed_between_the_plan_and_the_commit_are_never_shipped_as_planned(
    ready_order, warehouse, shelve, products, monkeypatch
):
    # given: a ready order of 2 mugs, stock of both products, and a channel re-push that remaps its line to
    # a T-shirt while the routing engine is planning (after it read the lines, before it locked the order)
    shelve(warehouse, products["MUG"], 10)
    shelve(warehouse, products["TSHIRT-S"], 10)
    order = ready_order(("MUG", 2))
    planned = allocation.routable_stock

    def plan_then_remap(*args, **kwargs):
        stock = planned(*args, **kwargs)
        order.lines.update(product=products["TSHIRT-S"], sku="TSHIRT-S")
        return stock

    monkeypatch.setattr(allocation, "routable_stock", plan_then_remap)

    result = routing.route(Order.objects.get(pk=order.pk), engine_settings(order.organization_id))

    # then nothing is routed or committed on the stale plan (the re-push enqueued the order again)
    assert not result.routed and "changed" in result.reason
    assert not ShippingRequest.objects.filter(order=order).exists()
    assert set(InventoryLevel.objects.values_list("committed", flat=True)) == {0}
    assert Order.objects.get(pk=order.pk).status == OrderStatus.READY
