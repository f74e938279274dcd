from decimal import Decimal

from rest_framework import serializers

from api.fields import IdField, StrictIntegerField
from api.strict import StrictInput, StrictModelInput, repeated
from inventory.models import InventoryLevel, Location, Product
from inventory.skus import normalize_sku

# PostgreSQL's integer column: a larger count would be a database error, so it is a validation error here.
MAX_COUNT = 2_147_483_647


REPEATED_SKU = "SKU {value} is named more than once in this batch (rows {rows}): send each SKU once."


class ProductSerializer(StrictModelInput):
    """A catalog product; as input (POST /products, /products/bulk) it is upserted by `sku`."""

    id = serializers.CharField(read_only=True)
    price = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal(0), allow_null=True, required=False
    )
    weight = serializers.DecimalField(
        max_digits=10,
        decimal_places=3,
        min_value=Decimal(0),
        allow_null=True,
        required=False,
        help_text="Kilograms.",
    )
    archived_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When it was archived (DELETE): it then sells nowhere; null while it is in the catalog.",
    )

    class Meta:
        model = Product
        fields = ["id", "sku", "name", "barcode", "price", "weight", "active", "archived_at", "updated_at"]
        read_only_fields = ["updated_at"]

    def validate_sku(self, value):
        # Stored normalised (inventory/skus.py, by services.upsert_products): nothing may be left of it.
        if not normalize_sku(value):
            raise serializers.ValidationError("A SKU needs visible characters.")
        return value


class ProductUpdateSerializer(ProductSerializer):
    """PATCH: any field but the SKU, which is the product's identity for upserts and mappings."""

    class Meta(ProductSerializer.Meta):
        read_only_fields = ["sku", "updated_at"]


class BulkProductsSerializer(StrictInput):
    products = ProductSerializer(many=True)

    def validate(self, attrs):
        # A SKU is one product however it is encoded (NFC or not, with format characters): it is upserted once.
        repeated(attrs["products"], lambda p: normalize_sku(p["sku"]), "products", "sku", REPEATED_SKU)
        return attrs


class BulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()


class LocationSerializer(StrictModelInput):
    """A place stock sits. Created with an integration key, it is managed by that integration."""

    id = serializers.CharField(read_only=True)
    address = serializers.DictField(required=False, help_text="Free-form: line1, city, postal_code, country…")
    priority = StrictIntegerField(
        min_value=0, max_value=MAX_COUNT, required=False, help_text="Routing preference: lower ships first."
    )

    class Meta:
        model = Location
        fields = ["id", "name", "kind", "address", "active", "priority", "ships", "sells", "updated_at"]
        read_only_fields = ["updated_at"]


class StockItemSerializer(StrictInput):
    sku = serializers.CharField(max_length=100, help_text="A hub SKU, or the integration's own mapped SKU.")
    on_hand = StrictIntegerField(min_value=0, max_value=MAX_COUNT, help_text="The absolute count on hand.")


class StockPushSerializer(StrictInput):
    location = IdField(help_text="The id of a location this key may write stock to.")
    items = StockItemSerializer(many=True)

    def validate(self, attrs):
        repeated(attrs["items"], lambda item: item["sku"], "items", "sku", REPEATED_SKU)
        return attrs


class StockErrorSerializer(serializers.Serializer):
    sku = serializers.CharField()
    code = serializers.ChoiceField(
        choices=["unknown_sku", "archived_sku"],
        help_text="unknown_sku: no such product; archived_sku: the product is archived, its count is refused.",
    )


class StockPushResultSerializer(serializers.Serializer):
    updated = serializers.IntegerField(help_text="Known SKUs whose count was applied (changed or not).")
    errors = StockErrorSerializer(many=True)


class InventoryLevelSerializer(serializers.ModelSerializer):
    """Stock of one SKU at one location; `sku` is the key's own where its integration has a mapping."""

    id = serializers.CharField(read_only=True)
    sku = serializers.SerializerMethodField()
    location = serializers.CharField(source="location_id", read_only=True)
    available = serializers.IntegerField(read_only=True, help_text="on_hand − committed.")

    class Meta:
        model = InventoryLevel
        fields = ["id", "sku", "location", "on_hand", "committed", "available", "updated_at"]

    def get_sku(self, level) -> str:
        return self.context.get("external_skus", {}).get(level.product_id, level.product.sku)


class AvailabilitySerializer(serializers.Serializer):
    """What a channel may sell of one SKU (its own SKU where mapped), after buffers."""

    sku = serializers.CharField()
    available = serializers.IntegerField()
    updated_at = serializers.DateTimeField(
        help_text="The last change of the product or of its stock at the locations this channel sells from."
    )
