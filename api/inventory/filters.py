"""Query filters of the catalog and stock endpoints; every list also takes `updated_since`
(docs/connectors/contract.md)."""

import django_filters

from api.filters import IdFilter, StrictBooleanFilter, UpdatedSinceFilterSet, UtcIsoDateTimeFilter
from inventory import services
from inventory.choices import LocationKind
from inventory.models import InventoryLevel, Location, Product
from inventory.skus import normalize_sku


class ProductFilter(UpdatedSinceFilterSet):
    sku = django_filters.CharFilter(method="filter_sku", help_text="The hub SKU, exactly.")
    active = StrictBooleanFilter()
    include_archived = StrictBooleanFilter(
        method="filter_archived", help_text="true: archived products are listed too (left out by default)."
    )

    class Meta:
        model = Product
        fields = ["sku", "active", "include_archived"]

    def filter_queryset(self, queryset):
        # Archived products are left out of the list unless asked for; not the viewset's queryset, through
        # which GET /products/{id} and product.deleted's body still read them.
        if not self.form.cleaned_data.get("include_archived"):
            queryset = queryset.filter(archived_at__isnull=True)
        return super().filter_queryset(queryset)

    def filter_archived(self, queryset, name, value):
        return queryset  # applied (or not) in filter_queryset: an absent parameter must hide them too

    def filter_sku(self, queryset, name, value):
        # As sent, or in its normal form (inventory/skus.py), as every SKU lookup reads it.
        return queryset.filter(sku__in={value, normalize_sku(value)})


class LocationFilter(UpdatedSinceFilterSet):
    kind = django_filters.ChoiceFilter(choices=LocationKind.choices)
    active = StrictBooleanFilter()

    class Meta:
        model = Location
        fields = ["kind", "active"]


class KeySkuFilterSet(UpdatedSinceFilterSet):
    """`?sku=` as the key's integration names it: its own SKU where it has a mapping, else the hub SKU."""

    product_field, sku_field = "product", "product__sku"
    sku = django_filters.CharFilter(
        method="filter_sku", help_text="A hub SKU, or the integration's own SKU where it has a mapping."
    )

    def filter_sku(self, queryset, name, value):
        key = self.request.auth
        if key.scope.is_global:  # a global key: the hub SKU, in any organization
            return queryset.filter(**{f"{self.sku_field}__in": {value, normalize_sku(value)}})
        integration = key.scope.integration
        product = services.resolve_skus(key.organization, integration, [value]).get(value)
        if product is None:
            return queryset.none()
        return queryset.filter(**{self.product_field: product.pk})


class InventoryLevelFilter(KeySkuFilterSet):
    location = IdFilter(field_name="location_id", help_text="A location id.")

    class Meta:
        model = InventoryLevel
        fields = ["sku", "location"]


class AvailabilityFilter(KeySkuFilterSet):
    product_field, sku_field = "pk", "sku"
    # The view annotates each product with the last change of it or of its stock at the channel's locations.
    updated_since = UtcIsoDateTimeFilter(
        field_name="availability_updated_at",
        lookup_expr="gte",
        help_text="Only SKUs whose product or stock changed at or after this time.",
    )

    class Meta:
        model = Product
        fields = ["sku"]
