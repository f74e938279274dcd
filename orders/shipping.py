"""
Shipping requests: (part of) an order routed to a location — one request per order and location, its stock
committed there, the order sent to fulfillment — and the fulfiller acknowledging it.
"""

from collections import defaultdict

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.sync_exceptions import ExceptionKind, resolve_exception
from integrations.choices import EventType
from integrations.webhooks import outbox
from inventory import services as inventory

from .choices import OrderStatus, ShippingRequestStatus
from .models import Order, ShippingRequest, ShippingRequestLine
from .state import OrderConflict, emit_order, locked, move


def create_shipping_request(order: Order, location, lines=None) -> ShippingRequest:
    """
    Route (part of) an order to a location: one request per order and location, stock committed there, the
    order sent to fulfillment. `lines` is [(order line, quantity)], default every line in full.
    """
    with transaction.atomic():
        order = locked(order)
        if order.status not in (OrderStatus.READY, OrderStatus.SENT_TO_FULFILLMENT):
            raise OrderConflict(f"Order {order} is {order.get_status_display().lower()}, not ready to ship.")
        if location.organization_id != order.organization_id or not location.ships or not location.active:
            raise ValidationError(f"{location} cannot ship this order.")
        # What other (not canceled or rejected) requests already cover is not routed twice: that would commit
        # it twice.
        routed = defaultdict(int)
        for rl in ShippingRequestLine.objects.filter(request__order=order).exclude(
            request__status__in=(ShippingRequestStatus.CANCELED, ShippingRequestStatus.REJECTED)
        ):
            routed[rl.order_line_id] += rl.quantity
        if lines is None:
            lines = [(line, line.quantity - routed[line.pk]) for line in order.lines.all()]
            lines = [(line, qty) for line, qty in lines if qty > 0]
        errors = {}
        for index, (line, qty) in enumerate(lines):
            routed[line.pk] += qty
            if routed[line.pk] > line.quantity:
                errors[f"lines.{index}.quantity"] = [f"Routes {routed[line.pk]} of {line.quantity} ordered."]
        if errors or not lines:
            raise ValidationError(errors or f"Order {order} has nothing left to route.")
        if any(line.product_id is None for line, _ in lines):
            raise OrderConflict(f"Order {order} has unmapped lines.")
        request = ShippingRequest.objects.create(
            organization_id=order.organization_id,
            order=order,
            location=location,
            fulfiller=location.managed_by,
            shipping_method=order.shipping_method,
            shipping_address=order.shipping_address,
            customer=order.customer,
        )
        ShippingRequestLine.objects.bulk_create(
            [
                ShippingRequestLine(
                    request=request, order_line=line, product_id=line.product_id, quantity=qty
                )
                for line, qty in lines
            ]
        )
        quantities = defaultdict(int)
        for line, qty in lines:
            quantities[line.product_id] += qty
        inventory.commit_stock(location.pk, quantities)
        if order.status == OrderStatus.READY:
            move(order, OrderStatus.SENT_TO_FULFILLMENT)
        outbox.emit(
            order.organization_id,
            EventType.SHIPPING_REQUEST_CREATED,
            "shipping_request",
            request.pk,
            {
                "id": str(request.pk),
                "order": str(order.pk),
                "location": str(location.pk),
                "status": request.status,
            },
            integration=location.managed_by,
        )
        emit_order(order, EventType.ORDER_UPDATED)
    return request


def acknowledge(request: ShippingRequest) -> ShippingRequest:
    with transaction.atomic():
        request = ShippingRequest.objects.select_for_update().get(pk=request.pk)
        if request.status == ShippingRequestStatus.ACKNOWLEDGED:
            return request
        if request.status != ShippingRequestStatus.PENDING:
            raise OrderConflict(f"The shipping request is {request.get_status_display().lower()}.")
        request.status, request.acknowledged_at = ShippingRequestStatus.ACKNOWLEDGED, timezone.now()
        request.save(update_fields=["status", "acknowledged_at", "updated_at"])
        # Late, but here: the exceptions sweep's "not acknowledged in time" clears now, not at its next run.
        resolve_exception(
            request.organization_id,
            ExceptionKind.UNACKNOWLEDGED_REQUEST,
            integration=request.fulfiller,
            entity_type="shipping_request",
            entity_id=request.pk,
        )
    return request
