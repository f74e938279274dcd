"""
`GET /api/v1/webhook-events`, the catch-up feed (issue 16, item 7): the events the key's integration was told
of (or would have been, subscribed), oldest first, with the same id, type, sequence, time and body as their
deliveries. Webhooks are for speed, the feed for completeness: a receiver that was down resumes `after` the
last event it handled. Which rows it shows, in what order, is integrations.webhooks.feed's.
"""

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins

from api.base import ScopedViewSet
from api.filters import IdFilter, UtcIsoDateTimeFilter
from api.integrations.serializers import WebhookEventSerializer
from api.pagination import CursorPagination
from core.ids import MAX_ID, parse_count
from integrations.models import WebhookEvent
from integrations.webhooks import feed
from integrations.webhooks.subscriptions import EVENT_GRANTS

EVENT_ID_MAX = 40


class FeedPagination(CursorPagination):
    """Oldest first, in the feed's order (integrations.webhooks.feed): a page never gains a row behind it."""

    ordering = ("position", "pk")


class EventTypesField(forms.CharField):
    """A comma-separated list of known event types."""

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return []
        names = [name.strip() for name in value.split(",")]
        unknown = sorted({name for name in names if name not in EVENT_GRANTS})
        if unknown:
            # The names go in as params: a "%" in one must not be read as a format (DRF formats the message).
            raise ValidationError(
                "Unknown event type(s): %(types)s.", code="invalid", params={"types": ", ".join(unknown)}
            )
        return names


class SequenceField(forms.Field):
    """A sequence number as the feed reads it: a whole number of at least 1 (past bigint: the largest)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        number = parse_count(value, MAX_ID)
        if number is None:
            raise ValidationError("A whole number of at least 1.", code="invalid")
        return number


class SequenceFilter(django_filters.NumberFilter):
    field_class = SequenceField


class EventIdField(forms.CharField):
    def to_python(self, value):
        value = super().to_python(value)
        if value and (len(value) > EVENT_ID_MAX or not value.startswith("evt_") or not value.isascii()):
            raise ValidationError("Not an event id (evt_…).", code="invalid")
        return value


class EventTypesFilter(django_filters.CharFilter):
    field_class = EventTypesField


class EventIdFilter(django_filters.CharFilter):
    field_class = EventIdField


class WebhookEventFilter(django_filters.FilterSet):
    type = EventTypesFilter(
        method="filter_types",
        help_text="Only these event types (comma-separated), e.g. order.created,order.updated.",
    )
    after = EventIdFilter(
        method="filter_after",
        help_text="Only the events after this one (its evt_… id): resume where the last run stopped. An id this "
        "key does not see (unknown, another integration's, or pruned after WEBHOOK_EVENT_RETENTION_DAYS) is 400 "
        "`validation_error`: start again from `updated_since`.",
    )
    object_type = django_filters.ChoiceFilter(
        choices=[
            (t, t)
            for t in (
                "order",
                "shipping_request",
                "fulfillment",
                "product",
                "inventory_level",
                "channel_inventory",
                "integration",
            )
        ],
        help_text="Only events about objects of this type.",
    )
    object_id = django_filters.CharFilter(
        max_length=EVENT_ID_MAX, help_text="With `object_type`: only events about this object."
    )
    after_sequence = SequenceFilter(
        field_name="sequence",
        lookup_expr="gt",
        help_text="With `object_type` and `object_id`: only that object's events numbered above this (the "
        "highest `sequence` you hold for it).",
    )
    integration = IdFilter(
        field_name="integration_id",
        help_text="Org and global keys: one integration's events (as it was told).",
    )
    updated_since = UtcIsoDateTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        help_text="Only events that happened at or after this time.",
    )

    class Meta:
        model = WebhookEvent
        fields: list[str] = []

    def filter_types(self, queryset, name, value):
        return queryset.filter(type__in=value) if value else queryset

    def filter_after(self, queryset, name, value):
        if not value:
            return queryset
        # Looked up among all the key's events, whatever the other filters: a reader may resume with others.
        event = self.queryset.filter(event_id=value).only("position", "pk").first()
        if event is None:
            raise ValidationError(
                {
                    "after": [
                        "No such event for this key (or it is past the retention): resume from updated_since."
                    ]
                }
            )
        return feed.after(queryset, event)

    def is_valid(self):
        """after_sequence only with an object (numbers are per object), object_id only with its type."""
        if not super().is_valid():
            return False
        data = self.form.cleaned_data
        object_named = bool(data.get("object_type") and data.get("object_id"))
        if data.get("after_sequence") is not None and not object_named:
            self.form.add_error("after_sequence", "Give object_type and object_id with after_sequence.")
        if data.get("object_id") and not data.get("object_type"):
            self.form.add_error("object_id", "Give object_type with object_id.")
        return not self.form.errors


@extend_schema_view(
    list=extend_schema(
        summary="The catch-up feed: events told to this integration, oldest first",
        description="Each item is exactly the JSON object a delivery of the event POSTs — the same `id` "
        "(`webhook-id`), `type`, `created_at`, `sequence` and `data` — whether or not any subscription "
        "received it: every event the integration is entitled to (its workflow switch on, its key's read grant, "
        "the object in its scope) is listed, for WEBHOOK_EVENT_RETENTION_DAYS (30 by default, at least 7). "
        "Resume with `after=<the last id handled>` and follow `next` until it is null. An event appears once "
        "every transaction that began before it has ended, so a later one never appears behind a page already "
        "read. Only the types this key holds the read grant of are listed. Integration keys see their own "
        "integration's events; org keys their organization's (each as its integration was told; filter with "
        "`integration`).",
    )
)
class WebhookEventViewSet(mixins.ListModelMixin, ScopedViewSet):
    """The key's integration's recorded events (org keys: the organization's)."""

    queryset = WebhookEvent.objects.only("id", "position", "body")
    serializer_class = WebhookEventSerializer
    filterset_class = WebhookEventFilter
    pagination_class = FeedPagination
    grants = {"list": "webhooks:read"}

    def integration_scope(self, integration):
        return Q(integration=integration)

    def filter_queryset(self, queryset):
        held = self.request.auth.grants
        readable = [name for name, grant in EVENT_GRANTS.items() if grant is None or grant in held]
        queryset = feed.kept(queryset.filter(type__in=readable))
        return feed.settled(super().filter_queryset(queryset))
