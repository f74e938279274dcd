"""
Orders in from channels, shipping requests out to 3PLs, fulfillments back (API.md, Orders and Fulfillment).
Thin: the services hold the rules; the base viewset scopes every queryset to the key.
"""

from contextlib import contextmanager

from django.db.models import OuterRef, Prefetch, Q, Subquery
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from api.base import OPAQUE_ID, ScopedViewSet, sender
from api.errors import ApiError
from api.orders.filters import FulfillmentFilter, OrderFilter, ShippingRequestFilter
from api.orders.serializers import (
    CancelSerializer,
    FulfillmentInputSerializer,
    FulfillmentSerializer,
    OrderInputSerializer,
    OrderSerializer,
    ShippingRequestSerializer,
)
from integrations import services as integration_services
from integrations.choices import Workflow
from inventory import services as inventory_services
from orders import services
from orders.models import (
    Fulfillment,
    FulfillmentLine,
    Order,
    OrderLine,
    ShippingMethodMapping,
    ShippingRequest,
    ShippingRequestLine,
)

INTEGRATION_KEYS_ONLY = (
    " Only an integration key may call this: org and global keys have no integration to record as the "
    'sender, and get 403 `missing_grant` with `details.key_kind = ["integration"]`.'
)


@contextmanager
def service_errors():
    """The services' refusals in the API's codes: a state conflict is 409, a switched-off flow 403."""
    try:
        yield
    except services.OrderConflict as exc:
        raise ApiError("conflict", str(exc)) from None
    except integration_services.WorkflowDisabled as exc:
        raise ApiError("workflow_disabled", str(exc)) from None


def require_workflow(integration, flow):
    with service_errors():
        integration_services.require_workflow(integration, flow)


def scoped(viewset_class, request):
    """Another endpoint's rows as this key may see them, through that endpoint's own scope."""
    return viewset_class(request=request, format_kwarg=None, kwargs={}).get_queryset()


# --- orders -------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Orders this key may see, newest first"),
    retrieve=extend_schema(summary="One order", parameters=[OPAQUE_ID]),
)
class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Orders: those the key's integration sent, and those with a shipping request routed to it."""

    queryset = Order.objects.prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.order_by("line_number")),
        Prefetch("shipping_requests", queryset=ShippingRequest.objects.order_by("created_at", "pk")),
        Prefetch("fulfillments", queryset=Fulfillment.objects.order_by("created_at", "pk")),
    )
    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    grants = {
        "list": "orders:read",
        "retrieve": "orders:read",
        "create": "orders:write",
        "cancel": "orders:write",
        "release": "orders:write",
    }

    def integration_scope(self, integration):
        routed = ShippingRequest.objects.filter(fulfiller=integration).values("order_id")
        return Q(source=integration) | Q(pk__in=routed)

    def respond(self, order, status_code):
        order = self.get_queryset().get(pk=order.pk)  # fresh, with what the serializer prefetches
        return Response(self.get_serializer(order).data, status=status_code)

    @extend_schema(
        summary="Push an order (upsert by external_id)",
        description="201 when created, 200 when this integration already sent that `external_id` (the order "
        "is updated, never duplicated). Unmapped SKUs or shipping method put it on hold and raise an "
        "exception. 403 `workflow_disabled` while the integration's orders-in flow is off."
        + INTEGRATION_KEYS_ONLY,
        request=OrderInputSerializer,
        responses={
            201: OrderSerializer,
            200: OpenApiResponse(OrderSerializer, description="The order existed: updated."),
        },
    )
    def create(self, request):
        integration = sender(request, "Orders")
        require_workflow(integration, Workflow.ORDERS_IN)
        body = OrderInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with service_errors():
            order, created = services.ingest_order(integration, body.to_service())
        return self.respond(order, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        summary="Cancel an order",
        description="Releases its stock commitments and cancels its open shipping requests. "
        "409 `conflict` once anything of it has shipped.",
        request=CancelSerializer,
        responses=OrderSerializer,
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        order = self.get_object()
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with service_errors():
            services.cancel_order(order, reason=body.validated_data.get("reason", ""))
        return self.respond(order, status.HTTP_200_OK)

    @extend_schema(
        summary="Release a held order",
        description="Lifts every hold reason: the order becomes `ready` and is routed. 409 `conflict` when it "
        "is not on hold, or while one of its SKUs or its shipping method is still unmapped (map it first). "
        "An integration key releases only the orders its integration sent; org keys, any of the organization.",
        request=None,
        responses=OrderSerializer,
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        order = self.get_object()
        key = request.auth
        integration = key.scope.integration
        if integration is not None and order.source_id != integration.pk:
            # A 3PL reads the orders routed to it, but a hold is the channel's (or the organization's) call.
            raise ApiError("not_found", "No such order for this key.")
        with service_errors():
            services.release(order)
        return self.respond(order, status.HTTP_200_OK)


# --- shipping requests --------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Shipping requests routed to this 3PL, newest first"),
    retrieve=extend_schema(summary="One shipping request", parameters=[OPAQUE_ID]),
)
class ShippingRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """What a 3PL must ship, in its own shipping-method code and SKUs where they are mapped."""

    queryset = (
        ShippingRequest.objects.select_related("order", "shipping_method", "fulfiller")
        .annotate(
            fulfiller_method_code=Subquery(
                ShippingMethodMapping.objects.filter(
                    integration=OuterRef("fulfiller"), method=OuterRef("shipping_method")
                ).values("external_code")[:1]
            )
        )
        .prefetch_related(
            Prefetch("lines", queryset=ShippingRequestLine.objects.select_related("product").order_by("pk"))
        )
    )
    serializer_class = ShippingRequestSerializer
    filterset_class = ShippingRequestFilter
    grants = {
        "list": "shipping_requests:read",
        "retrieve": "shipping_requests:read",
        "acknowledge": "shipping_requests:write",
    }

    def integration_scope(self, integration):
        return Q(fulfiller=integration)

    @extend_schema(
        summary="Acknowledge a shipping request",
        description="pending → acknowledged (again: no change); 409 `conflict` from any other status.",
        request=None,
        responses=ShippingRequestSerializer,
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        shipping_request = self.get_object()
        with service_errors():
            services.acknowledge(shipping_request)
        shipping_request = self.get_queryset().get(pk=shipping_request.pk)
        return Response(self.get_serializer(shipping_request).data)


# --- fulfillments -------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Fulfillments this key may see, newest first"),
    retrieve=extend_schema(summary="One fulfillment", parameters=[OPAQUE_ID]),
)
class FulfillmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Shipments: a 3PL sees those it posted, a channel those of its orders (to mark them dispatched)."""

    queryset = Fulfillment.objects.select_related("order").prefetch_related(
        Prefetch(
            "lines",
            queryset=FulfillmentLine.objects.select_related("product", "request_line__order_line").order_by(
                "pk"
            ),
        )
    )
    serializer_class = FulfillmentSerializer
    filterset_class = FulfillmentFilter
    grants = {"list": "fulfillments:read", "retrieve": "fulfillments:read", "create": "fulfillments:write"}

    def integration_scope(self, integration):
        return Q(integration=integration) | Q(order__source=integration)

    @extend_schema(
        summary="Report a shipment of a shipping request",
        description="Lines name the 3PL's own SKUs (where mapped) or hub SKUs. 201 when recorded; 200 with "
        "the first one when this integration already sent that `external_id`. Shipping more than remains "
        "to ship: 400 with details per line. A shipping request not routed to this integration: 404. "
        "403 `workflow_disabled` while its fulfillments-in flow is off." + INTEGRATION_KEYS_ONLY,
        request=FulfillmentInputSerializer,
        responses={
            201: FulfillmentSerializer,
            200: OpenApiResponse(FulfillmentSerializer, description="Already recorded: the first one."),
        },
    )
    def create(self, request):
        integration = sender(request, "Fulfillments")
        require_workflow(integration, Workflow.FULFILLMENTS_IN)
        body = FulfillmentInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        shipping_request = (
            scoped(ShippingRequestViewSet, request).filter(pk=data.pop("shipping_request")).first()
        )
        if shipping_request is None:
            raise ApiError("not_found", "No such shipping request for this key.")
        lines = data.pop("lines")
        products = inventory_services.resolve_skus(
            integration.organization, integration, [line["sku"] for line in lines]
        )
        unknown = {
            f"lines.{index}.sku": ["Unknown SKU."]
            for index, line in enumerate(lines)
            if line["sku"] not in products
        }
        if unknown:
            raise ApiError("validation_error", "Invalid input.", details=unknown)
        data["lines"] = [(products[line["sku"]].pk, line["quantity"]) for line in lines]
        with service_errors():
            fulfillment, created = services.create_fulfillment(
                shipping_request, data, integration=integration
            )
        fulfillment = self.get_queryset().get(pk=fulfillment.pk)
        return Response(
            self.get_serializer(fulfillment).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
