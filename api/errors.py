"""
The one place errors become answers. Every error the API answers — DRF's own validation, parse, auth,
permission, throttle and 404s, the domain's refusals (core.errors.DomainError: each carries its code,
message and details), and unhandled exceptions — goes through `exception_handler` and comes out in the one
shape, {"error": {"code", "message", "details"}}, with the status the catalogue (core.errors.CODES) gives
its code.
"""

import logging
import sys

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import CODES, DomainError, error_body
from core.middleware import API_MESSAGE, RETRY_AFTER, database_unavailable, unavailable_response

logger = logging.getLogger("switchyard.api")


class ApiError(exceptions.APIException):
    """An API-level refusal, by catalogue code: ApiError("not_found", "No such order for this key.")."""

    def __init__(self, code, message, *, details=None, headers=None):
        if code not in CODES:
            raise ValueError(f"Unknown API error code {code!r}")
        self.status_code = CODES[code]
        self.code, self.message, self.details, self.headers = code, message, details or {}, headers or {}
        super().__init__(message, code)


def api_error(refused: DomainError) -> ApiError:
    """A domain error as an APIException, for the one hook DRF lets raise nothing else (authentication)."""
    return ApiError(refused.api_code, refused.message, details=refused.details)


def flatten(detail, prefix="") -> dict[str, list[str]]:
    """DRF's nested error detail → {"lines.0.sku": ["…"]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            for k, v in flatten(value, f"{prefix}.{name}" if prefix and name else prefix or name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "__all__"] = [str(item) for item in detail]
        else:
            for index, value in enumerate(detail):
                if value:
                    for k, v in flatten(value, f"{prefix}.{index}" if prefix else str(index)).items():
                        out.setdefault(k, []).extend(v)
    else:
        out[prefix or "__all__"] = [str(detail)]
    return out


def _translate(exc):
    """(status, code, message, details, headers) for any exception the API can meet."""
    if isinstance(exc, ApiError):
        return exc.status_code, exc.code, exc.message, exc.details, exc.headers
    if isinstance(exc, DomainError):  # before Django's ValidationError: a domain error may be one too
        return exc.status, exc.api_code, exc.message, exc.details, {}
    if database_unavailable(exc):  # an outage, not a bug: the client retries (core/middleware.py)
        logger.warning("Database unavailable: %s", exc)
        return 503, "service_unavailable", API_MESSAGE, {}, {"Retry-After": str(RETRY_AFTER)}
    if isinstance(exc, RequestDataTooBig):
        # Mostly answered earlier by core.security.RequestGuardMiddleware; this catches request.body reads.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return 413, "payload_too_large", f"The request body is over the limit of {limit} bytes.", {}, {}
    if isinstance(exc, Http404 | exceptions.NotFound):
        return 404, "not_found", "Not found.", {}, {}
    if isinstance(exc, DjangoPermissionDenied):
        return 403, "missing_grant", "Not allowed.", {}, {}
    if isinstance(exc, DjangoValidationError):
        details = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        return 400, "validation_error", "Invalid input.", details, {}
    if isinstance(exc, exceptions.ParseError):
        return 400, "validation_error", f"Malformed request body: {exc.detail}", {}, {}
    if isinstance(exc, exceptions.ValidationError):
        return 400, "validation_error", "Invalid input.", flatten(exc.detail), {}
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return 415, "unsupported_media_type", "Send JSON with Content-Type: application/json.", {}, {}
    if isinstance(exc, exceptions.MethodNotAllowed):
        return 405, "method_not_allowed", str(exc.detail), {}, {}
    if isinstance(exc, exceptions.NotAcceptable):
        return 406, "not_acceptable", "This API answers application/json only.", {}, {}
    if isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        return 429, "rate_limited", f"Too many requests; retry in {wait} s.", {}, {"Retry-After": str(wait)}
    if isinstance(exc, exceptions.NotAuthenticated):
        return 401, "invalid_key", "Authenticate with Authorization: Bearer <key>.", {}, {}
    if isinstance(exc, exceptions.AuthenticationFailed):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "invalid_key"
        return 401, code if code in CODES else "invalid_key", str(exc.detail), {}, {}
    if isinstance(exc, exceptions.PermissionDenied):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "missing_grant"
        details = getattr(exc, "details", {})
        return 403, code if code in CODES else "missing_grant", str(exc.detail), details, {}
    if isinstance(exc, exceptions.APIException):
        return (
            exc.status_code,
            "validation_error" if exc.status_code == 400 else "internal_error",
            str(exc.detail),
            {},
            {},
        )
    return None


def exception_handler(exc, context):
    translated = _translate(exc)
    if translated is None:
        # Unhandled: logged with its traceback here, never shown to the client.
        view = context.get("view")
        logger.exception("Unhandled API error in %s", type(view).__name__ if view else "?", exc_info=exc)
        translated = (500, "internal_error", "Something went wrong on our side; it has been logged.", {}, {})
    status_code, code, message, details, headers = translated
    response = Response(error_body(code, message, details), status=status_code, headers=headers)
    if status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@csrf_exempt  # as DRF's views are: API clients carry no CSRF cookie, and writes would get Django's 403 page
def not_found_view(request, *args, **kwargs):
    """Unknown routes under /api/v1/ answer in the API's shape, not Django's HTML page."""
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def handler404(request, exception=None):
    if request.path.startswith("/api/"):
        return not_found_view(request)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if database_unavailable(sys.exc_info()[1]):  # raised outside a view, e.g. saving the session
        return unavailable_response(request)
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("internal_error", "Something went wrong on our side; it has been logged."), status=500
        )
    from django.views.defaults import server_error

    return server_error(request)
