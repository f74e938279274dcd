"""`Authorization: Bearer sy_<prefix>_<secret>` for DRF, on top of tokens.authentication.authenticate."""

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from api import throttling
from api.errors import api_error
from tokens import authentication as key_authentication


def client_ip(request) -> str | None:
    if settings.SECURE_PROXY_SSL_HEADER and (forwarded := request.META.get("HTTP_X_FORWARDED_FOR")):
        # Behind our proxy the right-most entry is the address it saw; the rest is client-supplied.
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR")


class BearerKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        # A request refused here — no key, or one refused — is counted against its client address
        # (API_ANON_RATE_LIMIT) before it is answered, and answered 429 over that limit: the per-key limit
        # never sees it. A good key's requests count against the key alone.
        ip = client_ip(request)
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            throttling.throttle_address(request, ip)
            raise exceptions.NotAuthenticated()
        try:
            key = key_authentication.authenticate(raw.strip(), ip)
        except key_authentication.KeyRefused as refused:
            # A genuine key refused here (disabled integration, address outside its ranges) is still a
            # request made with it: the request log records it under its integration.
            request._api_key = refused.key
            throttling.throttle_address(request, ip)
            raise api_error(refused) from None
        request._api_key = key  # read by the request log even when a later check refuses the request
        # Org keys act as their owner; integration and global keys as no user.
        return (key.user if key.user_id else AnonymousUser(), key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.BearerKeyAuthentication"
    name = "bearerKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sy_<prefix>_<secret>",
            "description": "An integration, organization or global API key.",
        }
