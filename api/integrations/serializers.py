import json
from datetime import datetime, timedelta

from django.conf import settings
from rest_framework import serializers

from api.fields import StrictIntegerField
from api.schema_fields import EventTypeField
from api.strict import StrictInput
from integrations import connector_settings
from integrations.choices import OWED
from integrations.models import (
    Integration,
    IntegrationEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from inventory.models import SkuMapping
from orders.models import ShippingMethodMapping


class IntegrationSerializer(serializers.ModelSerializer):
    """The integration as its own key sees it; secrets in settings are never returned."""

    id = serializers.CharField(read_only=True)
    connector = serializers.CharField(source="connector.key", read_only=True)
    settings = serializers.SerializerMethodField()
    mappings = serializers.SerializerMethodField()
    workflows = serializers.SerializerMethodField()

    class Meta:
        model = Integration
        fields = ["id", "name", "status", "connector", "settings", "mappings", "workflows"]

    def get_settings(self, obj) -> dict:
        return connector_settings.public_settings(obj)

    def get_mappings(self, obj) -> dict[str, dict[str, str]]:
        """The connector-specific JSON kinds, with the SKU and shipping-method mapping rows (two queries)."""
        skus = SkuMapping.objects.filter(integration=obj).order_by("external_sku")
        methods = ShippingMethodMapping.objects.filter(integration=obj).order_by("external_code")
        return {
            **{
                k: v
                for k, v in (obj.mappings or {}).items()
                if k not in connector_settings.MODEL_MAPPING_KINDS
            },
            "skus": dict(skus.values_list("external_sku", "product__sku")),
            "shipping_methods": dict(methods.values_list("external_code", "method__code")),
        }

    def get_workflows(self, obj) -> dict[str, bool]:
        from integrations.choices import Workflow

        return {flow.value: obj.workflow_enabled(flow) for flow in Workflow}


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField()


class ReportErrorSerializer(StrictInput):
    message = serializers.CharField(max_length=2000)


class EventSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    integration = serializers.SerializerMethodField()

    class Meta:
        model = IntegrationEvent
        fields = ["id", "kind", "message", "actor", "data", "integration", "created_at"]

    def get_integration(self, obj) -> dict | None:
        if obj.integration_id is None:
            return None
        return {"id": str(obj.integration_id), "name": obj.integration_name}


class WebhookSerializer(serializers.ModelSerializer):
    """A subscription as listed: never its secret."""

    id = serializers.CharField(read_only=True)
    events = serializers.ListField(source="event_types", child=EventTypeField(), read_only=True)

    class Meta:
        model = WebhookSubscription
        fields = ["id", "url", "events", "active"]


class WebhookCreatedSerializer(WebhookSerializer):
    """The POST answer: the only time the signing secret is shown."""

    secret = serializers.CharField(read_only=True, help_text='"whsec_" + base64 key; shown this once.')

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookInputSerializer(StrictInput):
    """The shape of a subscription request; event types, grants and the URL are checked by the service."""

    url = serializers.CharField(max_length=500)
    events = serializers.ListField(child=EventTypeField(max_length=60), allow_empty=False, max_length=20)


class RotatedSecretSerializer(WebhookCreatedSerializer):
    """A rotation's answer: the new secret, shown this once, and until when the previous one also signs."""

    previous_secret_valid_until = serializers.DateTimeField(
        source="previous_secret_until",
        read_only=True,
        allow_null=True,
        help_text="Until then every delivery carries a signature by the previous secret too; null: none.",
    )

    class Meta(WebhookCreatedSerializer.Meta):
        fields = [*WebhookCreatedSerializer.Meta.fields, "previous_secret_valid_until"]


class RotateSecretInputSerializer(StrictInput):
    overlap_hours = StrictIntegerField(
        required=False,
        min_value=0,
        help_text="Hours the previous secret keeps signing beside the new one (default "
        "WEBHOOK_SECRET_OVERLAP_HOURS, 24; at most WEBHOOK_SECRET_OVERLAP_MAX_HOURS, 168). 0: it stops now.",
    )

    def validate_overlap_hours(self, value):
        if value > settings.WEBHOOK_SECRET_OVERLAP_MAX_HOURS:
            raise serializers.ValidationError(
                f"At most {settings.WEBHOOK_SECRET_OVERLAP_MAX_HOURS} hours.", code="max_value"
            )
        return value

    def overlap(self) -> timedelta:
        hours = self.validated_data.get("overlap_hours", settings.WEBHOOK_SECRET_OVERLAP_HOURS)
        return timedelta(hours=hours)


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    """One HTTP attempt of a delivery and how the receiver answered it."""

    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "status_code", "duration_ms", "succeeded", "error"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    """A webhook delivery: one event owed to one subscription, its outcome so far and every attempt."""

    id = serializers.CharField(read_only=True)
    webhook = serializers.CharField(source="subscription_id", read_only=True)
    next_attempt_at = serializers.SerializerMethodField()
    attempts = DeliveryAttemptSerializer(source="attempt_log", many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "webhook",
            "event_id",
            "event_type",
            "sequence",
            "status",
            "created_at",
            "succeeded_at",
            "next_attempt_at",
            "last_attempt_at",
            "last_status_code",
            "last_duration_ms",
            "last_error",
            "attempts",
        ]
        read_only_fields = fields

    def get_next_attempt_at(self, obj) -> datetime | None:
        """When it is tried next; null once it succeeded or is dead."""
        return obj.next_attempt_at if obj.status in OWED else None


class DeliveryDetailSerializer(DeliverySerializer):
    """One delivery with the event body it sends (the same bytes on every attempt and replay)."""

    payload = serializers.SerializerMethodField()

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "payload"]

    def get_payload(self, obj) -> dict:
        """The signed body, decoded: {id, type, created_at, sequence, data}."""
        return json.loads(obj.body)


class WebhookEventSerializer(serializers.Serializer):
    """One event of the catch-up feed: exactly the JSON object its deliveries POST (read from the stored body)."""

    id = serializers.CharField(help_text="evt_…: the `webhook-id` of every delivery of this event.")
    type = serializers.CharField(help_text="The event type, e.g. order.updated.")
    created_at = serializers.DateTimeField(help_text="When the event happened (its transaction's time).")
    sequence = serializers.IntegerField(
        help_text="Increasing per integration and object in commit order: keep the highest seen per object "
        "and ignore an event with a lower one."
    )
    data = serializers.JSONField(help_text="The object as this integration's GET answered it at that moment.")
    changes = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Only on events that carry it (e.g. shipping_request.updated): the fields that changed.",
    )

    def to_representation(self, instance):
        return json.loads(instance.body)
