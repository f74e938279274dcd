"""
The order flow's API shapes (docs/connectors/contract.md, "Orders", "Fulfillment"). Input serializers validate
a body and hand the services their data; output serializers render rows from the views' prefetched querysets,
so a list costs the same few queries however long it is.
"""

import re
from collections import defaultdict
from decimal import Decimal

from django.db.models import Manager
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.fields import AwareDateTimeField, IdField, StrictIntegerField
from api.strict import StrictInput
from inventory import services as inventory_services
from orders.choices import (
    REJECTION_REASON_MAX,
    FulfillmentStatus,
    OrderStatus,
    PaymentStatus,
    ShippingRequestStatus,
)
from orders.models import Fulfillment, Order, OrderLine, ShippingRequest

MAX_LINES = 500  # lines in one order or fulfillment body
MAX_QUANTITY = 1_000_000  # per line: far above any real order, well below the column's range
MONEY = {"max_digits": 14, "decimal_places": 2}
CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def viewer(context):
    """The integration whose key asks; None for org and global keys (they see their whole scope)."""
    key = getattr(context.get("request"), "auth", None)
    return key.scope.integration if key is not None else None


def _items(data) -> list:
    return list(data.all() if isinstance(data, Manager) else data)


# --- orders in ----------------------------------------------------------------------------------------


class OrderLineInputSerializer(StrictInput):
    sku = serializers.CharField(max_length=100, help_text="As the channel knows it; mapped to a hub SKU.")
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)
    unit_price = serializers.DecimalField(**MONEY, min_value=Decimal(0))
    tax = serializers.DecimalField(**MONEY, min_value=Decimal(0), required=False)
    discount = serializers.DecimalField(**MONEY, min_value=Decimal(0), required=False)


class OrderTotalsInputSerializer(StrictInput):
    """Order-level amounts; whatever is left out is computed from the lines."""

    shipping = serializers.DecimalField(**MONEY, min_value=Decimal(0), required=False)
    tax = serializers.DecimalField(**MONEY, min_value=Decimal(0), required=False)
    discount = serializers.DecimalField(**MONEY, min_value=Decimal(0), required=False)
    total = serializers.DecimalField(**MONEY, min_value=Decimal(0), required=False)


class OrderInputSerializer(StrictInput):
    """POST /orders: an upsert by `external_id` for the key's channel."""

    external_id = serializers.CharField(max_length=100)
    number = serializers.CharField(max_length=100, required=False, allow_blank=True)
    currency = serializers.CharField(required=False, help_text="ISO 4217, e.g. USD.")
    customer = serializers.DictField(required=False, allow_null=True)
    shipping_address = serializers.DictField(required=False, allow_null=True)
    billing_address = serializers.DictField(required=False, allow_null=True)
    shipping_method = serializers.CharField(
        max_length=100, required=False, allow_blank=True, allow_null=True, help_text="The channel's code."
    )
    lines = OrderLineInputSerializer(many=True, allow_empty=False, max_length=MAX_LINES)
    payment_status = serializers.ChoiceField(choices=PaymentStatus.choices, required=False)
    notes = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), max_length=100, required=False)
    totals = OrderTotalsInputSerializer(required=False)

    def validate_currency(self, value):
        if not CURRENCY.match(value):
            raise serializers.ValidationError("A three-letter ISO 4217 code, e.g. USD.")
        return value.upper()

    def to_service(self) -> dict:
        """The validated body in the shape orders.services.ingest_order takes."""
        data = dict(self.validated_data)
        totals = data.pop("totals", None) or {}
        for name in ("shipping", "tax", "discount"):
            if name in totals:
                data[f"{name}_total"] = totals[name]
        if "total" in totals:
            data["total"] = totals["total"]
        data["lines"] = [dict(line) for line in data["lines"]]
        return data


class CancelSerializer(StrictInput):
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True)


# --- orders out ---------------------------------------------------------------------------------------


class OrderLineSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="external_sku", help_text="As the channel sent it.")

    class Meta:
        model = OrderLine
        fields = ["sku", "quantity", "unit_price", "tax", "discount"]


class OrderTotalsSerializer(serializers.Serializer):
    subtotal = serializers.DecimalField(**MONEY)
    shipping = serializers.DecimalField(**MONEY, source="shipping_total")
    tax = serializers.DecimalField(**MONEY, source="tax_total")
    discount = serializers.DecimalField(**MONEY, source="discount_total")
    total = serializers.DecimalField(**MONEY)


class HoldSerializer(serializers.Serializer):
    reason = serializers.CharField()
    until = serializers.DateTimeField(allow_null=True)


@extend_schema_field(
    {"type": "string", "enum": ShippingRequestStatus.values}, component_name="ShippingRequestStatus"
)
class ShippingRequestStatusField(serializers.CharField):
    """A request's status: one named schema component for its full and brief forms."""


class ShippingRequestBriefSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    location = serializers.CharField(source="location_id", read_only=True)
    status = ShippingRequestStatusField(read_only=True)

    class Meta:
        model = ShippingRequest
        fields = ["id", "location", "status"]


def tracking_url_field():
    # Empty when the 3PL sent none: the model's URLField is blank=True, so the schema must admit "" too.
    return serializers.URLField(read_only=True, allow_blank=True)


@extend_schema_field({"type": "string", "enum": FulfillmentStatus.values}, component_name="FulfillmentStatus")
class FulfillmentStatusField(serializers.CharField):
    """`shipped`, or `canceled` once its 3PL voided it (its stock put back)."""


class FulfillmentBriefSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    tracking_url = tracking_url_field()
    status = FulfillmentStatusField(read_only=True)

    class Meta:
        model = Fulfillment
        fields = ["id", "status", "carrier", "tracking_number", "tracking_url", "shipped_at"]


class OrderSerializer(serializers.ModelSerializer):
    """An order as docs/connectors/contract.md returns it: the body as sent plus its state, requests and
    shipments."""

    id = serializers.CharField(read_only=True)
    shipping_method = serializers.CharField(
        source="shipping_method_code", help_text="As the channel sent it."
    )
    lines = OrderLineSerializer(many=True)
    totals = OrderTotalsSerializer(source="*")
    hold = serializers.SerializerMethodField()
    shipping_requests = serializers.SerializerMethodField()
    fulfillments = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = [
            "id",
            "external_id",
            "number",
            "status",
            "currency",
            "customer",
            "shipping_address",
            "billing_address",
            "shipping_method",
            "payment_status",
            "notes",
            "tags",
            "lines",
            "totals",
            "hold",
            "shipping_requests",
            "fulfillments",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(HoldSerializer(allow_null=True))
    def get_hold(self, obj) -> dict | None:
        if obj.status != OrderStatus.ON_HOLD:
            return None
        return HoldSerializer({"reason": obj.hold_reason, "until": obj.hold_until}).data

    def _sees_everything(self, obj) -> bool:
        # A 3PL that was routed (part of) an order sees its own requests and shipments of it, not those
        # of other fulfillers (docs/connectors/01-concepts.md, "Data ownership"); the channel that sent it
        # sees them all.
        integration = viewer(self.context)
        return integration is None or obj.source_id == integration.pk

    @extend_schema_field(ShippingRequestBriefSerializer(many=True))
    def get_shipping_requests(self, obj) -> list:
        requests = obj.shipping_requests.all()
        if not self._sees_everything(obj):
            requests = [r for r in requests if r.fulfiller_id == viewer(self.context).pk]
        return ShippingRequestBriefSerializer(requests, many=True).data

    @extend_schema_field(FulfillmentBriefSerializer(many=True))
    def get_fulfillments(self, obj) -> list:
        fulfillments = obj.fulfillments.all()
        if not self._sees_everything(obj):
            fulfillments = [f for f in fulfillments if f.integration_id == viewer(self.context).pk]
        return FulfillmentBriefSerializer(fulfillments, many=True).data


# --- shipping requests --------------------------------------------------------------------------------


class ShippingRequestOrderSerializer(serializers.Serializer):
    """
    The order as its request carries it (rendered from the request): where and to whom it ships, updated
    while the request is open (`shipping_request.updated`), kept as shipped once it is closed.
    """

    id = serializers.CharField(source="order_id", read_only=True)
    number = serializers.CharField(source="order.number", read_only=True)
    shipping_address = serializers.JSONField(read_only=True)
    customer = serializers.JSONField(read_only=True, help_text="The contact: name, email, phone as sent.")


class ShippingRequestLineSerializer(serializers.Serializer):
    sku = serializers.CharField(help_text="The 3PL's own SKU where it has one mapped, else the hub SKU.")
    quantity = serializers.IntegerField()
    fulfilled_quantity = serializers.IntegerField()


class ShippingRequestListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        items = _items(data)
        self.child.load_external_skus(items)
        return super().to_representation(items)


class ShippingRequestSerializer(serializers.ModelSerializer):
    """A request as its 3PL reads it: in the 3PL's own shipping-method code and SKUs where mapped."""

    id = serializers.CharField(read_only=True)
    order = ShippingRequestOrderSerializer(source="*", read_only=True)
    location = serializers.CharField(source="location_id", read_only=True)
    shipping_method = serializers.SerializerMethodField(
        help_text="The fulfiller's code for the method where mapped, else the hub's code."
    )
    lines = serializers.SerializerMethodField()
    status = ShippingRequestStatusField(read_only=True)

    class Meta:
        model = ShippingRequest
        fields = [
            "id",
            "order",
            "location",
            "shipping_method",
            "lines",
            "status",
            "acknowledged_at",
            "rejected_at",
            "rejection_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        list_serializer_class = ShippingRequestListSerializer
        extra_kwargs = {"rejection_reason": {"help_text": "Why its 3PL rejected it; empty unless rejected."}}

    def load_external_skus(self, requests):
        """One look-up per fulfiller in the page (one for a 3PL's own key), kept in the context."""
        known = self.context.setdefault("_request_skus", {})
        wanted = defaultdict(set)
        fulfillers = {}
        for request in requests:
            if request.fulfiller_id is not None and request.fulfiller_id not in known:
                fulfillers[request.fulfiller_id] = request.fulfiller
                wanted[request.fulfiller_id].update(line.product_id for line in request.lines.all())
        for fulfiller_id, product_ids in wanted.items():
            known[fulfiller_id] = inventory_services.external_skus(fulfillers[fulfiller_id], product_ids)

    def get_shipping_method(self, obj) -> str | None:
        # `fulfiller_method_code` is annotated by the view's queryset (ShippingMethodMapping of the fulfiller).
        code = getattr(obj, "fulfiller_method_code", None)
        if code:
            return code
        return obj.shipping_method.code if obj.shipping_method_id else None

    @extend_schema_field(ShippingRequestLineSerializer(many=True))
    def get_lines(self, obj) -> list:
        if obj.fulfiller_id not in self.context.get("_request_skus", {}):
            self.load_external_skus([obj])
        own = self.context["_request_skus"].get(obj.fulfiller_id, {})
        return [
            {
                "sku": own.get(line.product_id, line.product.sku),
                "quantity": line.quantity,
                "fulfilled_quantity": line.fulfilled_quantity,
            }
            for line in obj.lines.all()
        ]


class RejectSerializer(StrictInput):
    """POST /shipping-requests/{id}/reject: why the 3PL cannot take it (required, shown to the organization)."""

    reason = serializers.CharField(max_length=REJECTION_REASON_MAX)


# --- fulfillments -------------------------------------------------------------------------------------


class FulfillmentLineInputSerializer(StrictInput):
    sku = serializers.CharField(max_length=100, help_text="The 3PL's own SKU (if mapped) or the hub SKU.")
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)


class FulfillmentInputSerializer(StrictInput):
    """POST /fulfillments: a shipment of (part of) a shipping request routed to the key's 3PL."""

    shipping_request = IdField(help_text="The shipping request's id.")
    external_id = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="The 3PL's id: a repeat is not recorded twice.",
    )
    carrier = serializers.CharField(max_length=100, required=False, allow_blank=True)
    tracking_number = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tracking_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    lines = FulfillmentLineInputSerializer(many=True, allow_empty=False, max_length=MAX_LINES)
    shipped_at = AwareDateTimeField(required=False, help_text="Default: now.")


class FulfillmentUpdateSerializer(StrictInput):
    """PATCH /fulfillments/{id}: the carrier and tracking, corrected; any other field is refused."""

    carrier = serializers.CharField(max_length=100, required=False, allow_blank=True)
    tracking_number = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tracking_url = serializers.URLField(max_length=500, required=False, allow_blank=True)


class FulfillmentCancelSerializer(StrictInput):
    """POST /fulfillments/{id}/cancel takes no field: an empty body or none."""


class FulfillmentLineSerializer(serializers.Serializer):
    sku = serializers.CharField(
        help_text="In the caller's terms: the channel's SKU for its own orders, a 3PL's mapped SKU, else the hub SKU."
    )
    quantity = serializers.IntegerField()


class FulfillmentListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        items = _items(data)
        self.child.load_external_skus(items)
        return super().to_representation(items)


class FulfillmentSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    shipping_request = serializers.CharField(source="shipping_request_id", read_only=True)
    order = serializers.CharField(source="order_id", read_only=True)
    tracking_url = tracking_url_field()
    status = FulfillmentStatusField(read_only=True)
    lines = serializers.SerializerMethodField()

    class Meta:
        model = Fulfillment
        fields = [
            "id",
            "shipping_request",
            "order",
            "external_id",
            "status",
            "carrier",
            "tracking_number",
            "tracking_url",
            "lines",
            "shipped_at",
            "canceled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        list_serializer_class = FulfillmentListSerializer

    def _from_own_order(self, obj) -> bool:
        integration = viewer(self.context)
        return integration is not None and obj.order.source_id == integration.pk

    def load_external_skus(self, fulfillments):
        """The caller's own SKUs for the products of the page, in one look-up (none for its own orders)."""
        if "_fulfillment_skus" in self.context:
            return
        product_ids = {
            line.product_id for f in fulfillments if not self._from_own_order(f) for line in f.lines.all()
        }
        integration = viewer(self.context)
        self.context["_fulfillment_skus"] = (
            inventory_services.external_skus(integration, product_ids) if integration and product_ids else {}
        )

    @extend_schema_field(FulfillmentLineSerializer(many=True))
    def get_lines(self, obj) -> list:
        self.load_external_skus([obj])
        own_order, mapped = self._from_own_order(obj), self.context["_fulfillment_skus"]
        return [
            {
                "sku": line.request_line.order_line.external_sku
                if own_order
                else mapped.get(line.product_id, line.product.sku),
                "quantity": line.quantity,
            }
            for line in obj.lines.all()
        ]
