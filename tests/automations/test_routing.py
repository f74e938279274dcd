"""The routing engine's choices: the default card, cards, strategies, splits and buffers."""

from types import SimpleNamespace

import pytest
from django.db import transaction

from automations.choices import RoutingStrategy
from automations.engines import routing
from automations.models import EngineStatus
from inventory import allocation
from inventory.models import Location
from orders import services as order_services
from orders.choices import OrderStatus
from orders.models import ShippingRequest
from orders.services import UNROUTABLE_REASON
from tests.automations.routing_helpers import committed, routed_to, unroutable_exception

pytestmark = pytest.mark.django_db


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
