"""
OpenAPI: every operation documents the error shape for the statuses it can answer; `postprocess` adds what
every operation shares (the Idempotency-Key of unsafe methods, the X-Request-Id of every answer) and the
headers of the webhooks (api/webhook_schema.py).
"""

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
    request_id = serializers.CharField(
        required=False, help_text="The answer's X-Request-Id: quote it to support."
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
        if direction == "request":
            return (
                responses  # a webhook's (api/webhook_schema.py): the receiver's answer, not the API's errors
            )
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


UNSAFE = ("post", "put", "patch", "delete")
REQUEST_ID_HEADER = {
    "description": "This request's id (the one sent, when well formed: 8-128 of A-Z a-z 0-9 . _ : -, "
    "else a new req_…): also `request_id` in an error body and in the integration's request log.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$"},
}

# The Standard Webhooks headers of every delivery (core/signing.py).
WEBHOOK_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": "^evt_[0-9a-f]{24}$"},
        "description": "The event's id (the envelope's `id`); the same on every retry: deduplicate on it.",
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "When this attempt was signed, unix seconds; refuse one more than five minutes away.",
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "Space-separated `v1,<base64 HMAC-SHA256>` of `<webhook-id>.<webhook-timestamp>.<body>`, "
        "keyed with the subscription's secret (two while a rotated secret overlaps): one must match.",
    },
]


def idempotency_parameter(method: str) -> dict:
    if method == "post":
        return {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "Any unique string (a UUID): a retry with the same key and body replays the first "
            "answer for 24 hours instead of acting twice; a different body answers 422 idempotency_conflict, "
            "one still running 409 idempotency_in_progress.",
        }
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": f"Accepted on every write; {method.upper()} is idempotent by itself (a repeat makes "
        "the same change), so the key is not recorded.",
    }


def postprocess(result, generator, request, public):
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: the parameters and headers every operation shares."""
    result.setdefault("components", {}).setdefault("headers", {})["X-Request-Id"] = REQUEST_ID_HEADER
    reference = {"$ref": "#/components/headers/X-Request-Id"}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method in UNSAFE:
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in parameters):
                    parameters.append(idempotency_parameter(method))
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {})["X-Request-Id"] = reference
    for operations in result.get("webhooks", {}).values():
        for operation in operations.values():
            operation["parameters"] = [dict(header) for header in WEBHOOK_HEADERS]
    return result
