"""
Shipments and voids of one routed order in any order hypothesis finds (issue 16, item 5): after every step
the request's lines, the stock, the request's and the order's status are exactly what the shipments still
standing say, each step recorded exactly its events, and a refused step (voiding twice, shipping more than
is left) changed nothing.
"""

from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.models import OutboxEvent
from inventory.models import InventoryLevel
from orders import services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import Fulfillment, Order, ShippingRequest

ORDERED = {"TSHIRT-S": 2, "MUG": 1}  # the ready order #1001
ON_HAND = 10  # of each, at the warehouse (the `stock` fixture)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("ship"), st.sampled_from(sorted(ORDERED)), st.integers(1, 2)),
        st.tuples(st.just("void"), st.integers(0, 5)),
    ),
    min_size=1,
    max_size=10,
)


def snapshot(order):
    request = ShippingRequest.objects.get(order=order)
    return (
        Order.objects.get(pk=order.pk).status,
        request.status,
        sorted(request.lines.values_list("product__sku", "fulfilled_quantity")),
        sorted(InventoryLevel.objects.values_list("product__sku", "on_hand", "committed")),
        sorted(Fulfillment.objects.filter(order=order).values_list("pk", "status")),
        OutboxEvent.objects.count(),
    )


def expected(standing: Counter):
    """Order status, request status, fulfilled per SKU and (on hand, committed) per SKU for these shipments."""
    done = all(standing[sku] == qty for sku, qty in ORDERED.items())
    some = any(standing.values())
    order = (
        OrderStatus.FULFILLED if done else OrderStatus.PARTIALLY_FULFILLED if some else "sent_to_fulfillment"
    )
    request = "fulfilled" if done else "partially_fulfilled" if some else ShippingRequestStatus.PENDING
    stock = {sku: (ON_HAND - standing[sku], ORDERED[sku] - standing[sku]) for sku in ORDERED}
    return order, request, {sku: standing[sku] for sku in ORDERED}, stock


@pytest.mark.django_db
def test_shipments_and_voids_keep_request_stock_and_status_exact(
    ready_order, warehouse, warehouse_integration, products
):
    @settings(max_examples=40, derandomize=True, database=None, deadline=None)
    @given(steps=STEPS)
    def check(steps):
        with transaction.atomic():
            request = services.create_shipping_request(ready_order, warehouse)
            shipments = []  # (fulfillment, {sku: qty}, voided)
            last_event = OutboxEvent.objects.order_by("-pk").values_list("pk", flat=True).first()

            def new_events():
                nonlocal last_event
                types = list(
                    OutboxEvent.objects.filter(pk__gt=last_event).order_by("pk").values_list("pk", "type")
                )
                if types:
                    last_event = types[-1][0]
                return Counter(t for _, t in types)

            for step in steps:
                standing = Counter()
                for _, lines, voided in shipments:
                    if not voided:
                        standing.update(lines)
                before = snapshot(ready_order)
                if step[0] == "ship":
                    _, sku, qty = step
                    payload = {"external_id": f"P{len(shipments)}", "lines": [(products[sku].pk, qty)]}
                    if standing[sku] + qty > ORDERED[sku]:
                        fulfilled = before[1] == ShippingRequestStatus.FULFILLED
                        with pytest.raises(services.OrderConflict if fulfilled else ValidationError):
                            services.create_fulfillment(request, payload, integration=warehouse_integration)
                        assert snapshot(ready_order) == before
                        continue
                    fulfillment, _ = services.create_fulfillment(
                        request, payload, integration=warehouse_integration
                    )
                    shipments.append((fulfillment, {sku: qty}, False))
                    assert new_events() == Counter({"fulfillment.created": 1, "order.updated": 1})
                elif shipments:
                    index = step[1] % len(shipments)
                    fulfillment, lines, voided = shipments[index]
                    if voided:
                        with pytest.raises(services.OrderConflict):
                            services.cancel_fulfillment(fulfillment)
                        assert snapshot(ready_order) == before
                        continue
                    services.cancel_fulfillment(fulfillment)
                    shipments[index] = (fulfillment, lines, True)
                    assert new_events() == Counter({"fulfillment.canceled": 1, "order.updated": 1})
                standing = Counter()
                for _, lines, voided in shipments:
                    if not voided:
                        standing.update(lines)

                order_status, request_status, fulfilled, stock = expected(standing)
                now = snapshot(ready_order)
                assert (now[0], now[1]) == (order_status, request_status), (steps, standing)
                assert dict(now[2]) == fulfilled
                assert {
                    sku: (on_hand, committed) for sku, on_hand, committed in now[3] if sku in ORDERED
                } == stock
            transaction.set_rollback(True)

    check()
