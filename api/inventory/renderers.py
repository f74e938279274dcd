"""Webhook bodies for catalog and stock events: the object as this API answers it to the receiving integration."""

from django.db.models import Q

from api.base import render_for, viewset_for
from api.inventory.serializers import AvailabilitySerializer, InventoryLevelSerializer
from api.inventory.views import CHANNEL_TYPES, AvailabilityView, InventoryView, ProductViewSet
from core.ids import parse_id
from integrations.choices import Workflow
from integrations.webhooks.outbox import register_renderer
from inventory import services, sync
from inventory.models import ChannelInventory


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


@register_renderer(sync.OBJECT_TYPE)
def render_channel_inventory(integration, ids):
    """
    A channel's figures ("<product id>:<channel id>") as GET /availability answers them, to that channel only
    (in its own SKUs); any other integration, or the channel with inventory out switched off, gets nothing.
    """
    if integration.connector.type not in CHANNEL_TYPES or not integration.workflow_enabled(
        Workflow.INVENTORY_OUT
    ):
        return {}
    wanted = set()
    for name in ids:
        product_id, _, channel_id = name.partition(":")
        if channel_id == str(integration.pk) and (pk := parse_id(product_id)) is not None:
            wanted.add(pk)
    if not wanted:
        return {}
    catalog = viewset_for(AvailabilityView, integration, action="list").get_queryset()
    rows = list(
        ChannelInventory.objects.filter(channel=integration, product__in=catalog.filter(pk__in=wanted))
        .select_related("product")
        .order_by("product_id")
    )
    external = services.external_skus(integration, [row.product_id for row in rows])
    data = AvailabilitySerializer(
        [
            {
                "sku": external.get(row.product_id, row.product.sku),
                "available": row.available,
                "updated_at": row.updated_at,
            }
            for row in rows
        ],
        many=True,
    ).data
    return {
        sync.object_id(row.product_id, integration.pk): item for row, item in zip(rows, data, strict=True)
    }
