"""Query filters of the order endpoints; every list also takes ?updated_since= (docs/connectors/contract.md,
"Conventions")."""

import django_filters

from api.filters import UpdatedSinceFilterSet
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import Fulfillment, Order, ShippingRequest


class OrderFilter(UpdatedSinceFilterSet):
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices)
    external_id = django_filters.CharFilter(help_text="The channel's id of the order.")

    class Meta:
        model = Order
        fields = ["status", "external_id"]


class ShippingRequestFilter(UpdatedSinceFilterSet):
    status = django_filters.ChoiceFilter(choices=ShippingRequestStatus.choices)

    class Meta:
        model = ShippingRequest
        fields = ["status"]


class FulfillmentFilter(UpdatedSinceFilterSet):
    class Meta:
        model = Fulfillment
        fields = []
