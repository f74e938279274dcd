"""OpenAPI: every operation documents the error shape for the statuses it can answer."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Stable machine-readable code, e.g. validation_error, missing_grant."
    )
    message = serializers.CharField()
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Per field, e.g. {"lines.0.sku": ["unknown SKU"]}; for missing_grant {"required": [grant]}.',
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERRORS = {
    "400": "validation_error",
    "401": "invalid_key, key_expired or key_revoked",
    "403": "missing_grant, integration_disabled, workflow_disabled or ip_not_allowed",
    "404": "not_found (also for other tenants' objects)",
    "429": "rate_limited; Retry-After says when",
}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status_code, description in ERRORS.items():
            if status_code not in responses:
                responses[status_code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), status_code
                )
        if self.method == "POST":
            for status_code, description in {
                "409": "idempotency_in_progress or conflict",
                "422": "idempotency_conflict",
            }.items():
                responses.setdefault(
                    status_code,
                    self._get_response_for_code(
                        OpenApiResponse(ErrorSerializer, description=description), status_code
                    ),
                )
        return responses
