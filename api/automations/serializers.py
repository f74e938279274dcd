from rest_framework import serializers

from api.strict import StrictInput
from automations.models import SyncException


class SyncExceptionSerializer(serializers.ModelSerializer):
    """An exception as docs/connectors/contract.md shows it; its `data` stays internal (admin)."""

    id = serializers.CharField(read_only=True)

    class Meta:
        model = SyncException
        fields = [
            "id",
            "kind",
            "message",
            "entity_type",
            "entity_id",
            "status",
            "occurrences",
            "first_seen",
            "last_seen",
        ]
        read_only_fields = fields


class ReportExceptionSerializer(StrictInput):
    """What a connector reports; the entity (if any) is what a repeated report is counted against."""

    message = serializers.CharField(max_length=1000)
    entity_type = serializers.CharField(
        max_length=SyncException._meta.get_field("entity_type").max_length,
        required=False,
        allow_blank=True,
        default="",
        help_text="e.g. order, product, location.",
    )
    entity_id = serializers.CharField(
        max_length=SyncException._meta.get_field("entity_id").max_length,
        required=False,
        allow_blank=True,
        default="",
        help_text="The entity's id, as the connector knows it.",
    )
    data = serializers.DictField(required=False, default=dict, help_text="Any details, as a JSON object.")
