"""
How the hub reads an order a manifest channel hands it (orders/manifest.py pulls them): exactly as POST
/api/v1/orders reads one, with the same serializer and the same errors. Registered when Django starts
(api/apps.py), as the webhook renderers are.
"""

from api.orders.serializers import OrderInputSerializer
from orders.manifest import register_order_reader


@register_order_reader
def read_order(body) -> tuple[dict | None, dict | None]:
    """(the data orders.ingest.ingest_order takes, None), or (None, the errors by field)."""
    if not isinstance(body, dict):
        return None, {"non_field_errors": ["Not an object."]}
    serializer = OrderInputSerializer(data=body)
    if not serializer.is_valid():
        return None, serializer.errors
    return serializer.to_service(), None
