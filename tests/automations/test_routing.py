"""The routing engine: cards, strategies, splits, buffers, unroutable orders and their retries."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import transaction
from django.utils import timezone

from automations.choices import ExceptionKind, ExceptionStatus, RoutingStrategy
from automations.engines import routing
from automations.models import EngineStatus, SyncException
from automations.services import engine_settings
from inventory import allocation
from inventory.models import InventoryLevel, Location, Product
from orders import services as order_services
from orders.choices import OrderStatus
from orders.models import Order, ShippingRequest
from orders.services import UNROUTABLE_REASON

pytestmark = pytest.mark.django_db


def routed_to(order) -> dict[str, dict[str, int]]:
    """{location name: {sku: quantity}} of the order's shipping requests."""
    result: dict[str, dict[str, int]] = {}
    for request in ShippingRequest.objects.filter(order=order).prefetch_related("lines__product"):
        for line in request.lines.all():
            result.setdefault(request.location.name, {})[line.product.sku] = line.quantity
    return result


def committed(location, product) -> int:
    return InventoryLevel.objects.get(location=location, product=product).committed


def unroutable_exception(order):
    return SyncException.objects.get(kind=ExceptionKind.UNROUTABLE_ORDER, entity_id=str(order.pk))


# --- the default card -----------------------------------------------------------------------------------


def test_ready_order_goes_to_the_first_location_by_priority(ready_order, products, warehouse, west, shelve):
    shelve(warehouse, products["MUG"], 5)
    shelve(west, products["MUG"], 5)
    order = ready_order(("MUG", 2))

    counts = routing.route_order_by_id(order.pk)

    order.refresh_from_db()
    assert counts == {"routed": 1}
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT
    assert routed_to(order) == {"East": {"MUG": 2}}
    assert (committed(warehouse, products["MUG"]), committed(west, products["MUG"])) == (2, 0)
    status = EngineStatus.objects.get(organization=order.organization, engine="routing")
    assert (status.last_outcome, status.last_counts) == ("ok", {"routed": 1})


def test_a_location_that_cannot_ship_every_line_is_passed_over(
    ready_order, products, warehouse, west, shelve
):
    # given East has mugs but too few T-shirts, West has both
    shelve(warehouse, products["MUG"], 5)
    shelve(warehouse, products["TSHIRT-S"], 1)
    shelve(west, products["MUG"], 5)
    shelve(west, products["TSHIRT-S"], 5)
    order = ready_order(("MUG", 1), ("TSHIRT-S", 2))

    routing.route_order_by_id(order.pk)

    # then one location ships it all, rather than a split starting at East
    assert routed_to(order) == {"West": {"MUG": 1, "TSHIRT-S": 2}}


def test_committed_stock_is_not_routed_twice(ready_order, products, warehouse, west, shelve):
    shelve(warehouse, products["MUG"], 5, committed=4)
    shelve(west, products["MUG"], 5)
    order = ready_order(("MUG", 2))

    routing.route_order_by_id(order.pk)

    assert routed_to(order) == {"West": {"MUG": 2}}


def test_inactive_and_non_shipping_locations_are_not_used(ready_order, products, warehouse, west, shelve):
    shelve(warehouse, products["MUG"], 5)
    shelve(west, products["MUG"], 5)
    Location.objects.filter(pk=warehouse.pk).update(active=False)
    closed = ready_order(("MUG", 1))
    routing.route_order_by_id(closed.pk)
    Location.objects.filter(pk=warehouse.pk).update(active=True, ships=False)
    not_shipping = ready_order(("MUG", 1))
    routing.route_order_by_id(not_shipping.pk)

    assert routed_to(closed) == routed_to(not_shipping) == {"West": {"MUG": 1}}


# --- cards ----------------------------------------------------------------------------------------------


def test_the_first_matching_card_decides_with_its_own_preference_order(
    ready_order, products, warehouse, west, shelve, card
):
    shelve(warehouse, products["MUG"], 10)
    shelve(west, products["MUG"], 10)
    card("Canada from East", [warehouse], [{"field": "country", "operator": "eq", "value": "CA"}], position=1)
    card("Switched off", [warehouse], [], position=2, active=False)
    card("Everything else West first", [west, warehouse], [], position=3)
    card("Never reached", [warehouse], [], position=4)
    canadian, american = ready_order(("MUG", 1), country="CA"), ready_order(("MUG", 1), country="US")

    routing.route_order_by_id(canadian.pk)
    routing.route_order_by_id(american.pk)

    assert routed_to(canadian) == {"East": {"MUG": 1}}
    assert routed_to(american) == {"West": {"MUG": 1}}


def test_a_card_with_any_match(ready_order, products, warehouse, west, shelve, card):
    shelve(warehouse, products["MUG"], 10)
    shelve(west, products["MUG"], 10)
    card(
        "Big or Canadian",
        [west],
        [
            {"field": "country", "operator": "eq", "value": "CA"},
            {"field": "total", "operator": "gt", "value": "500"},
        ],
        match="any",
    )
    big, small = ready_order(("MUG", 1), total=900), ready_order(("MUG", 1), total=10)

    routing.route_order_by_id(big.pk)
    routing.route_order_by_id(small.pk)

    assert routed_to(big) == {"West": {"MUG": 1}}
    assert routed_to(small) == {"East": {"MUG": 1}}  # no card matched: the default card


def test_a_card_without_locations_means_every_shipping_location_by_priority(
    ready_order, products, warehouse, west, shelve, card
):
    shelve(warehouse, products["MUG"], 1)
    shelve(west, products["MUG"], 10)
    card("Any location, no split", [], [])
    order = ready_order(("MUG", 3))

    routing.route_order_by_id(order.pk)

    assert routed_to(order) == {"West": {"MUG": 3}}


def test_listed_locations_that_cannot_ship_are_ignored(
    ready_order, products, warehouse, west, shelve, card, other_org
):
    # given a card listing a switched-off location and another organization's, both with stock
    elsewhere = Location.objects.create(organization=other_org, name="Foreign", priority=0)
    shelve(elsewhere, products["MUG"], 50)
    shelve(warehouse, products["MUG"], 50)
    Location.objects.filter(pk=warehouse.pk).update(active=False)
    shelve(west, products["MUG"], 1)
    card("Odd list", [elsewhere, warehouse, west], [])
    order = ready_order(("MUG", 2))

    routing.route_order_by_id(order.pk)

    # then neither is used (nor replaced by the default card's locations): West alone is too short
    order.refresh_from_db()
    assert routed_to(order) == {}
    assert order.status == OrderStatus.ON_HOLD
    assert "Foreign" not in unroutable_exception(order).message


def test_routing_location_is_tried_first_when_it_can_ship_it_all(
    ready_order, products, warehouse, west, shelve
):
    shelve(warehouse, products["MUG"], 10)
    shelve(west, products["MUG"], 2)
    chosen = order_services.set_routing_location(ready_order(("MUG", 2)), west)
    too_big = order_services.set_routing_location(ready_order(("MUG", 3)), west)

    routing.route_order_by_id(chosen.pk)
    routing.route_order_by_id(too_big.pk)

    assert routed_to(chosen) == {"West": {"MUG": 2}}
    assert routed_to(too_big) == {"East": {"MUG": 3}}  # West cannot ship it all: the cards decide


@pytest.mark.parametrize(
    ("strategy", "expected"), [(RoutingStrategy.PRIORITY, "East"), (RoutingStrategy.MOST_STOCK, "West")]
)
def test_strategy_priority_or_most_stock(
    strategy, expected, ready_order, routing_settings, products, warehouse, west, shelve
):
    routing_settings.routing_strategy = strategy
    routing_settings.save()
    shelve(warehouse, products["MUG"], 3)
    shelve(west, products["MUG"], 8)
    order = ready_order(("MUG", 2))

    routing.route_order_by_id(order.pk)

    assert routed_to(order) == {expected: {"MUG": 2}}


# --- splits ---------------------------------------------------------------------------------------------


def test_split_across_locations_when_allowed(ready_order, products, warehouse, west, shelve):
    shelve(warehouse, products["MUG"], 1)
    shelve(warehouse, products["TSHIRT-S"], 1)
    shelve(west, products["MUG"], 5)
    order = ready_order(("MUG", 3), ("TSHIRT-S", 1))

    counts = routing.route_order_by_id(order.pk)

    assert counts == {"routed": 1, "split": 1}
    assert routed_to(order) == {"East": {"MUG": 1, "TSHIRT-S": 1}, "West": {"MUG": 2}}
    assert (committed(warehouse, products["MUG"]), committed(west, products["MUG"])) == (1, 2)


def test_no_split_when_the_settings_forbid_it(
    ready_order, routing_settings, products, warehouse, west, shelve
):
    routing_settings.allow_split = False
    routing_settings.save()
    shelve(warehouse, products["MUG"], 1)
    shelve(west, products["TSHIRT-S"], 1)
    order = ready_order(("MUG", 1), ("TSHIRT-S", 1))

    counts = routing.route_order_by_id(order.pk)

    order.refresh_from_db()
    assert counts == {"unroutable": 1}
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, UNROUTABLE_REASON)
    assert "does not allow a split" in unroutable_exception(order).message


def test_a_card_splits_only_when_it_allows(ready_order, products, warehouse, west, shelve, card):
    # given the org allows splits but the matching card does not
    card("One box only", [warehouse, west], [], allow_split=False)
    shelve(warehouse, products["MUG"], 1)
    shelve(west, products["MUG"], 1)
    order = ready_order(("MUG", 2))

    routing.route_order_by_id(order.pk)

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert "MUG (2 ordered, 1 available) at any one of East, West" in unroutable_exception(order).message


def test_a_split_that_does_not_cover_everything_routes_nothing(
    ready_order, products, warehouse, west, shelve
):
    shelve(warehouse, products["MUG"], 2)
    shelve(west, products["MUG"], 2)
    order = ready_order(("MUG", 5))

    routing.route_order_by_id(order.pk)

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert not ShippingRequest.objects.filter(order=order).exists()
    assert committed(warehouse, products["MUG"]) == committed(west, products["MUG"]) == 0
    message = unroutable_exception(order).message
    assert "MUG (5 ordered, 4 available) across East, West" in message


# --- buffers --------------------------------------------------------------------------------------------


def test_buffers_are_kept_back_from_routing(
    ready_order, products, warehouse, west, shelve, buffer, integration, other_integration
):
    # given 5 mugs at East of which the org keeps 4, and a bigger buffer that is another channel's
    shelve(warehouse, products["MUG"], 5)
    shelve(west, products["MUG"], 5)
    buffer(4, location=warehouse)
    buffer(5, location=west, channel=other_integration)
    small, big = ready_order(("MUG", 1)), ready_order(("MUG", 2))

    routing.route_order_by_id(small.pk)
    routing.route_order_by_id(big.pk)

    assert routed_to(small) == {"East": {"MUG": 1}}
    assert routed_to(big) == {"West": {"MUG": 2}}  # East has 5 − 1 − 4 = 0 left for routing


def test_the_most_specific_buffer_wins(ready_order, products, warehouse, shelve, buffer, integration):
    shelve(warehouse, products["MUG"], 10)
    buffer(9)  # org-wide
    buffer(2, product=products["MUG"], channel=integration)
    order = ready_order(("MUG", 8))

    routing.route_order_by_id(order.pk)

    assert routed_to(order) == {"East": {"MUG": 8}}


def test_routable_never_goes_below_zero():
    assert allocation.routable(on_hand=5, committed=4, reserve=3) == 0
    assert allocation.routable(on_hand=10, committed=2, reserve=3) == 5


def test_lock_and_check_refuses_to_run_outside_a_transaction(products, warehouse, org, monkeypatch):
    # the test itself runs in a transaction: pretend it does not, as a caller that forgot atomic() would
    monkeypatch.setattr(allocation, "connection", SimpleNamespace(in_atomic_block=False))

    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
        allocation.lock_and_check(org.pk, None, {(products["MUG"].pk, warehouse.pk): 1})


def test_lock_and_check_names_what_no_longer_fits(products, warehouse, west, shelve, buffer, org):
    shelve(warehouse, products["MUG"], 5, committed=2)
    shelve(west, products["MUG"], 5)
    buffer(1, location=warehouse)
    mug = products["MUG"].pk

    with transaction.atomic():
        shortfalls = allocation.lock_and_check(org.pk, None, {(mug, warehouse.pk): 3, (mug, west.pk): 5})
        more = allocation.lock_and_check(org.pk, None, {(mug, warehouse.pk): 2})

    assert shortfalls == [allocation.Shortfall(mug, warehouse.pk, wanted=3, available=2)]
    assert more == []


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
