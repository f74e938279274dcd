"""
Holding and releasing orders: a hold for a reason (until a time, or until released), several reasons kept
side by side, release (refused while SKUs or the shipping method are unmapped), new -> ready, and the other
changes the hold engine's rules make (tags, a routing location). An order made ready here is announced to the
routing engine (ORDER_READY) unless the caller routes it itself (`announce=False`: the engines' own steps).
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from integrations.choices import EventType

from .choices import OrderStatus
from .models import Order, OrderLine
from .state import (
    MAPPING_REASON,
    OPEN_REQUEST,
    REASON_SEPARATOR,
    OrderConflict,
    announce_ready,
    emit_order,
    locked,
    move,
)


def held_only_for(order: Order, reason: str) -> bool:
    """On hold for this one reason and no other (the reasons are kept joined in hold_reason)."""
    reasons = [r for r in order.hold_reason.split(REASON_SEPARATOR) if r]
    return order.status == OrderStatus.ON_HOLD and reasons == [reason]


def hold(order: Order, reason: str, *, until=None, add=False) -> Order:
    """
    Hold an order (until a time, else until released). With `add`, an order already on hold keeps its
    other reasons beside this one and stays held as long as the longest of them; unchanged, nothing is
    written or emitted.
    """
    with transaction.atomic():
        order = locked(order)
        if order.shipping_requests.filter(status__in=OPEN_REQUEST).exists():
            # Its stock is committed and the 3PL may ship it: a held order could not follow the fulfillment.
            raise OrderConflict(f"Order {order} has open shipping requests; cancel them before holding it.")
        if add and order.status == OrderStatus.ON_HOLD:
            reasons = [r for r in order.hold_reason.split(REASON_SEPARATOR) if r]
            # A mapping hold has no end time but is not open-ended either: it lifts itself once mapped, so
            # it must not turn a timed hold into one that is never released.
            open_ended = order.hold_until is None and any(not r.startswith(MAPPING_REASON) for r in reasons)
            if reason and reason not in reasons:
                reasons.append(reason)
            # An open-ended hold (None) outlasts any timed one.
            if until is not None and not open_ended and order.hold_until is not None:
                until = max(order.hold_until, until)
            elif open_ended:
                until = None
            reason = REASON_SEPARATOR.join(reasons)
            if (reason[:300], until) == (order.hold_reason, order.hold_until):
                return order
        elif order.status != OrderStatus.ON_HOLD:
            move(order, OrderStatus.ON_HOLD)
        order.hold_reason, order.hold_until = reason[:300], until
        order.save(update_fields=["hold_reason", "hold_until", "updated_at"])
        emit_order(order, EventType.ORDER_UPDATED)
    return order


def release(order: Order, *, announce=True) -> Order:
    """
    Lift a hold: ready, unless its SKUs or shipping method are still unmapped. The routing engine is told
    (ORDER_READY) unless `announce` is False: the caller routes it itself.
    """
    with transaction.atomic():
        order = locked(order)
        if order.status != OrderStatus.ON_HOLD:
            raise OrderConflict(f"Order {order} is not on hold.")
        problems = _mapping_problems(order)
        if problems:
            raise OrderConflict(f"Order {order} cannot be released: {problems[0]}")
        move(order, OrderStatus.READY)
        emit_order(order, EventType.ORDER_UPDATED)
        if announce:
            announce_ready(order)
    return order


def make_ready(order: Order, *, announce=True) -> Order:
    """
    A new order let through: `new` → `ready`, then routed (announced as release() does). Any other status:
    unchanged.
    """
    with transaction.atomic():
        order = locked(order)
        if order.status == OrderStatus.NEW:
            move(order, OrderStatus.READY)
            emit_order(order, EventType.ORDER_UPDATED)
            if announce:
                announce_ready(order)
    return order


def mark_rules_applied(order: Order) -> None:
    """The hold engine applied the arrival rules to this order (call it in that same transaction)."""
    order.rules_applied_at = timezone.now()
    Order.objects.filter(pk=order.pk).update(rules_applied_at=order.rules_applied_at)


def add_tags(order: Order, tags) -> Order:
    """Add tags an order does not have yet (automation rules); nothing written when none is new."""
    with transaction.atomic():
        order = locked(order)
        new = [t for t in dict.fromkeys(str(t).strip() for t in tags) if t and t not in (order.tags or [])]
        if new:
            order.tags = [*(order.tags or []), *new]
            order.save(update_fields=["tags", "updated_at"])
            emit_order(order, EventType.ORDER_UPDATED)
    return order


def set_routing_location(order: Order, location) -> Order:
    """An automation rule names where the order should ship from (honoured when it can ship it all)."""
    with transaction.atomic():
        order = locked(order)
        location_id = location.pk if location is not None else None
        if location is not None and location.organization_id != order.organization_id:
            raise ValidationError("That location belongs to another organization.")
        if order.routing_location_id != location_id:
            order.routing_location_id = location_id
            order.save(update_fields=["routing_location", "updated_at"])
    return order


# The queries of _mapping_problems, for many orders at once (the engines' sweeps).
UNMAPPED_METHOD = ~Q(shipping_method_code="") & Q(shipping_method__isnull=True)


def has_unmapped_line():
    """An Order filter: one of its lines has no hub product yet."""
    return Exists(OrderLine.objects.filter(order=OuterRef("pk"), product__isnull=True))


def _mapping_problems(order) -> list[str]:
    problems = [f"unmapped SKU {line.external_sku}" for line in order.lines.all() if line.product_id is None]
    if order.shipping_method_code and order.shipping_method_id is None:
        problems.append(f"unmapped shipping method {order.shipping_method_code}")
    return problems
