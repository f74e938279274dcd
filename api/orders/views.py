"""
Orders in from channels, shipping requests out to 3PLs, fulfillments back (docs/connectors/contract.md,
"Orders", "Fulfillment"). Thin: the services hold the rules; the base viewset scopes every queryset to the key.
"""

from django.db.models import OuterRef, Prefetch, Q, Subquery
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action

from api.base import OPAQUE_ID, ScopedViewSet, UpsertMixin, scoped, sender
from api.errors import ApiError
from api.orders.filters import FulfillmentFilter, OrderFilter, ShippingRequestFilter
from api.orders.serializers import (
    CancelSerializer,
    FulfillmentCancelSerializer,
    FulfillmentInputSerializer,
    FulfillmentSerializer,
    FulfillmentUpdateSerializer,
    OrderInputSerializer,
    OrderSerializer,
    RejectSerializer,
    ShippingRequestSerializer,
)
from api.schema import ErrorSerializer
from api.strict import no_body
from integrations import workflows
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


def inbound_sender(request, what: str, flow):
    """The key's integration, which must have its switch for `flow` on (else 403 workflow_disabled)."""
    integration = sender(request, what)
    workflows.require_workflow(integration, flow)
    return integration


# --- orders -------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Orders this key may see, newest first"),
    retrieve=extend_schema(summary="One order", parameters=[OPAQUE_ID]),
    create=extend_schema(
        summary="Push an order (upsert by external_id)",
        description="201 when created, 200 when this integration already sent that `external_id` (the order "
        "is updated, never duplicated). Unmapped SKUs or shipping method put it on hold and raise an "
        "exception. Once routed, a new `shipping_address`, `customer` or `shipping_method` is copied onto "
        "the order's open shipping requests and their 3PLs get `shipping_request.updated` (with `changes`); "
        "changed lines, an unmapped new method, or such a change once the order is fulfilled or canceled: "
        "409 `conflict`, changing nothing. 403 `workflow_disabled` while the integration's orders-in flow is "
        "off." + INTEGRATION_KEYS_ONLY,
        request=OrderInputSerializer,
        responses={
            201: OrderSerializer,
            200: OpenApiResponse(OrderSerializer, description="The order existed: updated."),
        },
    ),
)
class OrderViewSet(UpsertMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Orders: those the key's integration sent, and those with a shipping request routed to it."""

    queryset = Order.objects.prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.order_by("line_number")),
        Prefetch("shipping_requests", queryset=ShippingRequest.objects.order_by("created_at", "pk")),
        Prefetch("fulfillments", queryset=Fulfillment.objects.order_by("created_at", "pk")),
    )
    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    upsert_body = OrderInputSerializer
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

    def writer(self, request):
        return inbound_sender(request, "Orders", Workflow.ORDERS_IN)

    def upsert(self, integration, body):
        return services.ingest_order(integration, body.to_service())

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
        services.cancel_order(order, reason=body.validated_data.get("reason", ""))
        return self.answer(order)

    @no_body(
        summary="Release a held order",
        description="Lifts every hold reason: the order becomes `ready` and is routed. 409 `conflict` when it "
        "is not on hold, or while one of its SKUs or its shipping method is still unmapped (map it first). "
        "An integration key releases only the orders its integration sent; org keys, any of the organization.",
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
        services.release(order)
        return self.answer(order)


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
                # One mapping at most (unique per integration and method), so no ordering: the model's
                # default one joins the integration when the SQL is compiled, which mutates this query —
                # shared by every request of a gthread worker — and two threads compiling it at once left
                # the join out of one's FROM ("missing FROM-clause entry for table u1", seen under load).
                ShippingMethodMapping.objects.filter(
                    integration=OuterRef("fulfiller"), method=OuterRef("shipping_method")
                )
                .order_by()
                .values("external_code")[:1]
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
        "reject": "shipping_requests:write",
    }

    def integration_scope(self, integration):
        return Q(fulfiller=integration)

    @no_body(
        summary="Acknowledge a shipping request",
        description="pending → acknowledged (again: no change); 409 `conflict` from any other status.",
        responses=ShippingRequestSerializer,
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        shipping_request = self.get_object()
        services.acknowledge(shipping_request)
        return self.answer(shipping_request)

    @extend_schema(
        summary="Reject a shipping request",
        description="The 3PL cannot take it: a pending or acknowledged request becomes `rejected` with the "
        "`reason` (required, up to 500 characters), its committed stock is released and "
        "`shipping_request.rejected` is sent. The order is routed again without this location (held as "
        "unroutable, with an exception, when no other location can ship it); when other requests of the "
        "order stand, an exception asks a person to route what this one carried. 409 `conflict` when the "
        "request is rejected, (partially) fulfilled or canceled, changing nothing; send an `Idempotency-Key` "
        "to have a retry answered as the first call was. A request routed to another integration: 404.",
        request=RejectSerializer,
        responses={
            200: ShippingRequestSerializer,
            409: OpenApiResponse(
                ErrorSerializer, description="conflict: the request can no longer be rejected"
            ),
        },
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        shipping_request = self.get_object()
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.reject(shipping_request, body.validated_data["reason"])
        return self.answer(shipping_request)


# --- fulfillments -------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Fulfillments this key may see, newest first"),
    retrieve=extend_schema(summary="One fulfillment", parameters=[OPAQUE_ID]),
    create=extend_schema(
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
    ),
)
class FulfillmentViewSet(UpsertMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
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
    upsert_body = FulfillmentInputSerializer
    grants = {
        "list": "fulfillments:read",
        "retrieve": "fulfillments:read",
        "create": "fulfillments:write",
        "partial_update": "fulfillments:write",
        "cancel": "fulfillments:write",
    }

    def integration_scope(self, integration):
        return Q(integration=integration) | Q(order__source=integration)

    def correctable(self, request):
        """
        The fulfillment, if this key may correct it: only the integration that posted it (its flow on), or an
        org key. The channel reads its orders' fulfillments but cannot change them: 404, as for another's.
        """
        fulfillment = self.get_object()
        integration = request.auth.scope.integration
        if integration is not None:
            if fulfillment.integration_id != integration.pk:
                raise ApiError("not_found", "No such fulfillment for this key.")
            workflows.require_workflow(integration, Workflow.FULFILLMENTS_IN)
        return fulfillment

    @extend_schema(
        summary="Correct a fulfillment's carrier and tracking",
        description="Sets `carrier`, `tracking_number` and `tracking_url` (those sent); any other field is a "
        "400 `validation_error` naming it, and changes nothing. Emits `fulfillment.updated` when something "
        "changed (the same values again change nothing). 409 `conflict` for a canceled fulfillment. Only "
        "the integration that sent it (its fulfillments-in flow on) or an org key may: any other is 404.",
        request=FulfillmentUpdateSerializer,
        responses={
            200: FulfillmentSerializer,
            409: OpenApiResponse(ErrorSerializer, description="conflict: the fulfillment is canceled"),
        },
        parameters=[OPAQUE_ID],
    )
    def partial_update(self, request, pk=None):
        fulfillment = self.correctable(request)
        body = FulfillmentUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.update_fulfillment(fulfillment, body.validated_data)
        return self.answer(fulfillment)

    @no_body(
        summary="Cancel (void) a fulfillment",
        description="Its units go back on hand at the location and are reserved again for the shipping "
        "request, which owes them again; the request's and the order's status are recomputed (e.g. "
        "`fulfilled` → `partially_fulfilled`) and `fulfillment.canceled` is sent. No body. 409 `conflict` "
        "when it is already canceled (nothing is put back twice; send an `Idempotency-Key` to have a retry "
        "answered as the first call was). Only the integration that sent it or an org key may: any other "
        "is 404.",
        responses=FulfillmentSerializer,
        parameters=[OPAQUE_ID],
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        fulfillment = self.correctable(request)
        FulfillmentCancelSerializer(data=request.data).is_valid(raise_exception=True)
        services.cancel_fulfillment(fulfillment)
        return self.answer(fulfillment)

    def writer(self, request):
        return inbound_sender(request, "Fulfillments", Workflow.FULFILLMENTS_IN)

    def upsert(self, integration, body):
        data = dict(body.validated_data)
        shipping_request = (
            scoped(ShippingRequestViewSet, self.request).filter(pk=data.pop("shipping_request")).first()
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
        return services.create_fulfillment(shipping_request, data, integration=integration)
