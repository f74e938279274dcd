"""Exceptions over the API (docs/connectors/contract.md, "Events, exceptions, webhooks"): read them, and a
connector reports its own."""

from django.db.models import Q
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins

from api.automations.filters import SyncExceptionFilter
from api.automations.serializers import ReportExceptionSerializer, SyncExceptionSerializer
from api.base import OPAQUE_ID, ScopedViewSet, UpsertMixin, sender
from api.pagination import RecentlyUpdatedPagination
from automations import exceptions
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind


@extend_schema_view(
    list=extend_schema(summary="Exceptions this key may see, most recently changed first"),
    retrieve=extend_schema(summary="One exception", parameters=[OPAQUE_ID]),
    create=extend_schema(
        summary="Report an exception",
        description="Opens a `connector_reported` exception for this integration: 201. A report with the "
        "same `entity_type` and `entity_id` while that exception is still open counts another occurrence "
        "on it instead (its `message` replaced, `occurrences` and `last_seen` updated): 200. Only an "
        "integration key may report: org and global keys get 403 `missing_grant` with "
        '`details.key_kind = ["integration"]`.',
        request=ReportExceptionSerializer,
        responses={
            201: SyncExceptionSerializer,
            200: OpenApiResponse(SyncExceptionSerializer, description="Counted on the open exception."),
        },
    ),
)
class SyncExceptionViewSet(UpsertMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """The key's integration's exceptions (org keys: the organization's, with those of no integration)."""

    queryset = SyncException.objects.all()
    serializer_class = SyncExceptionSerializer
    filterset_class = SyncExceptionFilter
    # Rows change in place (occurrences, status): newest change first, so ?updated_since= polling sees them.
    pagination_class = RecentlyUpdatedPagination
    upsert_body = ReportExceptionSerializer
    grants = {"list": "exceptions:read", "retrieve": "exceptions:read", "create": "exceptions:write"}

    def integration_scope(self, integration):
        return Q(integration=integration)

    def writer(self, request):
        return sender(request, "Exceptions")

    def upsert(self, integration, body):
        exception = exceptions.raise_exception(
            integration.organization_id,
            ExceptionKind.CONNECTOR_REPORTED,
            body.validated_data["message"],
            integration=integration,
            entity_type=body.validated_data["entity_type"],
            entity_id=body.validated_data["entity_id"],
            data=body.validated_data["data"],
        )
        # raise_exception creates with one occurrence and only ever adds to an existing row.
        return exception, exception.occurrences == 1
