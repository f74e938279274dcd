"""Webhook bodies for catalog and stock events: the object as this API answers it to the receiving integration."""

from django.db.models import Q

from config.api.base import render_for, viewset_for
from integrations.delivery import register_renderer

from .. import services
from .serializers import InventoryLevelSerializer
from .views import InventoryView, ProductViewSet


@register_renderer("product")
def render_products(integration, ids):
    return render_for(ProductViewSet, integration, ids)


@register_renderer("inventory_level")
def render_inventory_levels(integration, ids):
    """Levels are named "<product id>:<location id>" in the outbox; keyed back by that name."""
    pairs = Q()
    for name in ids:
        product_id, _, location_id = name.partition(":")
        pairs |= Q(product_id=int(product_id), location_id=int(location_id))
    levels = list(viewset_for(InventoryView, integration, action="list").get_queryset().filter(pairs))
    external = services.external_skus(integration, [level.product_id for level in levels])
    data = InventoryLevelSerializer(levels, many=True, context={"external_skus": external}).data
    return {f"{level.product_id}:{level.location_id}": item for level, item in zip(levels, data, strict=True)}
