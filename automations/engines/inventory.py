"""
The inventory engine: stock moves, buffer and link changes leave AvailabilityChange rows (written with the
change, inventory.services.mark_changed); this engine drains them and recomputes what each sales channel may
sell for those products — or for the whole catalog when a row names no product — through inventory.sync,
which stores the figures and emits `inventory.updated` for the changed ones only. Orders waiting for stock are
then retried by the routing engine.
"""

import logging

from django.conf import settings as django_settings
from django.db import transaction

from core.queue import enqueue
from inventory import services as inventory_services
from inventory import sync
from inventory.models import ChannelInventory, Product

from ..choices import Engine, RunTrigger
from ..handlers import INVENTORY_CHANGES
from . import Skipped, merge, organizations, routing, running

logger = logging.getLogger(__name__)

# Change rows taken per transaction, and transactions per run; a run that hits the bound re-enqueues itself.
DRAIN_BATCH = django_settings.INVENTORY_DRAIN_BATCH
MAX_ROUNDS = django_settings.INVENTORY_MAX_ROUNDS
ALL = object()  # _retry_routing: every product of the organization (a full recompute ran)


def _org_id(organization) -> int:
    return organization if isinstance(organization, int) else organization.pk


def process_changes(organization, *, trigger=RunTrigger.EVENT) -> dict:
    """Drain the organization's pending changes and recompute the products they name; counts."""
    org_id = _org_id(organization)
    try:
        with running(org_id, Engine.INVENTORY, trigger) as (_, counts):
            for _ in range(MAX_ROUNDS):
                drained, more = _drain_and_recompute(org_id, counts)
                if drained:  # only where stock may have become available: a reservation taken frees nothing
                    _retry_routing(org_id, drained)
                if not more:
                    break
            else:
                _enqueue_again(org_id)
    except Skipped:
        return {"skipped": 1}
    return counts


def _drain_and_recompute(org_id, counts) -> tuple[list[int] | None, bool]:
    """
    One transaction: the organization's recompute lock, up to DRAIN_BATCH change rows taken (rows another
    transaction holds are skipped) and the recompute they ask for. Returns (products whose stock may have
    gone up, more rows left); products is None when nothing is to retry, ALL when the whole catalog was
    recomputed: see _retry_routing.
    """
    with transaction.atomic():
        sync.lock(org_id)  # before the drain: a run waiting here then sees what the previous one deleted
        taken = inventory_services.take_changes(org_id, DRAIN_BATCH)
        if taken is None:
            return None, False
        if taken.products is None:
            merge(counts, sync.recompute(org_id))
            merge(counts, {"full": 1})
            return ALL, False
        merge(counts, sync.recompute(org_id, taken.products))
    return taken.stock_up or None, taken.more


def _retry_routing(org_id, products) -> None:
    """Orders waiting for stock of these products may ship now; ALL means the whole catalog."""
    if products is ALL:
        products = Product.objects.filter(organization_id=org_id).values_list("pk", flat=True)
    try:
        routing.retry_for_products(org_id, products)
    except Exception:  # the figures are committed; a failed retry is the routing sweep's to repeat
        logger.exception("Retrying orders waiting for stock failed for organization %s.", org_id)


def _enqueue_again(org_id) -> None:
    enqueue(INVENTORY_CHANGES, args=[org_id])


def full_recompute(organization, *, trigger=RunTrigger.COMMAND) -> dict:
    """Recompute every figure of the organization (pending change rows are covered, so they are drained)."""
    org_id = _org_id(organization)
    try:
        with running(org_id, Engine.INVENTORY, trigger) as (_, counts):
            with transaction.atomic():
                sync.lock(org_id)
                inventory_services.take_all_changes(org_id)
                merge(counts, sync.recompute(org_id))
            _retry_routing(org_id, ALL)
    except Skipped:
        return {"skipped": 1}
    return counts


def recompute_channels(organization, channel_ids, *, trigger=RunTrigger.EVENT) -> dict:
    """
    Every figure of these channels (a channel enabled again, or never computed): its figures were not kept
    while it was disabled. Channels that are not sales channels, or are disabled, are left alone.
    """
    org_id = _org_id(organization)
    wanted = {int(pk) for pk in channel_ids}
    try:
        with running(org_id, Engine.INVENTORY, trigger) as (_, counts):
            channels = [c for c in sync.sales_channels(org_id) if c.pk in wanted]
            if channels:
                merge(counts, sync.recompute(org_id, channels=channels))
                merge(counts, {"channels": len(channels)})
    except Skipped:
        return {"skipped": 1}
    return counts


def _never_computed(org_id) -> list[int]:
    """Sales channels with no figure at all yet (new ones): the sweep gives them their first figures."""
    return [
        channel.pk
        for channel in sync.sales_channels(org_id)
        if not ChannelInventory.objects.filter(channel=channel).exists()
    ]


def sweep(organization=None, *, trigger=RunTrigger.SCHEDULE) -> dict:
    """
    Beat: every organization with the engine on and changes that no message processed yet; and sales
    channels that have no figures yet (a new channel's first figures).
    """
    total: dict[str, int] = {}
    pending = inventory_services.organizations_with_changes()
    for org in organizations(Engine.INVENTORY, organization):
        if org.pk in pending:
            merge(total, process_changes(org.pk, trigger=trigger))
            merge(total, {"organizations": 1})
        new_channels = _never_computed(org.pk)
        if new_channels:
            merge(total, recompute_channels(org.pk, new_channels, trigger=trigger))
    return total


def run_now(organization=None, *, trigger=RunTrigger.COMMAND) -> dict:
    """`run_engine inventory`: the repair tool — a full recompute of each organization with the engine on."""
    total: dict[str, int] = {}
    for org in organizations(Engine.INVENTORY, organization):
        merge(total, full_recompute(org.pk, trigger=trigger))
        merge(total, {"organizations": 1})
    return total
