"""What the routing tests read back: where an order was routed, committed stock, its unroutable exception."""

from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from inventory.models import InventoryLevel
from orders.models import ShippingRequest


def routed_to(order) -> dict[str, dict[str, int]]:
    """{location name: {sku: quantity}} of the order's shipping requests."""
    result: dict[str, dict[str, int]] = {}
    for request in ShippingRequest.objects.filter(order=order).prefetch_related("lines__product"):
        for line in request.lines.all():
            result.setdefault(request.location.name, {})[line.product.sku] = line.quantity
    return result


def committed(location, product) -> int:
    return InventoryLevel.objects.get(location=location, product=product).committed


def unroutable_exception(order):
    return SyncException.objects.get(kind=ExceptionKind.UNROUTABLE_ORDER, entity_id=str(order.pk))
