"""
Fulfillments: a shipment recorded against a shipping request (idempotent per integration and external id,
over-shipment refused per SKU), its stock shipped, and the order's status following its requests.
"""

from collections import defaultdict

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.choices import EventType
from integrations.webhooks import outbox
from inventory import services as inventory

from .choices import OrderStatus, ShippingRequestStatus
from .models import Fulfillment, FulfillmentLine, Order, ShippingRequest, ShippingRequestLine
from .state import OPEN_REQUEST, OrderConflict, emit_order, locked, move


def create_fulfillment(
    request: ShippingRequest, data: dict, *, integration=None, user=None
) -> tuple[Fulfillment, bool]:
    """
    Record a shipment against a shipping request; returns (fulfillment, created). The same external_id from
    the same integration returns the first one. Shipping more than was requested (per SKU) is refused.
    `data["lines"]` is [(product id, quantity)] already translated to hub products.
    """
    try:
        return _create_fulfillment(request, data, integration=integration, user=user)
    except IntegrityError:
        # The same external_id was written concurrently (for another request, since this one was locked):
        # answer as for a repeat, which finds it now and says so.
        return _create_fulfillment(request, data, integration=integration, user=user)


def _create_fulfillment(request, data, *, integration, user):
    external_id = data.get("external_id") or ""
    with transaction.atomic():
        # The order first, then the request: the lock order of cancel_order, so a cancel racing a
        # fulfillment waits instead of deadlocking.
        locked(Order(pk=ShippingRequest.objects.values_list("order_id", flat=True).get(pk=request.pk)))
        # Only the request's row: a bare FOR UPDATE with select_related would lock its location too, and every
        # routing commit that inserts a request for that location (its foreign key check takes KEY SHARE on
        # the location) would wait for this transaction while it waits for their stock rows: a deadlock.
        request = (
            ShippingRequest.objects.select_for_update(of=("self",))
            .select_related("order", "location")
            .get(pk=request.pk)
        )
        if external_id and integration is not None:
            existing = Fulfillment.objects.filter(integration=integration, external_id=external_id).first()
            if existing is not None:
                if existing.shipping_request_id != request.pk:
                    raise ValidationError({"external_id": ["Already used for another shipping request."]})
                return existing, False
        if request.status not in OPEN_REQUEST:
            raise OrderConflict(f"The shipping request is {request.get_status_display().lower()}.")
        request_lines = list(request.lines.select_for_update().order_by("pk"))
        wanted, first_index = defaultdict(int), {}
        for index, (product_id, qty) in enumerate(data["lines"]):
            wanted[product_id] += qty
            first_index.setdefault(product_id, index)  # errors name the caller's line, not the merged one
        allocations, errors = [], {}
        for product_id, qty in wanted.items():
            index = first_index[product_id]
            open_lines = [rl for rl in request_lines if rl.product_id == product_id]
            remaining = sum(rl.quantity - rl.fulfilled_quantity for rl in open_lines)
            if not open_lines:
                errors[f"lines.{index}.sku"] = ["Not in this shipping request."]
            elif qty > remaining:
                errors[f"lines.{index}.quantity"] = [f"Ships {qty} but only {remaining} remain to ship."]
            else:
                for rl in open_lines:
                    take = min(qty, rl.quantity - rl.fulfilled_quantity)
                    if take:
                        allocations.append((rl, take))
                        rl.fulfilled_quantity += take
                        qty -= take
        if errors:
            raise ValidationError(errors)
        fulfillment = Fulfillment.objects.create(
            organization_id=request.organization_id,
            order=request.order,
            shipping_request=request,
            integration=integration,
            external_id=external_id,
            carrier=data.get("carrier") or "",
            tracking_number=data.get("tracking_number") or "",
            tracking_url=data.get("tracking_url") or "",
            shipped_at=data.get("shipped_at") or timezone.now(),
            created_by=user,
        )
        FulfillmentLine.objects.bulk_create(
            [
                FulfillmentLine(
                    fulfillment=fulfillment, request_line=rl, product_id=rl.product_id, quantity=q
                )
                for rl, q in allocations
            ]
        )
        ShippingRequestLine.objects.bulk_update([rl for rl, _ in allocations], ["fulfilled_quantity"])
        inventory.ship_stock(request.location_id, wanted)
        done = all(rl.fulfilled_quantity >= rl.quantity for rl in request_lines)
        request.status = (
            ShippingRequestStatus.FULFILLED if done else ShippingRequestStatus.PARTIALLY_FULFILLED
        )
        request.save(update_fields=["status", "updated_at"])
        order = locked(request.order)
        follow_requests(order)
        emit_fulfillment(fulfillment, EventType.FULFILLMENT_CREATED, order)
    return fulfillment, True


def fulfillment_payload(fulfillment) -> dict:
    """What the outbox row of a fulfillment's event records (the webhook body is the API's rendering)."""

    def moment(value):
        return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value else None)

    return {
        "id": str(fulfillment.pk),
        "order": str(fulfillment.order_id),
        "shipping_request": str(fulfillment.shipping_request_id),
        "status": fulfillment.status,
        "carrier": fulfillment.carrier,
        "tracking_number": fulfillment.tracking_number,
        "tracking_url": fulfillment.tracking_url,
        "shipped_at": moment(fulfillment.shipped_at),
        "canceled_at": moment(fulfillment.canceled_at),
    }


def emit_fulfillment(fulfillment, event_type, order, **extra):
    """A fulfillment's event, recorded in the caller's transaction; told to the order's channel."""
    outbox.emit(
        order.organization_id,
        event_type,
        "fulfillment",
        fulfillment.pk,
        {**fulfillment_payload(fulfillment), **extra},
        integration=order.source,
    )


def follow_requests(order):
    """
    The order's status follows its requests (the caller holds its lock): fulfilled when every line shipped,
    partially while some did, sent to fulfillment when nothing stands shipped (its fulfillments canceled).
    """
    ordered = {line.pk: line.quantity for line in order.lines.all()}
    shipped = defaultdict(int)
    for rl in ShippingRequestLine.objects.filter(request__order=order).exclude(
        request__status=ShippingRequestStatus.CANCELED
    ):
        shipped[rl.order_line_id] += rl.fulfilled_quantity
    if all(shipped[pk] >= qty for pk, qty in ordered.items()):
        target = OrderStatus.FULFILLED
    elif any(shipped.values()):
        target = OrderStatus.PARTIALLY_FULFILLED
    else:
        target = OrderStatus.SENT_TO_FULFILLMENT
    if order.status != target:
        move(order, target)
    emit_order(order, EventType.ORDER_UPDATED)
