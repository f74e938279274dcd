"""The integration itself over the API (API.md, Integrations): who it is, its handshake, its reported errors, its audit trail and webhook subscriptions."""

import django_filters
from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.response import Response

from api.base import ApiView, ScopedViewSet, sender
from api.errors import ApiError
from api.filters import UpdatedSinceFilterSet, UtcIsoDateTimeFilter
from api.integrations.serializers import (
    EventSerializer,
    IntegrationSerializer,
    ReportErrorSerializer,
    StatusSerializer,
    WebhookCreatedSerializer,
    WebhookInputSerializer,
    WebhookSerializer,
)
from api.permissions import NO_GRANT
from automations import exceptions
from core.sync_exceptions import ExceptionKind
from integrations import lifecycle
from integrations.models import IntegrationEvent, WebhookSubscription
from integrations.webhooks import subscriptions


def own_integration(request):
    """The key's integration; org and global keys have none (404)."""
    integration = request.auth.scope.integration
    if integration is None:
        raise ApiError("not_found", "This endpoint is for integration keys.")
    return integration


class IntegrationView(ApiView):
    """The integration itself: settings (without secrets), mappings and workflow switches."""

    grants = {"GET": NO_GRANT}

    @extend_schema(responses=IntegrationSerializer, operation_id="integration_retrieve")
    def get(self, request):
        return Response(IntegrationSerializer(own_integration(request)).data)


class ConnectView(ApiView):
    """The handshake: connecting (or error) → connected."""

    grants = {"POST": NO_GRANT}

    @extend_schema(request=None, responses=StatusSerializer, operation_id="integration_connect")
    def post(self, request):
        integration = own_integration(request)
        lifecycle.handshake(integration, actor=f"key:{request.auth.prefix}")
        return Response({"status": integration.status})


class ReportErrorView(ApiView):
    """The connector reports that it cannot work: the integration moves to error and an exception is raised."""

    # Reporting raises an exception record (and may take the integration out of service), so it needs the
    # exceptions:write grant every connector's recommended grants hold, not merely any key of the integration.
    grants = {"POST": "exceptions:write"}

    @extend_schema(
        request=ReportErrorSerializer, responses=StatusSerializer, operation_id="integration_error"
    )
    def post(self, request):
        integration = own_integration(request)
        body = ReportErrorSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        actor = f"key:{request.auth.prefix}"
        message = body.validated_data["message"]
        lifecycle.report_error(integration, message, actor=actor)
        exceptions.raise_exception(
            integration.organization_id,
            ExceptionKind.CONNECTOR_REPORTED,
            f"{integration.name} reported: {message}",
            integration=integration,
            entity_type="integration",
            entity_id=integration.pk,
        )
        return Response({"status": integration.status})


class EventFilter(UpdatedSinceFilterSet):
    updated_since = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Only events at or after this time."
    )
    kind = django_filters.CharFilter()

    class Meta:
        model = IntegrationEvent
        fields = ["kind"]


class EventViewSet(mixins.ListModelMixin, ScopedViewSet):
    """The audit trail of the key's integration (org keys: the organization's)."""

    queryset = IntegrationEvent.objects.all()
    serializer_class = EventSerializer
    filterset_class = EventFilter
    grants = {"list": "events:read"}

    def integration_scope(self, integration):
        return Q(integration=integration)


class WebhookFilter(UpdatedSinceFilterSet):
    class Meta:
        model = WebhookSubscription
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(summary="Webhook subscriptions this key may see"),
    destroy=extend_schema(
        summary="Delete a webhook subscription",
        parameters=[
            OpenApiParameter("id", str, OpenApiParameter.PATH, description="The object's id (opaque).")
        ],
    ),
)
class WebhookViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, ScopedViewSet):
    """The key's integration's webhook subscriptions (org keys: the organization's)."""

    queryset = WebhookSubscription.objects.all()
    serializer_class = WebhookSerializer
    filterset_class = WebhookFilter  # API.md: every list accepts updated_since
    organization_field = "integration__organization"
    grants = {"list": "webhooks:read", "create": "webhooks:write", "destroy": "webhooks:write"}

    def integration_scope(self, integration):
        return Q(integration=integration)

    @extend_schema(
        summary="Subscribe to events",
        description="201 with the signing `secret`, shown only in this answer. Each event type needs its "
        "read grant (e.g. `order.*` → `orders:read`), else 403 `missing_grant` with `details.required`. "
        "The URL must be http(s) and its host resolve only to public (global) addresses (400 "
        "`validation_error`, `details.url`). A URL gets each event type once: naming one it already gets is "
        "409 `conflict` with `details.url` and `details.events`; an integration holds at most "
        "WEBHOOK_MAX_SUBSCRIPTIONS (20 by default), and one more is 409 `conflict` with `details.limit`. "
        "Only an integration key may subscribe: org and global keys "
        'get 403 `missing_grant` with `details.key_kind = ["integration"]`.',
        request=WebhookInputSerializer,
        responses={201: WebhookCreatedSerializer},
    )
    def create(self, request):
        integration = sender(request, "Webhook subscriptions")
        body = WebhookInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        subscription, secret = subscriptions.subscribe(
            integration, body.validated_data["url"], body.validated_data["events"], request.auth
        )
        subscription.secret = secret
        return Response(WebhookCreatedSerializer(subscription).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        subscriptions.unsubscribe(instance, actor=f"key:{self.request.auth.prefix}")
