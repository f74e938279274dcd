"""
The order flow: ingest (upsert per channel), the order state machine, holds, shipping requests with their
stock commitments, fulfillments (over-shipment refused), cancellation — each change with its outbox event
in the same transaction.
"""

from collections import defaultdict
from decimal import Decimal
from functools import partial

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from automations import services as exceptions
from automations.choices import ExceptionKind
from integrations import services as integration_services
from integrations.choices import EventType
from inventory import services as inventory

from . import signals
from .choices import ORDER_TRANSITIONS, OrderStatus, ShippingRequestStatus
from .models import (
    Fulfillment,
    FulfillmentLine,
    Order,
    OrderLine,
    ShippingMethodMapping,
    ShippingRequest,
    ShippingRequestLine,
)

OPEN_REQUEST = (
    ShippingRequestStatus.PENDING,
    ShippingRequestStatus.ACKNOWLEDGED,
    ShippingRequestStatus.PARTIALLY_FULFILLED,
)
EDITABLE = (OrderStatus.NEW, OrderStatus.ON_HOLD, OrderStatus.READY)
HEADER_FIELDS = (
    "number",
    "currency",
    "customer",
    "billing_address",
    "shipping_address",
    "payment_status",
    "notes",
    "tags",
    "shipping_total",
    "tax_total",
    "discount_total",
)


MAPPING_REASON = "unmapped "
UNROUTABLE_REASON = "no location can ship it"
REASON_SEPARATOR = "; "


class OrderConflict(Exception):
    """The order's state forbids the change (API: 409 conflict)."""


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


def _emit_order(order, event_type):
    integration_services.emit(
        order.organization_id, event_type, "order", order.pk, order_payload(order), integration=order.source
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
    if to_status == OrderStatus.READY:
        org_id, order_id = order.organization_id, order.pk
        transaction.on_commit(
            lambda: signals.order_ready.send(Order, organization_id=org_id, order_id=order_id)
        )
    return order


def _locked(order) -> Order:
    return (
        Order.objects.select_for_update(of=("self",))
        .select_related("source", "organization")
        .get(pk=order.pk)
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
        order = _locked(order)
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
        _emit_order(order, EventType.ORDER_UPDATED)
    return order


def release(order: Order) -> Order:
    """Lift a hold: ready, unless its SKUs or shipping method are still unmapped."""
    with transaction.atomic():
        order = _locked(order)
        if order.status != OrderStatus.ON_HOLD:
            raise OrderConflict(f"Order {order} is not on hold.")
        problems = _mapping_problems(order)
        if problems:
            raise OrderConflict(f"Order {order} cannot be released: {problems[0]}")
        move(order, OrderStatus.READY)
        _emit_order(order, EventType.ORDER_UPDATED)
    return order


def make_ready(order: Order) -> Order:
    """A new order the hold engine let through: `new` → `ready` (then routed). Any other status: unchanged."""
    with transaction.atomic():
        order = _locked(order)
        if order.status == OrderStatus.NEW:
            move(order, OrderStatus.READY)
            _emit_order(order, EventType.ORDER_UPDATED)
    return order


def mark_rules_applied(order: Order) -> None:
    """The hold engine applied the arrival rules to this order (call it in that same transaction)."""
    order.rules_applied_at = timezone.now()
    Order.objects.filter(pk=order.pk).update(rules_applied_at=order.rules_applied_at)


def add_tags(order: Order, tags) -> Order:
    """Add tags an order does not have yet (automation rules); nothing written when none is new."""
    with transaction.atomic():
        order = _locked(order)
        new = [t for t in dict.fromkeys(str(t).strip() for t in tags) if t and t not in (order.tags or [])]
        if new:
            order.tags = [*(order.tags or []), *new]
            order.save(update_fields=["tags", "updated_at"])
            _emit_order(order, EventType.ORDER_UPDATED)
    return order


def set_routing_location(order: Order, location) -> Order:
    """An automation rule names where the order should ship from (honoured when it can ship it all)."""
    with transaction.atomic():
        order = _locked(order)
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


# --- ingest -------------------------------------------------------------------------------------------


def ingest_order(integration, data: dict) -> tuple[Order, bool]:
    """
    Create or update the order `data["external_id"]` of this channel; returns (order, created). A retry
    or a concurrent duplicate never makes a second order: the database's unique constraint decides.
    """
    integration_services.require_workflow(integration, "orders_in")
    for _ in range(3):
        try:
            with transaction.atomic():
                existing = (
                    Order.objects.select_for_update(of=("self",))
                    .filter(source=integration, external_id=data["external_id"])
                    .first()
                )
                if existing is not None:
                    order, created = _update_order(existing, integration, data), False
                else:
                    order, created = _create_order(integration, data), True
                # The hold engine hears of it once it is committed (its rules run on a worker).
                transaction.on_commit(
                    partial(
                        signals.order_received.send,
                        Order,
                        organization_id=order.organization_id,
                        order_id=order.pk,
                        created=created,
                    )
                )
                return order, created
        except IntegrityError:
            continue  # a concurrent request created it first: update that one
    raise OrderConflict("The order is being written by another request; retry.")


def _map_lines(integration, lines):
    products = inventory.resolve_skus(integration.organization, integration, [line["sku"] for line in lines])
    mapped = []
    for number, line in enumerate(lines, start=1):
        product = products.get(line["sku"])
        mapped.append(
            OrderLine(
                line_number=number,
                product=product,
                sku=product.sku if product else "",
                external_sku=line["sku"],
                quantity=line["quantity"],
                unit_price=Decimal(str(line.get("unit_price") or 0)),
                tax=Decimal(str(line.get("tax") or 0)),
                discount=Decimal(str(line.get("discount") or 0)),
            )
        )
    return mapped


def _map_method(integration, code):
    if not code:
        return None
    mapping = (
        ShippingMethodMapping.objects.filter(integration=integration, external_code=code)
        .select_related("method")
        .first()
    )
    if mapping:
        return mapping.method
    # A channel may also send the hub's own code.
    from .models import ShippingMethod

    return ShippingMethod.objects.filter(organization_id=integration.organization_id, code=code).first()


def _apply_header(order, data):
    for field in HEADER_FIELDS:
        if field in data and data[field] is not None:
            value = data[field]
            if field.endswith("_total"):
                value = Decimal(str(value))
            setattr(order, field, value)


def _totals(order, lines, data):
    order.subtotal = sum((line.unit_price * line.quantity - line.discount for line in lines), Decimal("0"))
    line_tax = sum((line.tax for line in lines), Decimal("0"))
    if "tax_total" not in data or data.get("tax_total") is None:
        order.tax_total = line_tax
    order.total = (
        Decimal(str(data["total"]))
        if data.get("total") is not None
        else (order.subtotal + order.shipping_total + order.tax_total - order.discount_total)
    )


def _create_order(integration, data) -> Order:
    order = Order(
        organization_id=integration.organization_id, source=integration, external_id=data["external_id"]
    )
    _apply_header(order, data)
    order.shipping_method_code = data.get("shipping_method") or ""
    order.shipping_method = _map_method(integration, order.shipping_method_code)
    lines = _map_lines(integration, data["lines"])
    _totals(order, lines, data)
    order.save()
    for line in lines:
        line.order = order
    OrderLine.objects.bulk_create(lines)
    _check_mappings(order, integration, lines, created=True)
    _emit_order(order, EventType.ORDER_CREATED)
    return order


def _check_mappings(order, integration, lines, *, created):
    """Unmapped SKUs or method hold the order with a reason and raise one exception; mapped ones clear it."""
    unmapped_skus = sorted({line.external_sku for line in lines if line.product_id is None})
    unmapped_method = bool(order.shipping_method_code) and order.shipping_method_id is None
    reasons = [f"unmapped SKU {sku}" for sku in unmapped_skus]
    if unmapped_method:
        reasons.append(f"unmapped shipping method {order.shipping_method_code}")
    for kind, present, detail in (
        (ExceptionKind.UNMAPPED_SKU, unmapped_skus, ", ".join(unmapped_skus)),
        (ExceptionKind.UNMAPPED_SHIPPING_METHOD, unmapped_method, order.shipping_method_code),
    ):
        if present:
            exceptions.raise_exception(
                order.organization_id,
                kind,
                f"Order {order}: {kind.label.lower()} {detail}.",
                integration=integration,
                entity_type="order",
                entity_id=order.pk,
            )
        elif not created:  # a brand-new order has nothing open to resolve
            exceptions.resolve(
                order.organization_id, kind, integration=integration, entity_type="order", entity_id=order.pk
            )
    # A hold for another reason (review, a rule) is kept beside the mapping reasons and outlives them.
    other = [p for p in order.hold_reason.split(REASON_SEPARATOR) if p and not p.startswith(MAPPING_REASON)]
    if reasons:
        if order.status != OrderStatus.ON_HOLD:
            move(order, OrderStatus.ON_HOLD)
        order.hold_reason = REASON_SEPARATOR.join(other + reasons)[:300]
        order.save(update_fields=["hold_reason", "updated_at"])
    elif created and not exceptions.engine_enabled(order.organization_id, "hold"):
        # Nothing holds it and no rules are to be applied: ready to be routed.
        move(order, OrderStatus.READY)
    # Else a new order stays `new` until the hold engine applied the rules (automations.engines.hold).
    elif order.status == OrderStatus.ON_HOLD and order.hold_reason.startswith(MAPPING_REASON) and not other:
        move(order, OrderStatus.READY)
    elif order.status == OrderStatus.ON_HOLD and other and REASON_SEPARATOR.join(other) != order.hold_reason:
        order.hold_reason = REASON_SEPARATOR.join(other)
        order.save(update_fields=["hold_reason", "updated_at"])


def _line_key(line):
    return (line.external_sku, line.quantity, line.unit_price, line.tax, line.discount)


def _update_order(order, integration, data) -> Order:
    _apply_header(order, data)
    new_lines = _map_lines(integration, data["lines"])
    current = list(order.lines.all())
    lines_changed = [_line_key(line) for line in current] != [_line_key(line) for line in new_lines]
    # A push that leaves the shipping method out keeps the one stored.
    code = data["shipping_method"] or "" if "shipping_method" in data else order.shipping_method_code
    if (lines_changed or code != order.shipping_method_code) and order.status not in EDITABLE:
        raise OrderConflict(
            f"Order {order} is {order.get_status_display().lower()}: its lines and shipping method can no longer change."
        )
    if order.status in EDITABLE:
        # Mapped again on every push: a SKU or method mapping added since the last one releases the order.
        order.shipping_method_code = code
        order.shipping_method = _map_method(integration, code)
    lines = current
    if lines_changed:
        order.lines.all().delete()
        for line in new_lines:
            line.order = order
        OrderLine.objects.bulk_create(new_lines)
        lines = new_lines
    elif order.status in EDITABLE:
        remapped = []
        for line, new in zip(current, new_lines, strict=True):
            if line.product_id != new.product_id:
                line.product, line.sku = new.product, new.sku
                remapped.append(line)
        OrderLine.objects.bulk_update(remapped, ["product", "sku"])
    _totals(order, lines, data)
    order.save()
    if order.status in EDITABLE:
        _check_mappings(order, integration, lines, created=False)
    _emit_order(order, EventType.ORDER_UPDATED)
    return order


# --- shipping requests --------------------------------------------------------------------------------


def create_shipping_request(order: Order, location, lines=None) -> ShippingRequest:
    """
    Route (part of) an order to a location: one request per order and location, stock committed there, the
    order sent to fulfillment. `lines` is [(order line, quantity)], default every line in full.
    """
    with transaction.atomic():
        order = _locked(order)
        if order.status not in (OrderStatus.READY, OrderStatus.SENT_TO_FULFILLMENT):
            raise OrderConflict(f"Order {order} is {order.get_status_display().lower()}, not ready to ship.")
        if location.organization_id != order.organization_id or not location.ships or not location.active:
            raise ValidationError(f"{location} cannot ship this order.")
        # What other (not canceled) requests already cover is not routed twice: that would commit it twice.
        routed = defaultdict(int)
        for rl in ShippingRequestLine.objects.filter(request__order=order).exclude(
            request__status=ShippingRequestStatus.CANCELED
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
        integration_services.emit(
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
        _emit_order(order, EventType.ORDER_UPDATED)
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
    return request


# --- fulfillment --------------------------------------------------------------------------------------


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
        _locked(Order(pk=ShippingRequest.objects.values_list("order_id", flat=True).get(pk=request.pk)))
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
        order = _locked(request.order)
        _follow_fulfillment(order)
        integration_services.emit(
            order.organization_id,
            EventType.FULFILLMENT_CREATED,
            "fulfillment",
            fulfillment.pk,
            {
                "id": str(fulfillment.pk),
                "order": str(order.pk),
                "shipping_request": str(request.pk),
                "carrier": fulfillment.carrier,
                "tracking_number": fulfillment.tracking_number,
                "tracking_url": fulfillment.tracking_url,
                "shipped_at": fulfillment.shipped_at.isoformat()
                if hasattr(fulfillment.shipped_at, "isoformat")
                else str(fulfillment.shipped_at),
            },
            integration=order.source,
        )
    return fulfillment, True


def _follow_fulfillment(order):
    """The order's status follows its requests: fulfilled when every line shipped, else partially."""
    ordered = {line.pk: line.quantity for line in order.lines.all()}
    shipped = defaultdict(int)
    for rl in ShippingRequestLine.objects.filter(request__order=order).exclude(
        request__status=ShippingRequestStatus.CANCELED
    ):
        shipped[rl.order_line_id] += rl.fulfilled_quantity
    everything = all(shipped[pk] >= qty for pk, qty in ordered.items())
    target = OrderStatus.FULFILLED if everything else OrderStatus.PARTIALLY_FULFILLED
    if order.status != target:
        move(order, target)
    _emit_order(order, EventType.ORDER_UPDATED)


# --- cancel -------------------------------------------------------------------------------------------


def cancel_order(order: Order, *, reason="") -> Order:
    """Cancel: commitments released, open shipping requests canceled. Refused once anything shipped."""
    with transaction.atomic():
        order = _locked(order)
        if order.status == OrderStatus.CANCELED:
            return order
        if Fulfillment.objects.filter(order=order).exists() or order.status in (
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
        _emit_order(order, EventType.ORDER_CANCELED)
    return order


def _close_request(request):
    """A canceled request (its stock already released): status and event."""
    request.status = ShippingRequestStatus.CANCELED
    request.save(update_fields=["status", "updated_at"])
    integration_services.emit(
        request.organization_id,
        EventType.SHIPPING_REQUEST_CANCELED,
        "shipping_request",
        request.pk,
        {"id": str(request.pk), "order": str(request.order_id), "status": request.status},
        integration=request.fulfiller,
    )
