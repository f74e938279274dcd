"""The integration itself over the API (docs/connectors/contract.md, "The integration itself"): who it is, its
handshake, its reported errors, its audit trail, its webhook subscriptions and their deliveries."""

import django_filters
from django.db.models import Prefetch, Q
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from api.base import OPAQUE_ID, ApiView, ScopedViewSet, scoped, sender
from api.errors import ApiError
from api.filters import UpdatedSinceFilterSet, UtcIsoDateTimeFilter
from api.integrations.serializers import (
    DeliveryDetailSerializer,
    DeliverySerializer,
    EventSerializer,
    IntegrationSerializer,
    ReportErrorSerializer,
    RotatedSecretSerializer,
    RotateSecretInputSerializer,
    StatusSerializer,
    WebhookCreatedSerializer,
    WebhookInputSerializer,
    WebhookSerializer,
)
from api.permissions import NO_GRANT
from api.strict import no_body
from automations import exceptions
from core.sync_exceptions import ExceptionKind
from integrations import lifecycle
from integrations.choices import DeliveryStatus
from integrations.models import IntegrationEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from integrations.webhooks import replay as operator_actions
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

    @no_body(responses=StatusSerializer, operation_id="integration_connect")
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
    filterset_class = WebhookFilter  # docs/connectors/contract.md: every list accepts updated_since
    organization_field = "integration__organization"
    grants = {
        "list": "webhooks:read",
        "create": "webhooks:write",
        "destroy": "webhooks:write",
        "test": "webhooks:write",
        "rotate_secret": "webhooks:write",  # noqa: RUF100, S105 - a grant's name, not a password
    }

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
        'get 403 `missing_grant` with `details.key_kind = ["integration"]`. Event types: '
        + ", ".join(f"`{event}`" for event in subscriptions.EVENT_GRANTS)
        + ". `shipping_request.updated`, and the `order.updated` of a re-posted order, carry a top-level "
        "`changes` beside `data`: the order's fields that changed (e.g. `shipping_address.line1`).",
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

    @no_body(
        summary="Send a test event",
        description="Queues a signed `webhook.test` event for this subscription, sent at once through the "
        "normal delivery path (retries included): 202 with the delivery, which then appears in "
        "`GET /api/v1/webhooks/{id}/deliveries`. No body. A switched-off subscription: 409 `conflict` with "
        "`details.active = false`.",
        responses={202: DeliverySerializer},
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        subscription = self.get_object()
        subscriptions.check_active(subscription)
        delivery = operator_actions.send_test_event(subscription, actor=f"key:{request.auth.prefix}")
        return Response(delivery_answer(delivery), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Rotate the signing secret",
        description="A new `whsec_` secret, shown only in this answer. For `overlap_hours` (default 24) every "
        "delivery carries two signatures in `webhook-signature`, by the new secret and by the previous one, "
        "so the receiver may switch to the new secret whenever it likes within that time; after it, only "
        "the new one signs and the previous secret is forgotten. Rotating again during an overlap ends the "
        "older secret at once. Only an integration key may rotate: org and global keys get 403 "
        '`missing_grant` with `details.key_kind = ["integration"]`.',
        request=RotateSecretInputSerializer,
        responses=RotatedSecretSerializer,
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        subscription = self.get_object()
        sender(request, "Signing secrets")  # the new secret is for the receiver's owner only
        body = RotateSecretInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        subscriptions.rotate_secret(subscription, body.overlap(), actor=f"key:{request.auth.prefix}")
        return Response(RotatedSecretSerializer(subscription).data)


# --- deliveries ------------------------------------------------------------------------------------------


DELIVERIES = WebhookDelivery.objects.prefetch_related(
    Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number", "pk"))
)


def delivery_answer(delivery) -> dict:
    """A delivery as the deliveries list shows it, read again with its attempts (two queries)."""
    return DeliverySerializer(DELIVERIES.get(pk=delivery.pk)).data


class DeliveryFilter(UpdatedSinceFilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event_type = django_filters.CharFilter()

    class Meta:
        model = WebhookDelivery
        fields = ["status", "event_type"]


class DeliveryScope(ScopedViewSet):
    """Deliveries are their integration's (org keys: the organization's), like the subscriptions they serve."""

    queryset = DELIVERIES

    def integration_scope(self, integration):
        return Q(integration=integration)


@extend_schema_view(
    list=extend_schema(
        summary="A subscription's deliveries, newest first",
        description="Each delivery with every attempt made of it (answer code, duration, error). Filter by "
        "`status` (`pending`, `failed`: will retry at `next_attempt_at`, `succeeded`, `dead`) or "
        "`event_type`. Succeeded deliveries are kept WEBHOOK_RETENTION_DAYS (14 by default). Another "
        "integration's subscription: 404.",
        parameters=[OPAQUE_ID],
    )
)
class SubscriptionDeliveryViewSet(mixins.ListModelMixin, DeliveryScope):
    """`GET /webhooks/{id}/deliveries`: the deliveries of one of the key's subscriptions."""

    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter
    grants = {"list": "webhooks:read"}

    def filter_queryset(self, queryset):
        subscription = scoped(WebhookViewSet, self.request).filter(pk=self.kwargs["pk"]).first()
        if subscription is None:
            raise ApiError("not_found", "No such webhook subscription for this key.")
        return super().filter_queryset(queryset).filter(subscription=subscription)


@extend_schema_view(
    retrieve=extend_schema(
        summary="One webhook delivery",
        description="With its attempts and `payload`, the event body it sends (the same on every attempt).",
        parameters=[OPAQUE_ID],
    )
)
class WebhookDeliveryViewSet(mixins.RetrieveModelMixin, DeliveryScope):
    """One delivery of the key's subscriptions, and replaying it."""

    serializer_class = DeliveryDetailSerializer
    grants = {"retrieve": "webhooks:read", "replay": "webhooks:write"}

    @no_body(
        summary="Replay a delivery",
        description="Queues it again with a fresh retry schedule: the same `webhook-id` and body are sent "
        "again, signed anew (a receiver that already handled it recognises the id). 202 with the delivery. "
        "No body. One still `pending` (queued, not yet tried): 409 `conflict`; one whose subscription is "
        "switched off: 409 `conflict` with `details.active = false`.",
        responses={202: DeliverySerializer},
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        delivery = self.get_object()
        subscriptions.check_active(delivery.subscription)
        queued = operator_actions.replay(
            WebhookDelivery.objects.filter(pk=delivery.pk), actor=f"key:{request.auth.prefix}"
        )
        if not queued:
            raise ApiError(
                "conflict",
                "This delivery is already queued and has not been tried yet.",
                details={"status": DeliveryStatus.PENDING.value},
            )
        return Response(delivery_answer(delivery), status=status.HTTP_202_ACCEPTED)
