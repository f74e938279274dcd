"""
The base of every API view: bearer-key auth, grants, rate limit, idempotency, the request log — and, for
model endpoints, the tenancy chokepoint. `ScopedViewSet.get_queryset` cannot be overridden: a subclass
declares how an integration key owns rows (`integration_scope`) and the base applies it together with the
organization filter, so an object outside the key's reach is a 404 everywhere.
"""

import time
from types import SimpleNamespace

from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status, viewsets
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from api import idempotency, throttling
from api.authentication import client_ip
from api.errors import ApiError
from api.negotiation import StrictContentNegotiation
from api.strict import check_no_body, check_query
from integrations import audit
from integrations.choices import EventKind
from tokens.models import KeyScope

BODY_METHODS = {"POST", "PUT", "PATCH"}

# Ids are opaque strings to clients (docs/connectors/contract.md); the path parameter named as the schema
# names {pk}.
OPAQUE_ID = OpenApiParameter(
    "id" if api_settings.SCHEMA_COERCE_PATH_PK else "pk",
    str,
    OpenApiParameter.PATH,
    description="The object's id (opaque).",
)


def sender(request, what: str):
    """The key's integration, which a write records as its sender; org and global keys have none (403)."""
    integration = request.auth.scope.integration
    if integration is None:
        raise ApiError(
            "missing_grant",
            f"{what} are sent with an integration key; this key belongs to no integration.",
            details={"key_kind": ["integration"]},
        )
    return integration


class ApiMixin:
    grants: dict = {}
    content_negotiation_class = StrictContentNegotiation

    def initial(self, request, *args, **kwargs):
        request._started = time.monotonic()
        super().initial(request, *args, **kwargs)
        self.check_body_type(request)
        if request.method in BODY_METHODS:
            check_no_body(self.handler_for(request), request)
        if getattr(self, "action", None) == "list":
            check_query(request.query_params, self.query_parameters())
        idempotency.begin(request)

    def handler_for(self, request):
        """The method that will answer this request (a viewset's action, or the HTTP method's)."""
        return getattr(self, getattr(self, "action", None) or request.method.lower(), None)

    def query_parameters(self) -> set[str]:
        """What a list reads of the query: its filters, its pagination and the format override."""
        names = set()
        filterset = getattr(self, "filterset_class", None)
        if filterset is not None:
            names |= set(filterset.base_filters)
        paginator = getattr(self, "paginator", None)
        if paginator is not None:
            names |= {paginator.page_size_query_param, paginator.cursor_query_param}
        if api_settings.URL_FORMAT_OVERRIDE:
            names.add(api_settings.URL_FORMAT_OVERRIDE)
        return names

    def check_body_type(self, request):
        """A body must be declared JSON whether or not this view reads it (DRF asks only when it reads)."""
        has_body = request.method in BODY_METHODS and request.stream is not None
        if has_body and self.get_content_negotiator().select_parser(request, self.get_parsers()) is None:
            raise exceptions.UnsupportedMediaType(request.content_type)

    def check_permissions(self, request):
        # The rate limit comes before the grant check (DRF has it after), so that refused requests
        # count against it too and their answers carry the RateLimit-* headers.
        super().check_throttles(request)
        super().check_permissions(request)

    def check_throttles(self, request):
        """Done in check_permissions."""

    def handle_exception(self, exc):
        if isinstance(exc, idempotency.Replay):
            return exc.response
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        idempotency.finish(request, response)
        throttling.add_headers(request, response)
        record_request(request, response)
        return response


def record_request(request, response):
    """One IntegrationEvent per request made with a key: the only write a request adds."""
    key = getattr(request, "_api_key", None)
    if key is None or key.scope.is_global:
        return
    started = getattr(request, "_started", None)
    duration = round((time.monotonic() - started) * 1000, 1) if started else None
    audit.record_event(
        key.scope.integration,
        EventKind.API_REQUEST,
        f"{request.method} {request.path} → {response.status_code}",
        actor=f"key:{key.prefix}",
        organization=key.organization,
        data={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration,
            "key": key.prefix,
            "ip": client_ip(request),
            "request_id": getattr(request, "request_id", None),
        },
    )


class ApiView(ApiMixin, APIView):
    """A non-model endpoint. Declare `grants = {"GET": "x:read"}` (NO_GRANT for none)."""


class ScopedViewSet(ApiMixin, viewsets.GenericViewSet):
    """A model endpoint scoped to the key: integration → its own rows, org → the org's, global → all."""

    organization_field = "organization"
    lookup_value_converter = "id"  # api/urls.py: a malformed or out-of-range id in the path is a 404

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override get_queryset; declare integration_scope().")

    def integration_scope(self, integration) -> Q:
        """The rows an integration key owns, as a Q (docs/connectors/01-concepts.md, "Data ownership")."""
        raise NotImplementedError(f"{type(self).__name__} declares no integration_scope")

    def get_queryset(self):
        key = self.request.auth
        queryset = self.queryset.all()
        if key is None:
            return queryset.none()
        scope = key.scope
        if scope.is_global:
            return queryset
        queryset = queryset.filter(**{self.organization_field: key.organization_id})
        if scope.integration is not None:
            queryset = queryset.filter(self.integration_scope(scope.integration))
        return queryset

    def answer(self, instance, status_code=status.HTTP_200_OK):
        """`instance` as GET answers it after a write: read again in scope, with what the serializer prefetches."""
        instance = self.get_queryset().get(pk=instance.pk)
        return Response(self.get_serializer(instance).data, status=status_code)


def scoped(viewset_class, request):
    """Another endpoint's rows as this key may see them, through that endpoint's own scope."""
    return viewset_class(request=request, format_kwarg=None, kwargs={}).get_queryset()


class UpsertMixin:
    """
    The create-or-update POST (docs/connectors/contract.md: an upsert by the client's own id): 201 when the
    object was created, 200 when it existed. A viewset declares the rest: `upsert_body` (the request's
    serializer), `writer` (who writes, checked before the body is read, so a refused key hears so whatever it
    sent) and `upsert` (the one service call, returning the object and whether it was created). The answer is
    the object as GET answers it (`answer`).
    """

    upsert_body: type

    def writer(self, request):
        raise NotImplementedError(f"{type(self).__name__} declares no writer")

    def upsert(self, writer, body) -> tuple:
        """(object, created) from the service, given the writer and the validated body."""
        raise NotImplementedError(f"{type(self).__name__} declares no upsert")

    def create(self, request):
        writer = self.writer(request)
        body = self.upsert_body(data=request.data)
        body.is_valid(raise_exception=True)
        instance, created = self.upsert(writer, body)
        return self.answer(instance, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


# --- rendering for an integration outside a request -----------------------------------------------------


class IntegrationViewer:
    """
    Stands in for an integration key where the hub renders objects for an integration (webhook bodies): what
    the views read of a key, what it belongs to.
    """

    def __init__(self, integration):
        self.organization, self.organization_id = integration.organization, integration.organization_id
        self.scope = KeyScope(organization=integration.organization, integration=integration)


def viewset_for(viewset_class, integration, action="retrieve"):
    """A viewset instance scoped exactly as for a request made with `integration`'s key."""
    request = SimpleNamespace(auth=IntegrationViewer(integration), query_params={}, method="GET", GET={})
    return viewset_class(request=request, format_kwarg=None, kwargs={}, action=action)


def render_for(viewset_class, integration, ids) -> dict[str, dict]:
    """{id: the object as GET would answer it to this integration} for those of `ids` it may read."""
    view = viewset_for(viewset_class, integration)
    rows = list(view.get_queryset().filter(pk__in=list(ids)))
    return {item["id"]: item for item in view.get_serializer(rows, many=True).data}
