"""
The order state machine: the statuses an order may move between (ORDER_TRANSITIONS), the one function that
moves it, the conflict every refused change raises, and the order's webhook payload. The jobs (ingest, holds,
shipping requests, fulfillments, cancellation) are in the modules named after them; services.py lists them.
"""

from django.utils import timezone

from core import triggers
from core.errors import DomainError
from integrations.webhooks import outbox

from .choices import ORDER_TRANSITIONS, OrderStatus, ShippingRequestStatus
from .models import Order

OPEN_REQUEST = (
    ShippingRequestStatus.PENDING,
    ShippingRequestStatus.ACKNOWLEDGED,
    ShippingRequestStatus.PARTIALLY_FULFILLED,
)
EDITABLE = (OrderStatus.NEW, OrderStatus.ON_HOLD, OrderStatus.READY)


MAPPING_REASON = "unmapped "
UNROUTABLE_REASON = "no location can ship it"
REASON_SEPARATOR = "; "


class OrderConflict(DomainError):
    """The order's state forbids the change (API: 409 conflict)."""

    api_code = "conflict"


# --- payloads (what webhooks carry; the API serializers produce the same shape) -------------------------


def order_payload(order) -> dict:
    return {
        "id": str(order.pk),
        "external_id": order.external_id,
        "number": order.number,
        "status": order.status,
        "source": str(order.source_id) if order.source_id else None,
        "hold": {
            "reason": order.hold_reason,
            "until": order.hold_until.isoformat() if order.hold_until else None,
        }
        if order.status == OrderStatus.ON_HOLD
        else None,
        "total": str(order.total),
        "currency": order.currency,
        "updated_at": order.updated_at.isoformat() if order.updated_at else None,
    }


def emit_order(order, event_type, *, changes=None):
    outbox.emit(
        order.organization_id,
        event_type,
        "order",
        order.pk,
        order_payload(order),
        integration=order.source,
        changes=changes,
    )


# --- the state machine --------------------------------------------------------------------------------


def move(order: Order, to_status, *, reason="") -> Order:
    """Change an order's status by the rules of ORDER_TRANSITIONS (caller holds the row lock)."""
    to_status = OrderStatus(to_status)
    if to_status not in ORDER_TRANSITIONS[OrderStatus(order.status)]:
        raise OrderConflict(
            f"Order {order} cannot move from {order.get_status_display()} to {to_status.label}."
        )
    order.status = to_status
    fields = ["status", "updated_at"]
    if to_status != OrderStatus.ON_HOLD and (order.hold_reason or order.hold_until):
        order.hold_reason, order.hold_until = "", None
        fields += ["hold_reason", "hold_until"]
    if to_status == OrderStatus.CANCELED:
        order.canceled_at = timezone.now()
        fields.append("canceled_at")
    order.save(update_fields=fields)
    return order


def announce_ready(order: Order) -> None:
    """The order became ready outside the hold engine's task: once committed, the routing engine routes it."""
    triggers.fire(triggers.ORDER_READY, organization_id=order.organization_id, order_id=order.pk)


def locked(order) -> Order:
    return (
        Order.objects.select_for_update(of=("self",))
        .select_related("source", "organization")
        .get(pk=order.pk)
    )
