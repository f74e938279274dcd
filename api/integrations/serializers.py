from rest_framework import serializers

from integrations import connector_settings
from integrations.models import Integration, IntegrationEvent, WebhookSubscription
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


class ReportErrorSerializer(serializers.Serializer):
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
    events = serializers.ListField(source="event_types", child=serializers.CharField(), read_only=True)

    class Meta:
        model = WebhookSubscription
        fields = ["id", "url", "events", "active"]


class WebhookCreatedSerializer(WebhookSerializer):
    """The POST answer: the only time the signing secret is shown."""

    secret = serializers.CharField(read_only=True, help_text='"whsec_" + base64 key; shown this once.')

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookInputSerializer(serializers.Serializer):
    """The shape of a subscription request; event types, grants and the URL are checked by the service."""

    url = serializers.CharField(max_length=500)
    events = serializers.ListField(
        child=serializers.CharField(max_length=60), allow_empty=False, max_length=20
    )
