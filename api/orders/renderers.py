"""Webhook bodies for order-flow events: the object as this API answers it to the receiving integration."""

from api.base import render_for
from api.orders.views import FulfillmentViewSet, OrderViewSet, ShippingRequestViewSet
from integrations.webhooks.outbox import register_renderer


@register_renderer("order")
def render_orders(integration, ids):
    return render_for(OrderViewSet, integration, ids)


@register_renderer("shipping_request")
def render_shipping_requests(integration, ids):
    return render_for(ShippingRequestViewSet, integration, ids)


@register_renderer("fulfillment")
def render_fulfillments(integration, ids):
    return render_for(FulfillmentViewSet, integration, ids)
