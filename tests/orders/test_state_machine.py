"""The order state machine (orders.services.move), holds and cancellation from every status."""

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import OutboxEvent
from orders import services
from orders.choices import ORDER_TRANSITIONS, OrderStatus
from orders.models import Order

S = OrderStatus

# Typed from docs/connectors/contract.md ("Orders": statuses; cancel → 409 once anything shipped) and
# docs/connectors/05-orders.md ("What happens next": held, released, routed, partially fulfilled /
# fulfilled) — not copied from choices.py, so that
# a change to ORDER_TRANSITIONS shows up here as a failing comparison.
EXPECTED = {
    S.NEW: {S.ON_HOLD, S.READY, S.CANCELED},
    S.ON_HOLD: {S.READY, S.CANCELED},
    S.READY: {S.ON_HOLD, S.SENT_TO_FULFILLMENT, S.CANCELED},
    # Back to on_hold only when its requests were canceled before anything shipped (to be routed again);
    # back to ready when its 3PL rejected its only request (issue 16: routed again without that location).
    S.SENT_TO_FULFILLMENT: {S.PARTIALLY_FULFILLED, S.FULFILLED, S.CANCELED, S.ON_HOLD, S.READY},
    # Back when a fulfillment is canceled (issue 16, corrections): to what still stands shipped.
    S.PARTIALLY_FULFILLED: {S.FULFILLED, S.SENT_TO_FULFILLMENT},
    S.FULFILLED: {S.PARTIALLY_FULFILLED, S.SENT_TO_FULFILLMENT},
    S.CANCELED: set(),
}
PAIRS = list(itertools.product(S, S))


@pytest.fixture
def make_order(org, integration):
    """`make_order(status)` → a bare order of the channel `integration`, put straight into that status."""
    counter = itertools.count(1)

    def make(status=S.NEW, **fields):
        return Order.objects.create(
            organization=org, source=integration, external_id=f"SM-{next(counter)}", status=status, **fields
        )

    return make


def test_transition_table_matches_the_documented_flow():
    assert {k: set(v) for k, v in ORDER_TRANSITIONS.items()} == EXPECTED
    assert set(ORDER_TRANSITIONS) == set(S)


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_move_allows_exactly_the_documented_pairs(make_order, source, target):
    order = make_order(source)
    before = Order.objects.get(pk=order.pk)

    if target in EXPECTED[source]:
        services.move(order, target)
        order.refresh_from_db()
        assert order.status == target
        assert (order.canceled_at is not None) == (target == S.CANCELED)
    else:
        with pytest.raises(services.OrderConflict):
            services.move(order, target)
        after = Order.objects.get(pk=order.pk)
        assert (after.status, after.updated_at, after.canceled_at) == (source, before.updated_at, None)


def test_hold_then_release_clears_the_hold(make_order, integration):
    order = make_order(S.READY)
    until = timezone.now() + timedelta(minutes=30)

    held = services.hold(order, "Fraud review", until=until)
    assert (held.status, held.hold_reason, held.hold_until) == (S.ON_HOLD, "Fraud review", until)
    event = OutboxEvent.objects.filter(type="order.updated", object_id=str(order.pk)).get()
    assert event.integration == integration
    assert event.payload["hold"]["reason"] == "Fraud review"

    services.release(order)
    order.refresh_from_db()
    assert (order.status, order.hold_reason, order.hold_until) == (S.READY, "", None)
    assert OutboxEvent.objects.filter(type="order.updated", object_id=str(order.pk)).count() == 2


def test_release_clears_a_timed_hold_without_reason(make_order):
    order = services.hold(make_order(S.READY), "", until=timezone.now() + timedelta(minutes=5))

    services.release(order)

    order.refresh_from_db()
    assert (order.status, order.hold_reason, order.hold_until) == (S.READY, "", None)


def test_hold_on_a_held_order_only_updates_the_reason(make_order):
    order = services.hold(make_order(S.NEW), "first")

    services.hold(order, "second")

    order.refresh_from_db()
    assert (order.status, order.hold_reason) == (S.ON_HOLD, "second")


@pytest.mark.parametrize("status", [S.READY, S.NEW, S.SENT_TO_FULFILLMENT, S.FULFILLED, S.CANCELED])
def test_release_refuses_an_order_not_on_hold(make_order, status):
    order = make_order(status)

    with pytest.raises(services.OrderConflict):
        services.release(order)

    order.refresh_from_db()
    assert order.status == status


def test_release_refused_while_a_sku_is_unmapped(ingest, order_body, products, standard_method):
    order_body["lines"][0]["sku"] = "NOPE-1"
    order, _ = ingest(order_body)
    assert order.status == S.ON_HOLD

    with pytest.raises(services.OrderConflict, match="NOPE-1"):
        services.release(order)

    order.refresh_from_db()
    assert order.status == S.ON_HOLD and "NOPE-1" in order.hold_reason


def test_release_refused_while_the_shipping_method_is_unmapped(ingest, order_body, products):
    order, _ = ingest(order_body)  # no standard_method fixture: "shopify-std" means nothing yet
    assert order.status == S.ON_HOLD

    with pytest.raises(services.OrderConflict, match="shopify-std"):
        services.release(order)


def test_hold_refused_while_shipping_requests_are_open(ingest, order_body, stock, standard_method, warehouse):
    # given an order routed to the warehouse (stock committed, the 3PL may be picking it)
    order, _ = ingest(order_body)
    request = services.create_shipping_request(order, warehouse)

    # when someone tries to hold it, then it is refused: a later fulfillment could not move a held order
    with pytest.raises(services.OrderConflict):
        services.hold(order, "review")

    order.refresh_from_db()
    assert order.status == S.SENT_TO_FULFILLMENT
    services.create_fulfillment(
        request, {"lines": [(line.product_id, line.quantity) for line in order.lines.all()]}
    )
    order.refresh_from_db()
    assert order.status == S.FULFILLED


CANCELABLE = [S.NEW, S.ON_HOLD, S.READY, S.SENT_TO_FULFILLMENT]


@pytest.mark.parametrize("status", CANCELABLE)
def test_cancel_from_an_unshipped_status(make_order, integration, status):
    order = make_order(status, hold_reason="x" if status == S.ON_HOLD else "")

    services.cancel_order(order, reason="customer asked")

    order.refresh_from_db()
    assert order.status == S.CANCELED and order.canceled_at is not None
    assert order.hold_reason == ""
    assert "customer asked" in order.notes
    event = OutboxEvent.objects.get(type="order.canceled", object_id=str(order.pk))
    assert event.integration == integration


@pytest.mark.parametrize("status", [S.PARTIALLY_FULFILLED, S.FULFILLED])
def test_cancel_refused_once_shipped(make_order, status):
    order = make_order(status)

    with pytest.raises(services.OrderConflict):
        services.cancel_order(order)

    order.refresh_from_db()
    assert (order.status, order.canceled_at) == (status, None)
    assert not OutboxEvent.objects.filter(type="order.canceled").exists()


def test_cancel_is_idempotent_on_a_canceled_order(make_order):
    order = services.cancel_order(make_order(S.READY))
    first_canceled_at = order.canceled_at

    again = services.cancel_order(order, reason="retry")

    again.refresh_from_db()
    assert (again.status, again.canceled_at) == (S.CANCELED, first_canceled_at)
    assert "retry" not in again.notes
    assert OutboxEvent.objects.filter(type="order.canceled").count() == 1


def test_a_timed_hold_added_to_a_mapping_hold_keeps_its_time(ingest, order_body, products, standard_method):
    # given: an order held by ingest for an unmapped SKU (no end time: it lifts itself once mapped)
    order, _ = ingest({**order_body, "lines": [{"sku": "NOPE", "quantity": 1}]})
    assert (order.status, order.hold_until) == (S.ON_HOLD, None)
    until = timezone.now() + timedelta(minutes=10)

    order = services.hold(order, "new-order hold (10 min)", until=until, add=True)

    assert order.hold_until == until  # not turned into a hold that is never released
    assert order.hold_reason == "unmapped SKU NOPE; new-order hold (10 min)"


def test_a_timed_hold_added_to_a_review_hold_stays_open_ended(ingest, order_body, products, standard_method):
    order, _ = ingest(order_body)
    services.hold(order, "review")

    order = services.hold(
        order, "new-order hold (10 min)", until=timezone.now() + timedelta(minutes=10), add=True
    )

    assert order.hold_until is None and order.hold_reason == "review; new-order hold (10 min)"
