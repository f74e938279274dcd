"""
Corrections of a recorded fulfillment (issue 16, item 5): its carrier and tracking changed, or the shipment
voided — its stock put back at the location, its shipping request and order back to what still stands
shipped. Both refuse a canceled fulfillment (409) and change nothing then; each records its event.
"""

from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from integrations.choices import EventType
from inventory import services as inventory

from .choices import FulfillmentStatus, ShippingRequestStatus
from .fulfillments import emit_fulfillment, follow_requests
from .models import Fulfillment, Order, ShippingRequest, ShippingRequestLine
from .state import OrderConflict, locked

TRACKING_FIELDS = ("carrier", "tracking_number", "tracking_url")


def update_fulfillment(fulfillment: Fulfillment, changes: dict) -> Fulfillment:
    """
    Set the carrier and tracking fields in `changes` (no other field may be named). `fulfillment.updated`,
    with the names of the fields that changed, when one did; the same values again record nothing.
    """
    if unknown := set(changes) - set(TRACKING_FIELDS):
        raise ValueError(
            f"Only {', '.join(TRACKING_FIELDS)} can be corrected, not {', '.join(sorted(unknown))}."
        )
    with transaction.atomic():
        fulfillment = (
            Fulfillment.objects.select_for_update(of=("self",))
            .select_related("order__source")
            .get(pk=fulfillment.pk)
        )
        if fulfillment.status == FulfillmentStatus.CANCELED:
            raise OrderConflict(f"Fulfillment {fulfillment} is canceled; it can no longer be changed.")
        changed = [
            name
            for name in TRACKING_FIELDS
            if name in changes and getattr(fulfillment, name) != changes[name]
        ]
        if changed:
            for name in changed:
                setattr(fulfillment, name, changes[name])
            fulfillment.save(update_fields=[*changed, "updated_at"])
            emit_fulfillment(fulfillment, EventType.FULFILLMENT_UPDATED, fulfillment.order, changes=changed)
    return fulfillment


def cancel_fulfillment(fulfillment: Fulfillment) -> Fulfillment:
    """
    Void a shipment: its units back on hand and reserved again for its shipping request, the request's lines
    owing them again, the request's and the order's status recomputed. Canceling it again is refused (409),
    so a retry never puts stock back twice: the status is checked under the fulfillment's row lock.
    """
    with transaction.atomic():
        # The lock order of create_fulfillment (order, request, then the rest), so the two never deadlock.
        order = locked(Order(pk=fulfillment.order_id))
        request = ShippingRequest.objects.select_for_update(of=("self",)).get(
            pk=fulfillment.shipping_request_id
        )
        fulfillment = Fulfillment.objects.select_for_update().get(pk=fulfillment.pk)
        if fulfillment.status == FulfillmentStatus.CANCELED:
            raise OrderConflict(f"Fulfillment {fulfillment} is already canceled.")
        if request.status not in (ShippingRequestStatus.PARTIALLY_FULFILLED, ShippingRequestStatus.FULFILLED):
            raise OrderConflict(f"Its shipping request is {request.get_status_display().lower()}.")
        request_lines = {rl.pk: rl for rl in request.lines.select_for_update().order_by("pk")}
        returned = defaultdict(int)
        for line in fulfillment.lines.order_by("pk"):
            request_lines[line.request_line_id].fulfilled_quantity -= line.quantity
            returned[line.product_id] += line.quantity
        ShippingRequestLine.objects.bulk_update(list(request_lines.values()), ["fulfilled_quantity"])
        inventory.unship_stock(request.location_id, returned)
        request.status = _request_status(request, request_lines.values())
        request.save(update_fields=["status", "updated_at"])
        fulfillment.status, fulfillment.canceled_at = FulfillmentStatus.CANCELED, timezone.now()
        fulfillment.save(update_fields=["status", "canceled_at", "updated_at"])
        follow_requests(order)
        emit_fulfillment(fulfillment, EventType.FULFILLMENT_CANCELED, order)
    return fulfillment


def _request_status(request, lines) -> str:
    """What a request's lines say it is: fulfilled, partially, or back to acknowledged (or pending)."""
    lines = list(lines)
    if all(rl.fulfilled_quantity >= rl.quantity for rl in lines):
        return ShippingRequestStatus.FULFILLED
    if any(rl.fulfilled_quantity for rl in lines):
        return ShippingRequestStatus.PARTIALLY_FULFILLED
    return ShippingRequestStatus.ACKNOWLEDGED if request.acknowledged_at else ShippingRequestStatus.PENDING
