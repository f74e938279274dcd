"""
Ingest: a channel's order upserted by its external id (created, or updated while it is still editable), its
SKUs and shipping method mapped to the hub's, unmapped ones holding the order with an exception, and the
hold engine told once it is committed (ORDER_RECEIVED). With the hold engine off, a new order nothing holds
is ready at once (and announced to the routing engine).
"""

from decimal import Decimal

from django.db import IntegrityError, transaction

from core import triggers
from core.sync_exceptions import ExceptionKind, raise_exception, resolve_exception
from integrations.choices import EventType
from integrations.connector_settings import setting
from integrations.workflows import require_workflow
from inventory import services as inventory

from . import changes
from .choices import OrderStatus
from .models import Order, OrderLine, ShippingMethod, ShippingMethodMapping
from .state import (
    EDITABLE,
    MAPPING_REASON,
    REASON_SEPARATOR,
    OrderConflict,
    announce_ready,
    emit_order,
    move,
)

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


def ingest_order(integration, data: dict) -> tuple[Order, bool]:
    """
    Create or update the order `data["external_id"]` of this channel; returns (order, created). A retry
    or a concurrent duplicate never makes a second order: the database's unique constraint decides.
    """
    require_workflow(integration, "orders_in")
    data = _prefixed_number(integration, data)
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
                triggers.fire(
                    triggers.ORDER_RECEIVED,
                    organization_id=order.organization_id,
                    order_id=order.pk,
                    created=created,
                )
                return order, created
        except IntegrityError:
            continue  # a concurrent request created it first: update that one
    raise OrderConflict("The order is being written by another request; retry.")


def _prefixed_number(integration, data: dict) -> dict:
    """
    `data` with the channel's `order_number_prefix` before the number it sent, so every place that shows
    the order's number (admin, API answers, webhooks, shipping requests) shows it. Added once: a number that
    already starts with the prefix is kept as sent.
    """
    prefix = setting(integration, "order_number_prefix")
    number = data.get("number")
    if prefix and number and not number.startswith(prefix):
        return {**data, "number": prefix + number}
    return data


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
    if not data.get("currency"):
        # The channel's `default_currency` for an order that names none (the model's USD without one).
        order.currency = setting(integration, "default_currency") or order.currency
    order.shipping_method_code = data.get("shipping_method") or ""
    order.shipping_method = _map_method(integration, order.shipping_method_code)
    lines = _map_lines(integration, data["lines"])
    _totals(order, lines, data)
    order.save()
    for line in lines:
        line.order = order
    OrderLine.objects.bulk_create(lines)
    _check_mappings(order, integration, lines, created=True)
    emit_order(order, EventType.ORDER_CREATED)
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
            raise_exception(
                order.organization_id,
                kind,
                f"Order {order}: {kind.label.lower()} {detail}.",
                integration=integration,
                entity_type="order",
                entity_id=order.pk,
            )
        elif not created:  # a brand-new order has nothing open to resolve
            resolve_exception(
                order.organization_id, kind, integration=integration, entity_type="order", entity_id=order.pk
            )
    # A hold for another reason (review, a rule) is kept beside the mapping reasons and outlives them.
    other = [p for p in order.hold_reason.split(REASON_SEPARATOR) if p and not p.startswith(MAPPING_REASON)]
    if reasons:
        if order.status != OrderStatus.ON_HOLD:
            move(order, OrderStatus.ON_HOLD)
        order.hold_reason = REASON_SEPARATOR.join(other + reasons)[:300]
        order.save(update_fields=["hold_reason", "updated_at"])
    elif created and not triggers.ask(
        triggers.ENGINE_ON, organization_id=order.organization_id, engine="hold"
    ):
        # Nothing holds it and no rules are to be applied: ready to be routed.
        move(order, OrderStatus.READY)
        announce_ready(order)
    # Else a new order stays `new` until the hold engine applied the rules (automations.engines.hold).
    elif order.status == OrderStatus.ON_HOLD and order.hold_reason.startswith(MAPPING_REASON) and not other:
        move(order, OrderStatus.READY)
        announce_ready(order)
    elif order.status == OrderStatus.ON_HOLD and other and REASON_SEPARATOR.join(other) != order.hold_reason:
        order.hold_reason = REASON_SEPARATOR.join(other)
        order.save(update_fields=["hold_reason", "updated_at"])


def _line_key(line):
    return (line.external_sku, line.quantity, line.unit_price, line.tax, line.discount)


def _update_order(order, integration, data) -> Order:
    before = changes.tracked(order)
    _apply_header(order, data)
    new_lines = _map_lines(integration, data["lines"])
    current = list(order.lines.all())
    lines_changed = [_line_key(line) for line in current] != [_line_key(line) for line in new_lines]
    # A push that leaves the shipping method out keeps the one stored.
    code = data["shipping_method"] or "" if "shipping_method" in data else order.shipping_method_code
    if lines_changed and order.status not in EDITABLE:
        raise OrderConflict(
            f"Order {order} is {order.get_status_display().lower()}: its lines can no longer change."
        )
    # Mapped again on every push while editable: a SKU or method mapping added since the last one releases it.
    method_changed = code != order.shipping_method_code
    if order.status in EDITABLE or method_changed:
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
    named = changes.changed(before, changes.tracked(order)) + (["lines"] if lines_changed else [])
    # A routed order's new address, contact or method goes to its open shipping requests (refused, changing
    # nothing, when it has none left or the new method is not mapped).
    carried = changes.carried(named) if order.status not in EDITABLE else []
    requests = changes.check_carried(order, carried, order.shipping_method) if carried else []
    order.save()
    if order.status in EDITABLE:
        _check_mappings(order, integration, lines, created=False)
    changes.update_requests(order, requests, order.shipping_method)
    emit_order(order, EventType.ORDER_UPDATED, changes=named)
    return order
