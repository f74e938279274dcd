"""
The order lifecycle as a hypothesis state machine, through the real services: ingest (and re-sent
external ids, changed or not), hold and release, routing by the routing engine, acknowledgement, partial
and full fulfillments (and their retries), over-shipments, cancellation — in any order hypothesis finds.

After every step: an order's status moved only along ORDER_TRANSITIONS; nothing was shipped beyond what
was ordered or routed; an external id is one order; every stock level's committed units are exactly the
open (unshipped, uncancelled) request lines at that location, and routing never committed more than on hand
less the buffer; a canceled order holds no commitment; each step emitted exactly the events of its change.
A forbidden step raises the service's error and changes nothing.

Each run of the machine is one savepoint, rolled back at its end (PostgreSQL, as in production).
"""

from collections import Counter, defaultdict

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from automations.engine_settings import engine_settings
from automations.engines import routing
from integrations.models import OutboxEvent
from inventory.models import InventoryLevel
from orders import services
from orders.choices import ORDER_TRANSITIONS, OrderStatus, ShippingRequestStatus
from orders.models import Fulfillment, Order, OrderLine, ShippingRequest, ShippingRequestLine

SKUS = ["MUG", "TSHIRT-S", "TSHIRT-M"]
UNMAPPED = "GHOST"  # no product: the order is held until it is mapped (or the line goes away)
BUFFER = 1  # units the organization keeps back at every location
OPEN = (
    ShippingRequestStatus.PENDING,
    ShippingRequestStatus.ACKNOWLEDGED,
    ShippingRequestStatus.PARTIALLY_FULFILLED,
)
LINES = st.lists(
    st.tuples(st.sampled_from([*SKUS, UNMAPPED]), st.integers(1, 4)),
    min_size=1,
    max_size=3,
    unique_by=lambda line: line[0],
).filter(lambda lines: any(sku != UNMAPPED for sku, _ in lines) or len(lines) == 1)


def reachable(status) -> set:
    """Every status `status` can reach through ORDER_TRANSITIONS (itself included)."""
    seen, todo = {status}, [status]
    while todo:
        for nxt in ORDER_TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def body(external_id, lines):
    return {
        "external_id": external_id,
        "number": f"#{external_id}",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "country": "US"},
        "lines": [{"sku": sku, "quantity": qty, "unit_price": "10.00"} for sku, qty in lines],
    }


def snapshot(org):
    """Everything a refused step must leave as it was."""
    return (
        list(
            Order.objects.filter(organization=org).order_by("pk").values_list("pk", "status", "hold_reason")
        ),
        list(OrderLine.objects.filter(order__organization=org).order_by("pk").values_list("pk", "quantity")),
        list(ShippingRequest.objects.filter(organization=org).order_by("pk").values_list("pk", "status")),
        list(
            ShippingRequestLine.objects.filter(request__organization=org)
            .order_by("pk")
            .values_list("pk", "quantity", "fulfilled_quantity")
        ),
        list(InventoryLevel.objects.order_by("pk").values_list("pk", "on_hand", "committed")),
        Fulfillment.objects.filter(organization=org).count(),
        OutboxEvent.objects.filter(organization=org).count(),
    )


class OrderLifecycle(RuleBasedStateMachine):
    """Set up per test by `test_order_lifecycle` (the fixtures' objects are class attributes)."""

    org = integration = warehouse_integration = locations = products = None

    external_ids = Bundle("external_ids")

    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.statuses: dict[int, str] = {}
        self.sent: set[str] = set()
        self.next_id = 0
        self.next_fulfillment = 0
        self.last_event = OutboxEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers -------------------------------------------------------------------------------------

    def order(self, external_id) -> Order:
        return Order.objects.get(source=self.integration, external_id=external_id)

    def new_events(self) -> Counter:
        events = list(
            OutboxEvent.objects.filter(pk__gt=self.last_event).order_by("pk").values_list("pk", "type")
        )
        if events:
            self.last_event = events[-1][0]
        return Counter(t for _, t in events)

    def refused(self, call, error=services.OrderConflict):
        event(f"refused: {call.__code__.co_names[-1]}")
        before = snapshot(self.org)
        with pytest.raises(error):
            call()
        assert snapshot(self.org) == before, "a refused step changed something"
        assert not self.new_events()

    def open_requests(self, external_id):
        return list(
            ShippingRequest.objects.filter(order=self.order(external_id), status__in=OPEN).order_by("pk")
        )

    # --- rules ---------------------------------------------------------------------------------------

    @initialize()
    def stock(self):
        for location, on_hand in zip(self.locations, (6, 3), strict=True):
            for product in self.products.values():
                InventoryLevel.objects.update_or_create(
                    product=product, location=location, defaults={"on_hand": on_hand, "committed": 0}
                )
        self.new_events()

    @rule(target=external_ids, lines=LINES)
    def ingest_new(self, lines):
        self.next_id += 1
        external_id = f"E{self.next_id}"
        order, created = services.ingest_order(self.integration, body(external_id, lines))
        assert created
        self.sent.add(external_id)
        unmapped = any(sku == UNMAPPED for sku, _ in lines)
        assert order.status == (OrderStatus.ON_HOLD if unmapped else OrderStatus.READY)
        assert self.new_events() == Counter({"order.created": 1})
        self.statuses[order.pk] = order.status
        return external_id

    @rule(external_id=external_ids, lines=st.one_of(st.none(), LINES))
    def resend(self, external_id, lines):
        """The channel sends the order again: the same body (a retry), or changed lines."""
        order = self.order(external_id)
        current = [(line.external_sku, line.quantity) for line in order.lines.order_by("line_number")]
        lines = current if lines is None else lines
        if lines != current and order.status not in services.EDITABLE:
            self.refused(lambda: services.ingest_order(self.integration, body(external_id, lines)))
            return
        again, created = services.ingest_order(self.integration, body(external_id, lines))
        assert not created and again.pk == order.pk
        assert self.new_events() == Counter({"order.updated": 1})

    @rule(external_id=external_ids)
    def hold(self, external_id):
        order = self.order(external_id)
        if order.status in (OrderStatus.READY, OrderStatus.ON_HOLD) and not self.open_requests(external_id):
            services.hold(order, "review")
            assert self.order(external_id).status == OrderStatus.ON_HOLD
            assert self.new_events() == Counter({"order.updated": 1})
        else:
            self.refused(lambda: services.hold(order, "review"))

    @rule(external_id=external_ids)
    def release(self, external_id):
        order = self.order(external_id)
        mapped = not order.lines.filter(product__isnull=True).exists()
        if order.status == OrderStatus.ON_HOLD and mapped:
            services.release(order)
            assert self.order(external_id).status == OrderStatus.READY
            assert self.new_events() == Counter({"order.updated": 1})
        else:
            self.refused(lambda: services.release(order))

    @rule(external_id=external_ids)
    def route(self, external_id):
        order = Order.objects.select_related("source", "routing_location", "shipping_method").get(
            pk=self.order(external_id).pk
        )
        was_ready = order.status == OrderStatus.READY  # else maybe held as unroutable: a retry
        result = routing.route(order, engine_settings(self.org))
        events = self.new_events()
        status = self.order(external_id).status
        event(f"route: {'routed' if result.routed else 'held' if result.held else 'not routed'}")
        if result.routed:
            # A retry releases the order first (one more order.updated), then sends it like a ready one.
            assert status == OrderStatus.SENT_TO_FULFILLMENT
            n = len(result.requests)
            assert events == Counter({"shipping_request.created": n, "order.updated": n + (not was_ready)})
        elif result.held:
            assert status == OrderStatus.ON_HOLD
            assert set(events) <= {"order.updated"} and events["order.updated"] <= 1
        else:
            assert not events

    @rule(external_id=external_ids)
    def send_unready(self, external_id):
        """A shipping request for an order that is not ready to ship (held, shipped, canceled) is refused."""
        order = self.order(external_id)
        if order.status not in (OrderStatus.READY, OrderStatus.SENT_TO_FULFILLMENT):
            self.refused(lambda: services.create_shipping_request(order, self.locations[0]))

    @rule(external_id=external_ids, data=st.data())
    def acknowledge(self, external_id, data):
        requests = list(ShippingRequest.objects.filter(order=self.order(external_id)).order_by("pk"))
        if not requests:
            return
        request = data.draw(st.sampled_from(requests))
        if request.status in (ShippingRequestStatus.PENDING, ShippingRequestStatus.ACKNOWLEDGED):
            services.acknowledge(request)
            request.refresh_from_db()
            assert request.status == ShippingRequestStatus.ACKNOWLEDGED
            assert not self.new_events()
        else:
            self.refused(lambda: services.acknowledge(request))

    @rule(external_id=external_ids, data=st.data(), repeat=st.booleans())
    def fulfill(self, external_id, data, repeat):
        """Ship part or all of what a request has left; with `repeat`, the 3PL sends it a second time."""
        requests = self.open_requests(external_id)
        if not requests:
            return
        request = data.draw(st.sampled_from(requests))
        left = {
            rl.product_id: rl.quantity - rl.fulfilled_quantity
            for rl in request.lines.all()
            if rl.quantity > rl.fulfilled_quantity
        }
        chosen = data.draw(st.lists(st.sampled_from(sorted(left)), min_size=1, unique=True))
        lines = [(pid, data.draw(st.integers(1, left[pid]))) for pid in chosen]
        self.next_fulfillment += 1
        payload = {"external_id": f"F{self.next_fulfillment}", "lines": lines}
        fulfillment, created = services.create_fulfillment(
            request, payload, integration=self.warehouse_integration
        )
        assert created
        assert self.new_events() == Counter({"fulfillment.created": 1, "order.updated": 1})
        event(f"fulfill: order {self.order(external_id).status}")
        if repeat:  # a retry of the same shipment: the first one answered, nothing recorded twice
            before = snapshot(self.org)
            again, created = services.create_fulfillment(
                request, payload, integration=self.warehouse_integration
            )
            assert (again.pk, created) == (fulfillment.pk, False)
            assert snapshot(self.org) == before and not self.new_events()

    @rule(external_id=external_ids, data=st.data())
    def overship(self, external_id, data):
        requests = list(ShippingRequest.objects.filter(order=self.order(external_id)).order_by("pk"))
        if not requests:
            return
        request = data.draw(st.sampled_from(requests))
        rl = data.draw(st.sampled_from(list(request.lines.all())))
        too_many = rl.quantity - rl.fulfilled_quantity + data.draw(st.integers(1, 3))
        error = ValidationError if request.status in OPEN else services.OrderConflict
        self.refused(
            lambda: services.create_fulfillment(
                request, {"lines": [(rl.product_id, too_many)]}, integration=self.warehouse_integration
            ),
            error,
        )

    @rule(external_id=external_ids)
    def cancel(self, external_id):
        order = self.order(external_id)
        shipped = Fulfillment.objects.filter(order=order).exists()
        if order.status == OrderStatus.CANCELED:
            services.cancel_order(order)
            assert not self.new_events()
        elif shipped or order.status in (OrderStatus.PARTIALLY_FULFILLED, OrderStatus.FULFILLED):
            self.refused(lambda: services.cancel_order(order))
        else:
            open_requests = len(self.open_requests(external_id))
            services.cancel_order(order)
            assert self.order(external_id).status == OrderStatus.CANCELED
            expected = Counter({"order.canceled": 1})
            if open_requests:
                expected["shipping_request.canceled"] = open_requests
            assert self.new_events() == expected

    # --- invariants ----------------------------------------------------------------------------------

    @invariant()
    def statuses_follow_the_state_machine(self):
        for pk, status in Order.objects.filter(organization=self.org).values_list("pk", "status"):
            previous = self.statuses.get(pk, status)
            assert status in reachable(OrderStatus(previous)), f"{previous} → {status}"
            self.statuses[pk] = status

    @invariant()
    def one_order_per_external_id(self):
        orders = Order.objects.filter(source=self.integration)
        assert orders.count() == len(self.sent)
        assert set(orders.values_list("external_id", flat=True)) == self.sent

    @invariant()
    def nothing_ships_beyond_what_was_ordered(self):
        routed, shipped = defaultdict(int), defaultdict(int)
        for rl in ShippingRequestLine.objects.filter(request__organization=self.org).exclude(
            request__status=ShippingRequestStatus.CANCELED
        ):
            routed[rl.order_line_id] += rl.quantity
            shipped[rl.order_line_id] += rl.fulfilled_quantity
            assert rl.fulfilled_quantity <= rl.quantity
        for line in OrderLine.objects.filter(order__organization=self.org):
            assert shipped[line.pk] <= routed[line.pk] <= line.quantity
            shipped_by_fulfillments = (
                line.request_lines.aggregate(n=Sum("fulfillment_lines__quantity"))["n"] or 0
            )
            assert shipped_by_fulfillments == sum(rl.fulfilled_quantity for rl in line.request_lines.all())

    @invariant()
    def committed_is_what_open_requests_owe(self):
        owed = defaultdict(int)
        for rl in ShippingRequestLine.objects.filter(
            request__organization=self.org, request__status__in=OPEN
        ):
            owed[(rl.product_id, rl.request.location_id)] += rl.quantity - rl.fulfilled_quantity
        for level in InventoryLevel.objects.filter(location__in=self.locations):
            assert level.committed == owed[(level.product_id, level.location_id)], level
            assert level.on_hand >= 0 and level.committed >= 0
            # Routing keeps the buffer back; shipping takes units off on hand and committed alike.
            assert level.committed == 0 or level.committed <= level.on_hand - BUFFER, level

    @invariant()
    def status_matches_the_shipments(self):
        for order in Order.objects.filter(organization=self.org).prefetch_related("lines"):
            requests = ShippingRequest.objects.filter(order=order)
            if order.status == OrderStatus.CANCELED:
                assert not requests.filter(status__in=OPEN).exists()
            ordered = sum(line.quantity for line in order.lines.all())
            shipped = (
                ShippingRequestLine.objects.filter(request__order=order)
                .exclude(request__status=ShippingRequestStatus.CANCELED)
                .aggregate(n=Sum("fulfilled_quantity"))["n"]
                or 0
            )
            if order.status == OrderStatus.FULFILLED:
                assert shipped == ordered
            elif order.status == OrderStatus.PARTIALLY_FULFILLED:
                assert 0 < shipped < ordered
            elif order.status == OrderStatus.SENT_TO_FULFILLMENT:
                assert shipped == 0 and requests.filter(status__in=OPEN).exists()
            else:
                assert shipped == 0


@pytest.mark.django_db
def test_order_lifecycle(
    org, integration, warehouse_integration, warehouse, west, products, routing_settings, buffer
):
    buffer(BUFFER)
    OrderLifecycle.org, OrderLifecycle.integration = org, integration
    OrderLifecycle.warehouse_integration = warehouse_integration
    OrderLifecycle.locations, OrderLifecycle.products = [warehouse, west], products

    run_state_machine_as_test(
        OrderLifecycle,
        settings=settings(
            max_examples=25, stateful_step_count=20, derandomize=True, database=None, deadline=None
        ),
    )
