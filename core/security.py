"""
Response headers, request guards and the login lockout of the hardening issue (#7): one
Content-Security-Policy per kind of page (admin, JSON API, the OpenAPI docs), Permissions-Policy; NUL
characters in URLs and API bodies over the size limit refused before any view runs (chunked bodies too);
django-axes' lockout check as an authentication backend.
"""

import io

from axes.backends import AxesStandaloneBackend
from csp.middleware import CSPMiddleware, PolicyParts
from csp.utils import default_config
from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpResponseBadRequest, HttpResponseNotFound, JsonResponse

from core.errors import error_body

API_PREFIX = "/api/"
DOCS_PREFIX = "/api/v1/docs/"


class PolicyByPathMiddleware(CSPMiddleware):
    """django-csp's middleware with the policy picked by path: the admin's (settings.CONTENT_SECURITY_POLICY)
    by default, API_CONTENT_SECURITY_POLICY for JSON answers, DOCS_CONTENT_SECURITY_POLICY for Swagger UI."""

    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        if report_only or parts.config is not None:
            return parts  # a view's own @csp decorator wins
        path = request.path_info
        if path.startswith(DOCS_PREFIX):
            config = settings.DOCS_CONTENT_SECURITY_POLICY
        elif path.startswith(API_PREFIX):
            config = settings.API_CONTENT_SECURITY_POLICY
        else:
            return parts
        return PolicyParts(default_config(config["DIRECTIVES"]), parts.update, parts.replace, parts.nonce)


class PermissionsPolicyMiddleware:
    """Permissions-Policy on every answer (Django has no setting for it; a package for one header is more
    than it is worth)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.value = ", ".join(f"{feature}=()" for feature in settings.PERMISSIONS_POLICY_DENY)

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", self.value)
        return response


def _too_large():
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return JsonResponse(
        error_body("payload_too_large", f"The request body is over the limit of {limit} bytes."), status=413
    )


class RequestGuardMiddleware:
    """Refuses, before a view runs, what would otherwise end in a 500 or a parsed giant:

    * a NUL character in the path or the query string (PostgreSQL refuses NUL in text: an admin list filter
      or the API's request log would fail on it) — 404 for a path, 400 naming the parameter for a query;
    * an API body over DATA_UPLOAD_MAX_MEMORY_SIZE: 413 payload_too_large. Django checks that limit only
      when something reads `request.body`; DRF's parsers read the stream themselves, so without this a 1 GB
      JSON body would be parsed. A chunked body (no Content-Length) is read here up to the limit and handed
      on as an ordinary body: Django ignores such bodies otherwise, so a view would silently see none.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        api = request.path_info.startswith(API_PREFIX)
        if refused := self._nul(request, api):
            return refused
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None or not api:
            return self.get_response(request)
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            # Transfer-Encoding overrides Content-Length (RFC 9112 §6.3). Only a server that ends the
            # de-chunked input (gunicorn sets wsgi.input_terminated) can be read without blocking.
            if not request.META.get("wsgi.input_terminated"):
                return JsonResponse(
                    error_body(
                        "validation_error",
                        "Chunked request bodies are not supported here; send a Content-Length.",
                        {"Transfer-Encoding": ["Send the body with a Content-Length header."]},
                    ),
                    status=400,
                )
            body = request.META["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _too_large()
            request.META["CONTENT_LENGTH"] = str(len(body))
            request._stream = LimitedStream(io.BytesIO(body), len(body))
        else:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return _too_large()
        return self.get_response(request)

    @staticmethod
    def _nul(request, api):
        if "\x00" in request.path:
            if api:
                return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
            return HttpResponseNotFound("Not found.")
        bad = sorted({key for key, values in request.GET.lists() for v in [key, *values] if "\x00" in v})
        if not bad:
            return None
        if api:
            details = {key: ["NUL characters are not allowed."] for key in bad}
            return JsonResponse(error_body("validation_error", "Invalid query.", details), status=400)
        return HttpResponseBadRequest("NUL characters are not allowed in the query.")


class LoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout check, for logins that come with a request (the admin's login form always does).

    A lockout is per username and client address; `authenticate()` called without a request (a script,
    a test) has no address to count against, and axes' own backend would raise instead of authenticating.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
