"""Fields whose document says more than their type: read as DRF reads the base field, described as a set."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from integrations.choices import EventType


@extend_schema_field({"type": "string", "enum": EventType.values})
class EventTypeField(serializers.CharField):
    """
    A webhook event type (integrations.choices.EventType). Checked by the subscriptions service, whose answer
    names the unknown types and lists the known ones; the document lists them as an enum (EventTypeEnum).
    """
