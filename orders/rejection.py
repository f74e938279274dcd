"""
A 3PL refusing a shipping request: its stock released, the request rejected with the reason, and the order
routed again without that location (or, when other requests of it stand, given to a person).
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.sync_exceptions import ExceptionKind, raise_exception
from integrations.choices import EventType
from integrations.webhooks import outbox
from inventory import services as inventory

from .choices import REJECTION_REASON_MAX, OrderStatus, ShippingRequestStatus
from .models import ShippingRequest
from .state import OrderConflict, announce_ready, emit_order, locked, move

REJECTABLE = (ShippingRequestStatus.PENDING, ShippingRequestStatus.ACKNOWLEDGED)
# Requests that no longer carry anything of the order: what they held is to be routed again.
CLOSED_UNSHIPPED = (ShippingRequestStatus.CANCELED, ShippingRequestStatus.REJECTED)


def reject(request: ShippingRequest, reason: str) -> ShippingRequest:
    """
    Reject a pending or acknowledged request (409 from any other status): its commitment released,
    `shipping_request.rejected` to its 3PL; the order, with no other request standing, becomes ready again.
    """
    reason = (reason or "").strip()
    if not reason or len(reason) > REJECTION_REASON_MAX:
        raise ValidationError({"reason": [f"Give a reason of 1 to {REJECTION_REASON_MAX} characters."]})
    with transaction.atomic():
        # The order row first, then the request: the lock order cancellation and fulfillments use.
        order = locked(request.order)
        request = (
            ShippingRequest.objects.select_for_update(of=("self",))
            .select_related("location")
            .get(pk=request.pk)
        )
        if request.status not in REJECTABLE:
            raise OrderConflict(f"The shipping request is {request.get_status_display().lower()}.")
        owed = {}
        for rl in request.lines.all():
            key = (rl.product_id, request.location_id)
            owed[key] = owed.get(key, 0) + rl.quantity - rl.fulfilled_quantity
        inventory.release_levels(order.organization_id, owed)
        request.status = ShippingRequestStatus.REJECTED
        request.rejected_at, request.rejection_reason = timezone.now(), reason
        request.save(update_fields=["status", "rejected_at", "rejection_reason", "updated_at"])
        outbox.emit(
            request.organization_id,
            EventType.SHIPPING_REQUEST_REJECTED,
            "shipping_request",
            request.pk,
            rejected_payload(request),
            integration=request.fulfiller,
        )
        standing = order.shipping_requests.exclude(pk=request.pk).exclude(status__in=CLOSED_UNSHIPPED)
        if not standing.exists() and order.status == OrderStatus.SENT_TO_FULFILLMENT:
            # Nothing of it is routed any more: ready, and the routing engine (which skips every location
            # that rejected it) routes it again once this commits.
            move(order, OrderStatus.READY)
            emit_order(order, EventType.ORDER_UPDATED)
            announce_ready(order)
        else:
            # A split order whose other requests stand: the routing engine routes whole ready orders only, so
            # what this request carried is given to a person. Raised as the 3PL's report: an unroutable-order
            # exception would be resolved by the exceptions engine, the order not being held as unroutable.
            raise_exception(
                order.organization_id,
                ExceptionKind.CONNECTOR_REPORTED,
                f"Order {order}: {request.location} rejected its shipping request ({reason}). Its other "
                "shipping requests stand, so what that request carried must be routed by a person.",
                integration=request.fulfiller,
                entity_type="order",
                entity_id=order.pk,
                data={"shipping_request": str(request.pk), "location": request.location_id},
            )
    return request


def rejected_payload(request: ShippingRequest) -> dict:
    return {
        "id": str(request.pk),
        "order": str(request.order_id),
        "location": str(request.location_id),
        "status": request.status,
        "reason": request.rejection_reason,
        "rejected_at": request.rejected_at.isoformat(),
    }
