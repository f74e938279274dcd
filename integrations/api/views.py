import django_filters
from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.response import Response

from automations import services as exceptions
from automations.choices import ExceptionKind
from config.api.base import ApiView, ScopedViewSet
from config.api.errors import ApiError
from config.api.filters import UpdatedSinceFilterSet
from config.api.permissions import NO_GRANT

from .. import services
from ..models import IntegrationEvent
from .serializers import EventSerializer, IntegrationSerializer, ReportErrorSerializer, StatusSerializer


def own_integration(request):
    """The key's integration; org and global keys have none (404)."""
    if request.auth.integration_id is None:
        raise ApiError("not_found", "This endpoint is for integration keys.")
    return request.auth.integration


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
        try:
            services.handshake(integration, actor=f"key:{request.auth.prefix}")
        except services.TransitionRefused as exc:
            raise ApiError("conflict", exc.messages[0]) from None
        return Response({"status": integration.status})


class ReportErrorView(ApiView):
    """The connector reports that it cannot work: the integration moves to error."""

    grants = {"POST": NO_GRANT}

    @extend_schema(
        request=ReportErrorSerializer, responses=StatusSerializer, operation_id="integration_error"
    )
    def post(self, request):
        integration = own_integration(request)
        body = ReportErrorSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        actor = f"key:{request.auth.prefix}"
        message = body.validated_data["message"]
        try:
            services.report_error(integration, message, actor=actor)
        except services.TransitionRefused as exc:
            raise ApiError("conflict", exc.messages[0]) from None
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
    updated_since = django_filters.IsoDateTimeFilter(
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
