"""OpenAPI: every operation documents the error shape for the statuses it can answer."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from api.permissions import required_grant


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
    "503": "service_unavailable (the database is briefly unreachable); Retry-After says when",
}


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is not None:
            # The grant a key needs (api/permissions.py), as an extension: OpenAPI 3.0 allows scopes on
            # OAuth2 schemes only, and the generated reference (scripts/api_reference.py) prints it.
            operation["x-required-grant"] = required_grant(self.view, self.view.request)
        return operation

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.DecimalField)
            and schema.get("type") == "string"
        ):
            # DRF reads a decimal sent as a JSON number too ("price": 12.5): say so, or the document calls
            # valid requests invalid (the schemathesis fuzz, tests/hardening, sends numbers as invalid data).
            outer = {
                k: schema.pop(k) for k in ("readOnly", "writeOnly", "nullable", "description") if k in schema
            }
            number = {"type": "number"}
            if field.min_value is not None:
                number["minimum"] = float(field.min_value)
            if field.max_value is not None:
                number["maximum"] = float(field.max_value)
            schema = {"anyOf": [schema, number], **outer}
        return schema

    def _get_filter_parameters(self):
        # An empty filter (?status=) filters nothing, as django-filter reads it: documented, so that clients
        # and the fuzz know an empty value is not an error. A plain string admits "" already.
        return [
            p if p.get("schema") == {"type": "string"} else {**p, "allowEmptyValue": True}
            for p in super()._get_filter_parameters()
        ]

    def _get_pagination_parameters(self):
        # ?limit= (empty) is the default page size (api/pagination.py); a bad cursor is a 400.
        return [
            {**p, "allowEmptyValue": True} if p["name"] == "limit" else p
            for p in super()._get_pagination_parameters()
        ]

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
