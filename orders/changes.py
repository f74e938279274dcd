"""
Changes after routing (issue 16, item 3): a channel's upsert that changes a routed order's shipping address,
contact or shipping method is carried to its open shipping requests, each 3PL told with
`shipping_request.updated` and its `changes`, and a person told too when the 3PL had already acknowledged.
A change with nowhere to go (the order shipped or canceled) is refused, like a change of a routed order's lines.
"""

from core.sync_exceptions import ExceptionKind, raise_exception
from integrations.choices import EventType
from integrations.webhooks import outbox

from .choices import ShippingRequestStatus
from .models import Order, ShippingMethod, ShippingRequest
from .state import OPEN_REQUEST, OrderConflict

# The order's fields, as the channel's body names them, that `changes` reports (the totals are one field).
TRACKED = (
    "number",
    "currency",
    "customer",
    "shipping_address",
    "billing_address",
    "shipping_method",
    "payment_status",
    "notes",
    "tags",
    "lines",
    "totals",
)
# What a shipping request carries of its order: the fields a change of which its 3PL must hear of.
CARRIED = ("customer", "shipping_address", "shipping_method")
TOTALS = ("subtotal", "shipping_total", "tax_total", "discount_total", "total")


def tracked(order: Order) -> dict:
    """The order's reported fields now (copies: the upsert changes the order in place)."""
    return {
        "number": order.number,
        "currency": order.currency,
        "customer": dict(order.customer or {}),
        "shipping_address": dict(order.shipping_address or {}),
        "billing_address": dict(order.billing_address or {}),
        "shipping_method": order.shipping_method_code,
        "payment_status": order.payment_status,
        "notes": order.notes,
        "tags": list(order.tags or []),
        "totals": tuple(getattr(order, name) for name in TOTALS),
    }


def changed(before: dict, after: dict) -> list[str]:
    """
    The names of what differs: `field` for a plain field, `field.key` for each key of an object field (an
    address, the customer) that was added, removed or changed; in TRACKED's order, keys sorted.
    """
    names = []
    for field in TRACKED:
        old, new = before.get(field), after.get(field)
        if isinstance(old, dict) and isinstance(new, dict):
            names += [
                f"{field}.{key}" for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)
            ]
        elif old != new:
            names.append(field)
    return names


def carried(changes: list[str]) -> list[str]:
    return [name for name in changes if name.split(".", 1)[0] in CARRIED]


def check_carried(order: Order, changes: list[str], method: ShippingMethod | None) -> list[ShippingRequest]:
    """
    The open requests (locked) a routed order's change of address, contact or method goes to; OrderConflict
    when it has none (shipped, canceled) or the new method is not mapped. Call it before saving anything.
    """
    if "shipping_method" in changes and order.shipping_method_code and method is None:
        raise OrderConflict(
            f"Order {order} is {order.get_status_display().lower()}: its new shipping method "
            f"{order.shipping_method_code!r} is not mapped, so its shipping requests cannot take it."
        )
    requests = list(
        order.shipping_requests.select_for_update(of=("self",))
        .filter(status__in=OPEN_REQUEST)
        .select_related("location", "fulfiller", "shipping_method")
        .order_by("pk")
    )
    if not requests:
        raise OrderConflict(
            f"Order {order} is {order.get_status_display().lower()}: nothing of it is left to ship, so its "
            "address, contact and shipping method can no longer change."
        )
    return requests


def update_requests(order: Order, requests: list[ShippingRequest], method: ShippingMethod | None) -> None:
    """
    Carry the order's address, contact and method to its open requests: `shipping_request.updated` for each
    that changed, with the names of what did, and an exception for each its 3PL had already acknowledged.
    """
    for request in requests:
        changes = changed(
            _carried(request.shipping_address, request.customer, request.shipping_method),
            _carried(order.shipping_address, order.customer, method),
        )
        if not changes:
            continue
        request.shipping_address = dict(order.shipping_address or {})
        request.customer = dict(order.customer or {})
        request.shipping_method = method
        request.save(update_fields=["shipping_address", "customer", "shipping_method", "updated_at"])
        outbox.emit(
            request.organization_id,
            EventType.SHIPPING_REQUEST_UPDATED,
            "shipping_request",
            request.pk,
            {"id": str(request.pk), "order": str(order.pk), "location": str(request.location_id)},
            integration=request.fulfiller,
            changes=changes,
        )
        if request.status != ShippingRequestStatus.PENDING:
            _tell_a_person(order, request, changes)


def _carried(address, customer, method: ShippingMethod | None) -> dict:
    """What a request carries, as `changed` reads it."""
    return {
        "customer": dict(customer or {}),
        "shipping_address": dict(address or {}),
        "shipping_method": method.code if method is not None else None,
    }


def _tell_a_person(order: Order, request: ShippingRequest, changes: list[str]) -> None:
    what = "address" if any(c.startswith("shipping_address") for c in changes) else "contact or method"
    raise_exception(
        order.organization_id,
        ExceptionKind.CHANGED_AFTER_ACKNOWLEDGED,
        f"Order {order}: {what} changed after the 3PL acknowledged its shipping request at {request.location} "
        f"({', '.join(changes)}). Make sure it ships as changed.",
        integration=request.fulfiller,
        entity_type="shipping_request",
        entity_id=request.pk,
        data={"order": str(order.pk), "changes": changes},
    )
