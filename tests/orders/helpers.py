"""Helpers of the order-flow API tests: the endpoints, integration keys, shipment bodies, commitments."""

from inventory.models import InventoryLevel
from tokens import issuing as key_services
from tokens.choices import KeyKind

ORDERS = "/api/v1/orders"
REQUESTS = "/api/v1/shipping-requests"
FULFILLMENTS = "/api/v1/fulfillments"
ORDER_GRANTS = [
    "orders:read",
    "orders:write",
    "shipping_requests:read",
    "shipping_requests:write",
    "fulfillments:read",
    "fulfillments:write",
]


def integration_key(integration, grants=None):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name=f"{integration.name} key", integration=integration, grants=grants
    )


def shipment(request, lines, external_id="SHIP-1", **extra):
    return {
        "shipping_request": str(request.pk),
        "external_id": external_id,
        "carrier": "UPS",
        "tracking_number": "1Z999",
        "tracking_url": "https://track.example.test/1Z999",
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "shipped_at": "2025-05-01T12:00:00Z",
        **extra,
    }


def committed(product, location) -> int:
    return InventoryLevel.objects.get(product=product, location=location).committed
