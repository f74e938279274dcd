"""
The `webhooks` section of the OpenAPI document (OAS 3.1): one entry per event type the hub knows
(integrations.choices.EventType), each the POST a receiver gets — its envelope, with `data` the very schema
this API documents for the object (an order's `data` is the `Order` of `GET /orders/{id}`), the grant the
subscribing key needs (`x-required-grant`, from EVENT_GRANTS) and the three Standard Webhooks headers.

Read by drf-spectacular through SPECTACULAR_SETTINGS["WEBHOOKS"]; the headers (api.schema.WEBHOOK_HEADERS)
are added by api.schema.postprocess, as drf-spectacular gives webhooks no parameters.
"""

from drf_spectacular.utils import (
    OpenApiResponse,
    OpenApiWebhook,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers

from api.inventory.serializers import AvailabilitySerializer, InventoryLevelSerializer, ProductSerializer
from api.orders.serializers import FulfillmentSerializer, OrderSerializer, ShippingRequestSerializer
from integrations.choices import EventType, IntegrationStatus
from integrations.webhooks.subscriptions import EVENT_GRANTS


class IntegrationStatusChangeSerializer(serializers.Serializer):
    """The `data` of integration.status_changed: the receiving integration's own status, before and after."""

    id = serializers.CharField(help_text="The integration's id.")
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=IntegrationStatus.choices, help_text="The status it is now in.")
    previous = serializers.ChoiceField(choices=IntegrationStatus.choices, help_text="The status it left.")
    reason = serializers.CharField(allow_blank=True, help_text="Why, as the integration's event log says.")


def inventory_data() -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(
        component_name="InventoryUpdate",
        serializers=[InventoryLevelSerializer, AvailabilitySerializer],
        resource_type_field_name=None,
        help_text="A stock level (`InventoryLevel`, as `GET /inventory` shows it) to integrations that read "
        "stock; to a channel, also its own sellable figure (`Availability`, as `GET /availability` shows it).",
    )


# What `data` is, per object of the event type's name (the part before the dot).
DATA = {
    "order": OrderSerializer,
    "shipping_request": ShippingRequestSerializer,
    "fulfillment": FulfillmentSerializer,
    "product": ProductSerializer,
    "inventory": inventory_data,
    "integration": IntegrationStatusChangeSerializer,
}

# The event types whose envelope carries `changes` (emitted with changes=…: orders/ingest.py, orders/changes.py,
# orders/corrections.py).
WITH_CHANGES = {EventType.ORDER_UPDATED, EventType.SHIPPING_REQUEST_UPDATED, EventType.FULFILLMENT_UPDATED}


def component_name(event_type: str) -> str:
    """order.created → OrderCreatedEvent."""
    words = event_type.replace(".", "_").split("_")
    return "".join(word.title() for word in words) + "Event"


def _constant(value: str) -> serializers.CharField:
    """A string field documented as `const`: the one event type of its envelope."""
    field_class = extend_schema_field({"type": "string", "const": value})(
        type("EventTypeConstant", (serializers.CharField,), {"__module__": __name__})
    )
    return field_class(help_text="The event type.")


def envelope(event_type: str) -> type[serializers.Serializer]:
    """The body of one event type's deliveries (core.signing.payload writes it)."""
    data = DATA[event_type.split(".")[0]]
    fields = {
        "__doc__": f"The body of each `{event_type}` delivery (and its entry in `GET /webhook-events`).",
        "__module__": __name__,
        "id": serializers.CharField(
            help_text="evt_…: the `webhook-id` header of every delivery of this event."
        ),
        "type": _constant(event_type),
        "created_at": serializers.DateTimeField(
            help_text="When the event happened (its transaction's time), not when this delivery was made."
        ),
        "sequence": serializers.IntegerField(
            min_value=1,
            help_text="Increasing per integration and object in commit order: ignore an event whose sequence "
            "is lower than the highest one seen for its object.",
        ),
        "data": data(),
    }
    if event_type in WITH_CHANGES:
        fields["changes"] = serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="When the update comes from a change of named fields (a channel's re-post, a new address): "
            "those fields (`shipping_address.<key>`, `customer.<key>`, …), [] when none changed; left out when "
            "the update is a status change.",
        )
    return type(component_name(event_type) + "Serializer", (serializers.Serializer,), fields)


def webhook(event_type: str) -> OpenApiWebhook:
    grant = EVENT_GRANTS[event_type]
    return OpenApiWebhook(
        name=event_type,
        decorator=extend_schema(
            summary=f"{event_type} delivery",
            description=(
                f"POSTed to each URL subscribed to `{event_type}` (`POST /webhooks`). The subscribing key needs "
                + (f"`{grant}`." if grant else "no grant beyond `webhooks:write`.")
                + " Any 2xx answer within the timeout acknowledges it; anything else is retried with the same "
                "`webhook-id` and body."
            ),
            request=envelope(event_type),
            responses={
                (200, "*/*"): OpenApiResponse(description="Any 2xx: received. The body is ignored."),
            },
            extensions={"x-required-grant": grant},
        ),
    )


WEBHOOKS = [webhook(event_type) for event_type in EventType.values]
