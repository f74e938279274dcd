"""
Catalog and stock endpoints (docs/connectors/contract.md, "Catalog and stock"). Tenancy is the base's: every
queryset here comes from a ScopedViewSet's get_queryset, including the locations POST /inventory may write to.
"""

from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.db.models.functions import Coalesce, Greatest
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from api.base import OPAQUE_ID, ScopedViewSet, UpsertMixin, scoped
from api.errors import ApiError
from api.inventory.filters import AvailabilityFilter, InventoryLevelFilter, LocationFilter, ProductFilter
from api.inventory.serializers import (
    AvailabilitySerializer,
    BulkProductsSerializer,
    BulkResultSerializer,
    InventoryLevelSerializer,
    LocationSerializer,
    ProductSerializer,
    ProductUpdateSerializer,
    StockPushResultSerializer,
    StockPushSerializer,
)
from api.pagination import BySkuPagination, RecentlyUpdatedPagination
from api.schema import ErrorSerializer
from api.strict import no_body
from integrations import workflows
from integrations.choices import ConnectorType, Workflow
from inventory import archive, figures, services
from inventory.models import InventoryLevel, Location, Product
from inventory.skus import normalize_sku
from orders.locations import deactivate_location

# docs/connectors/contract.md's limits: part of the contract, not tunables.
MAX_BULK_PRODUCTS = 1000
MAX_STOCK_ITEMS = 5000
CHANNEL_TYPES = {ConnectorType.CHANNEL, ConnectorType.MARKETPLACE}
TOO_LARGE = OpenApiResponse(ErrorSerializer, description="payload_too_large")


# --- helpers ------------------------------------------------------------------------------------------


def key_integration(request):
    return request.auth.scope.integration


def key_organization(request):
    """The organization a write goes to; a global key belongs to none (404, as /integration for org keys)."""
    if request.auth.scope.is_global:
        raise ApiError(
            "not_found", "A global key belongs to no organization; write with an org or integration key."
        )
    return request.auth.organization


def require_inbound(request, flow):
    """An integration key may write only while its switch for `flow` is on; org and global keys have none."""
    integration = key_integration(request)
    if integration is not None:
        workflows.require_workflow(integration, flow)
    return integration


def check_size(data, field, limit):
    """413 before validating anything: a body over its limit is refused whole
    (docs/connectors/contract.md)."""
    items = data.get(field) if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > limit:
        raise ApiError(
            "payload_too_large",
            f"At most {limit} {field} per request; this one has {len(items)}.",
            details={field: [f"At most {limit} entries."]},
        )


class PlainPathViewSet(ScopedViewSet):
    """A scoped endpoint at one plain path (urls.py: `View.as_view()`) rather than a router resource."""

    path_actions: dict[str, str] = {}

    @classmethod
    def as_view(cls, actions=None, **initkwargs):
        return super().as_view(actions or cls.path_actions, **initkwargs)


# --- products -----------------------------------------------------------------------------------------


@extend_schema_view(
    retrieve=extend_schema(parameters=[OPAQUE_ID]),
    create=extend_schema(
        request=ProductSerializer,
        responses={201: ProductSerializer, 200: ProductSerializer},
        description="Creates the product (201), or updates the one with this SKU (200, same id).",
    ),
)
class ProductViewSet(UpsertMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """
    The organization's catalog: every key of the organization reads it (docs/connectors/01-concepts.md, "Data
    ownership"); writes need products:write and, for an integration key, its "products in" switch. POST
    upserts by SKU.
    """

    queryset = Product.objects.all()
    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    upsert_body = ProductSerializer
    grants = {
        "list": "products:read",
        "retrieve": "products:read",
        "create": "products:write",
        "partial_update": "products:write",
        "destroy": "products:write",
        "bulk": "products:write",
    }

    def integration_scope(self, integration):
        return Q()  # the whole catalog of the key's organization

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset  # by id an archived product stays readable, and archiving it again is a 409
        return super().filter_queryset(queryset)  # ProductFilter leaves archived products out unless asked

    def writer(self, request):
        return require_inbound(request, Workflow.PRODUCTS_IN), key_organization(request)

    def upsert(self, writer, body):
        integration, organization = writer
        created, _, (product,) = services.upsert_products(
            organization, [body.validated_data], integration=integration
        )
        return product, created == 1

    @extend_schema(request=ProductUpdateSerializer, responses=ProductSerializer, parameters=[OPAQUE_ID])
    def partial_update(self, request, pk=None):
        product = self.get_object()  # first: another tenant's product is a 404 whatever the switches say
        integration = require_inbound(request, Workflow.PRODUCTS_IN)
        body = ProductUpdateSerializer(product, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        _, _, (product,) = services.upsert_products(
            product.organization, [{**body.validated_data, "sku": product.sku}], integration=integration
        )
        return Response(ProductSerializer(product).data)

    @no_body(
        responses={200: ProductSerializer, 409: OpenApiResponse(ErrorSerializer, description="conflict")},
        parameters=[OPAQUE_ID],
        description=(
            "Archives the product: its SKU and history are kept and it stays readable by id, but it sells "
            "nowhere (availability 0 on every channel), stock pushes for it are refused and lists leave it "
            "out unless `include_archived=true`; product.deleted is sent. Archiving it again is 409 conflict."
        ),
    )
    def destroy(self, request, pk=None):
        product = self.get_object()  # first: another tenant's product is a 404 whatever the switches say
        integration = require_inbound(request, Workflow.PRODUCTS_IN)
        return Response(ProductSerializer(archive.archive_product(product, integration=integration)).data)

    @extend_schema(
        request=BulkProductsSerializer,
        responses={200: BulkResultSerializer, 413: TOO_LARGE},
        description=f"Upserts up to {MAX_BULK_PRODUCTS} products by SKU; more answers 413.",
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        integration = require_inbound(request, Workflow.PRODUCTS_IN)
        organization = key_organization(request)
        check_size(request.data, "products", MAX_BULK_PRODUCTS)
        body = BulkProductsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        products = body.validated_data["products"]

        def fields_of(sku):
            return [f"products.{i}.sku" for i, p in enumerate(products) if normalize_sku(p["sku"]) == sku]

        try:
            created, updated, _ = services.upsert_products(organization, products, integration=integration)
        except services.LookalikeSkus as refused:
            raise refused.at(fields_of) from None  # the same refusal, naming the entries of this body
        return Response({"created": created, "updated": updated})


# --- locations ----------------------------------------------------------------------------------------


@extend_schema_view(retrieve=extend_schema(parameters=[OPAQUE_ID]))
class LocationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """
    Where stock sits. An integration key sees (and may push stock to) the locations it manages — those it
    created; org and global keys see all of the organization's. the data-ownership table of
    docs/connectors/01-concepts.md leaves locations out: they follow "inventory levels — at locations it
    manages".
    """

    queryset = Location.objects.all()
    serializer_class = LocationSerializer
    filterset_class = LocationFilter
    grants = {
        "list": "locations:read",
        "retrieve": "locations:read",
        "create": "locations:write",
        "destroy": "locations:write",
    }

    def integration_scope(self, integration):
        return Q(managed_by=integration)

    @extend_schema(request=LocationSerializer, responses={201: LocationSerializer})
    def create(self, request):
        organization = key_organization(request)
        body = LocationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                location = body.save(organization=organization, managed_by=key_integration(request))
        except IntegrityError:  # the one constraint a valid body can break: the name, unique per organization
            raise ApiError(
                "validation_error",
                "Invalid input.",
                details={"name": ["The organization already has a location with this name."]},
            ) from None
        return Response(LocationSerializer(location).data, status=201)

    @no_body(
        responses={200: LocationSerializer, 409: OpenApiResponse(ErrorSerializer, description="conflict")},
        parameters=[OPAQUE_ID],
        description=(
            "Deactivates the location (`active: false`): its stock no longer counts towards what channels may "
            "sell and orders are no longer routed there; its stock levels are kept. 409 conflict when it is "
            "inactive already, or while shipping requests there are open (`details.shipping_requests`)."
        ),
    )
    def destroy(self, request, pk=None):
        location = self.get_object()  # another tenant's, or another integration's, location is a 404
        return Response(LocationSerializer(deactivate_location(location)).data)


# --- stock --------------------------------------------------------------------------------------------


class InventoryView(PlainPathViewSet):
    """
    GET: stock levels at the locations the key reaches (an integration key: those it manages), in its own
    SKUs where mapped. POST: absolute on-hand counts at one of those locations; unknown SKUs are reported.
    """

    queryset = InventoryLevel.objects.select_related("product")
    organization_field = "location__organization"
    serializer_class = InventoryLevelSerializer
    filterset_class = InventoryLevelFilter
    pagination_class = RecentlyUpdatedPagination
    grants = {"list": "inventory:read", "create": "inventory:write"}
    path_actions = {"get": "list", "post": "create"}

    def integration_scope(self, integration):
        return Q(location__managed_by=integration)

    @extend_schema(operation_id="inventory_list", responses=InventoryLevelSerializer(many=True))
    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        external = services.external_skus(key_integration(request), [level.product_id for level in page])
        data = InventoryLevelSerializer(page, many=True, context={"external_skus": external}).data
        return self.get_paginated_response(data)

    @extend_schema(
        operation_id="inventory_set",
        request=StockPushSerializer,
        responses={200: StockPushResultSerializer, 413: TOO_LARGE},
        description=(
            f"Sets absolute on-hand counts (up to {MAX_STOCK_ITEMS} items; more answers 413). Known SKUs "
            "are applied in one transaction; unknown ones are listed in `errors` and raised as one exception."
        ),
    )
    def create(self, request):
        integration = require_inbound(request, Workflow.INVENTORY_IN)
        check_size(request.data, "items", MAX_STOCK_ITEMS)
        body = StockPushSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            location = (
                scoped(LocationViewSet, request)
                .select_related("organization")
                .get(pk=body.validated_data["location"])
            )
        except Location.DoesNotExist:
            raise ApiError("not_found", "No such location for this key.") from None
        updated, errors = services.set_stock(location, body.validated_data["items"], integration=integration)
        return Response({"updated": updated, "errors": errors})


class AvailabilityView(PlainPathViewSet):
    """
    What this sales channel may sell, per SKU of the organization's catalog, after buffers; in the channel's
    own SKUs where mapped. Channel and marketplace keys only: any other key answers 404.
    """

    queryset = Product.objects.all()
    serializer_class = AvailabilitySerializer
    filterset_class = AvailabilityFilter
    pagination_class = BySkuPagination
    grants = {"list": "inventory:read"}
    path_actions = {"get": "list"}

    def integration_scope(self, integration):
        return Q()  # the catalog; what the channel may sell of it is computed per page below

    def channel(self):
        integration = key_integration(self.request)
        if integration is None or integration.connector.type not in CHANNEL_TYPES:
            raise ApiError("not_found", "Availability is answered to sales channel and marketplace keys.")
        return integration

    @extend_schema(operation_id="availability_list", responses=AvailabilitySerializer(many=True))
    def list(self, request):
        channel = self.channel()
        at_locations = Q(levels__location__in=figures.channel_locations(channel))
        queryset = self.get_queryset().annotate(
            availability_updated_at=Greatest(
                "updated_at", Coalesce(Max("levels__updated_at", filter=at_locations), "updated_at")
            )
        )
        page = self.paginate_queryset(self.filter_queryset(queryset))
        ids = [product.pk for product in page]
        available = figures.availability(channel, ids)
        external = services.external_skus(channel, ids)
        rows = [
            {
                "sku": external.get(product.pk, product.sku),
                "available": available.get(product.pk, 0),
                "updated_at": product.availability_updated_at,
            }
            for product in page
        ]
        return self.get_paginated_response(AvailabilitySerializer(rows, many=True).data)
