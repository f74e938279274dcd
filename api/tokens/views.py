from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from api.base import ApiView
from api.permissions import NO_GRANT


class MeSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["integration", "org", "global"])
    organization = inline_serializer(
        "MeOrganization", {"id": serializers.CharField(), "name": serializers.CharField()}, allow_null=True
    )
    integration = inline_serializer(
        "MeIntegration",
        {
            "id": serializers.CharField(),
            "name": serializers.CharField(),
            "status": serializers.CharField(),
            "connector": serializers.CharField(),
        },
        allow_null=True,
    )
    grants = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)


class MeView(ApiView):
    """Who am I: the key's kind, organization, integration, grants and expiry."""

    grants = {"GET": NO_GRANT}

    @extend_schema(responses=MeSerializer, operation_id="me")
    def get(self, request):
        key = request.auth
        org, integration = key.scope.organization, key.scope.integration
        return Response(
            MeSerializer(
                {
                    "kind": key.kind,
                    "organization": {"id": str(org.pk), "name": org.name} if org else None,
                    "integration": {
                        "id": str(integration.pk),
                        "name": integration.name,
                        "status": integration.status,
                        "connector": integration.connector.key,
                    }
                    if integration
                    else None,
                    "grants": key.grants,
                    "expires_at": key.expires_at,
                }
            ).data
        )
