"""Cancelling an order: its commitments released, its open shipping requests canceled; refused once anything shipped."""

from collections import defaultdict

from django.db import transaction

from integrations.choices import EventType
from integrations.webhooks import outbox
from inventory import services as inventory

from .choices import FulfillmentStatus, OrderStatus, ShippingRequestStatus
from .models import Fulfillment, Order, ShippingRequestLine
from .state import OPEN_REQUEST, OrderConflict, emit_order, locked, move


def cancel_order(order: Order, *, reason="") -> Order:
    """Cancel: commitments released, open shipping requests canceled. Refused once anything shipped."""
    with transaction.atomic():
        order = locked(order)
        if order.status == OrderStatus.CANCELED:
            return order
        shipped = Fulfillment.objects.filter(order=order).exclude(status=FulfillmentStatus.CANCELED)
        if shipped.exists() or order.status in (
            OrderStatus.PARTIALLY_FULFILLED,
            OrderStatus.FULFILLED,
        ):
            raise OrderConflict(f"Order {order} has shipped (in part); it can no longer be canceled.")
        requests = list(
            order.shipping_requests.select_for_update()
            .filter(status__in=OPEN_REQUEST)
            .select_related("location")
            .order_by("pk")
        )
        # Released in one pass in (product, location) order, the order routing locks levels in
        # (inventory/allocation.py): request by request would cross it and could deadlock a routing.
        owed = defaultdict(int)
        for rl in ShippingRequestLine.objects.filter(request__in=requests).select_related("request"):
            owed[(rl.product_id, rl.request.location_id)] += rl.quantity - rl.fulfilled_quantity
        inventory.release_levels(order.organization_id, owed)
        for request in requests:
            _close_request(request)
        move(order, OrderStatus.CANCELED)
        if reason:
            order.notes = (order.notes + "\n" if order.notes else "") + f"Canceled: {reason}"
            order.save(update_fields=["notes", "updated_at"])
        emit_order(order, EventType.ORDER_CANCELED)
    return order


def _close_request(request):
    """A canceled request (its stock already released): status and event."""
    request.status = ShippingRequestStatus.CANCELED
    request.save(update_fields=["status", "updated_at"])
    outbox.emit(
        request.organization_id,
        EventType.SHIPPING_REQUEST_CANCELED,
        "shipping_request",
        request.pk,
        {"id": str(request.pk), "order": str(request.order_id), "status": request.status},
        integration=request.fulfiller,
    )
