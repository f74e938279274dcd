"""A 3PL rejects a shipping request: the stock is released and the routing engine routes the order again
without that location, holds it as unroutable when nothing else can ship it, or asks a person (split)."""

import pytest
from django.db import connection

from automations import handlers
from automations.engines import routing
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import OutboxEvent
from orders import services as order_services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import ShippingRequest
from orders.services import UNROUTABLE_REASON
from tests.automations.routing_helpers import committed, routed_to, unroutable_exception

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued(monkeypatch):
    """The tasks the ORDER_READY handler publishes, as (task name, args), instead of the broker."""
    sent = []

    def record(task, **options):
        name = task if isinstance(task, str) else task.name
        sent.append((name.rsplit(".", 1)[-1], tuple(options.get("args", ()))))
        return True

    monkeypatch.setattr(handlers, "enqueue", record)
    return sent


@pytest.fixture
def reject(django_capture_on_commit_callbacks, enqueued):
    """`reject(request, reason)` as the API does it, its after-commit reactions run."""

    def run(request, reason="Damaged stock"):
        with django_capture_on_commit_callbacks(execute=True):
            return order_services.reject(request, reason)

    return run


def settled():
    """The setup as if committed: the test's transaction never commits, and a trigger already waiting for
    that commit (the order made ready at ingest) would swallow the same trigger fired again (once per commit)."""
    connection.run_on_commit.clear()


def request_at(order, location) -> ShippingRequest:
    return ShippingRequest.objects.get(order=order, location=location)


def test_a_rejected_order_is_routed_again_without_that_location(
    ready_order, products, warehouse, west, shelve, reject, enqueued
):
    # given a mug order routed to East (first by priority), West having mugs too
    mug = products["MUG"]
    shelve(warehouse, mug, 5)
    shelve(west, mug, 5)
    order = ready_order(("MUG", 2))
    routing.route_order_by_id(order.pk)
    assert committed(warehouse, mug) == 2
    settled()

    # when East's 3PL rejects it
    rejected = reject(request_at(order, warehouse), "Flooded aisle")

    # then East's commitment is gone, the order is ready and handed to the routing engine
    order.refresh_from_db()
    assert (rejected.status, rejected.rejection_reason) == (ShippingRequestStatus.REJECTED, "Flooded aisle")
    assert rejected.rejected_at is not None
    assert order.status == OrderStatus.READY
    assert committed(warehouse, mug) == 0
    assert enqueued == [("route_order_task", (order.pk,))]

    # and the engine routes it to West, never back to East
    assert routing.route_order_by_id(order.pk) == {"routed": 1}
    order.refresh_from_db()
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT
    assert request_at(order, west).status == ShippingRequestStatus.PENDING
    assert routed_to(order) == {"East": {"MUG": 2}, "West": {"MUG": 2}}  # East's, rejected, stays
    assert (committed(warehouse, mug), committed(west, mug)) == (0, 2)


def test_the_rule_chosen_location_is_not_used_once_it_rejected(
    ready_order, products, warehouse, west, shelve, reject
):
    # given a rule sent the order to West, which has stock, as does East
    mug = products["MUG"]
    shelve(warehouse, mug, 5)
    shelve(west, mug, 5)
    order = ready_order(("MUG", 1))
    order_services.set_routing_location(order, west)
    routing.route_order_by_id(order.pk)
    assert routed_to(order) == {"West": {"MUG": 1}}

    reject(request_at(order, west))
    routing.route_order_by_id(order.pk)

    assert request_at(order, warehouse).status == ShippingRequestStatus.PENDING
    assert (committed(warehouse, mug), committed(west, mug)) == (1, 0)


def test_with_no_other_location_the_order_is_held_unroutable_naming_the_rejection(
    ready_order, products, warehouse, west, shelve, reject
):
    # given only East has mugs
    mug = products["MUG"]
    shelve(warehouse, mug, 5)
    order = ready_order(("MUG", 2))
    routing.route_order_by_id(order.pk)

    reject(request_at(order, warehouse))
    counts = routing.route_order_by_id(order.pk)

    order.refresh_from_db()
    assert counts == {"unroutable": 1}
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, UNROUTABLE_REASON)
    assert "East rejected its shipping request" in unroutable_exception(order).message
    assert committed(warehouse, mug) == 0
    # and its stock moving at East retries it, still never at East
    shelve(warehouse, mug, 50)
    routing.retry_for_products(order.organization_id, [mug.pk])
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert ShippingRequest.objects.filter(order=order).count() == 1
    # until West has them
    shelve(west, mug, 2)
    routing.retry_for_products(order.organization_id, [mug.pk])
    order.refresh_from_db()
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT
    assert (committed(warehouse, mug), committed(west, mug)) == (0, 2)


def test_a_split_orders_rejected_part_is_given_to_a_person(
    ready_order, products, warehouse, west, shelve, reject, enqueued, routing_settings
):
    # given a mug order split one from East, one from West
    routing_settings.allow_split = True
    routing_settings.save(update_fields=["allow_split"])
    mug = products["MUG"]
    shelve(warehouse, mug, 1)
    shelve(west, mug, 1)
    order = ready_order(("MUG", 2))
    routing.route_order_by_id(order.pk)
    assert routed_to(order) == {"East": {"MUG": 1}, "West": {"MUG": 1}}
    settled()

    # when East rejects its part
    reject(request_at(order, warehouse), "No stock after all")

    # then East's unit is released, West's request stands, the order is not routed again
    order.refresh_from_db()
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT
    assert (committed(warehouse, mug), committed(west, mug)) == (0, 1)
    assert request_at(order, west).status == ShippingRequestStatus.PENDING
    assert enqueued == []
    # and a person is asked to route what East carried
    exception = SyncException.objects.get(
        kind=ExceptionKind.CONNECTOR_REPORTED, entity_type="order", entity_id=str(order.pk)
    )
    assert f"Order {order}" in exception.message and "East rejected" in exception.message
    assert exception.integration == warehouse.managed_by


def test_rejecting_a_rejected_request_is_a_conflict_that_changes_nothing(
    ready_order, products, warehouse, west, shelve, reject
):
    mug = products["MUG"]
    shelve(warehouse, mug, 5, committed=3)  # another order's commitment, which must stay
    order = ready_order(("MUG", 2))
    routing.route_order_by_id(order.pk)
    request = request_at(order, warehouse)
    reject(request, "First")
    events = OutboxEvent.objects.count()

    with pytest.raises(order_services.OrderConflict):
        reject(request, "Second")

    request.refresh_from_db()
    assert (request.status, request.rejection_reason) == (ShippingRequestStatus.REJECTED, "First")
    assert committed(warehouse, mug) == 3
    assert OutboxEvent.objects.count() == events


def test_the_rejection_is_recorded_for_the_3pl(ready_order, products, warehouse, shelve, reject):
    shelve(warehouse, products["MUG"], 5)
    order = ready_order(("MUG", 1))
    routing.route_order_by_id(order.pk)
    request = request_at(order, warehouse)

    reject(request, "Closed for inventory")

    event = OutboxEvent.objects.get(type="shipping_request.rejected")
    request.refresh_from_db()
    assert (event.integration, event.object_type, event.object_id) == (
        warehouse.managed_by,
        "shipping_request",
        str(request.pk),
    )
    assert event.payload == {
        "id": str(request.pk),
        "order": str(order.pk),
        "location": str(warehouse.pk),
        "status": "rejected",
        "reason": "Closed for inventory",
        "rejected_at": request.rejected_at.isoformat(),
    }
