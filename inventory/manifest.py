"""
Manifest connectors, stock side (examples/MANIFEST_PROTOCOL.md, `inventory`): the hub pushes to a channel's
`inventory` endpoint what it may sell — the inventory engine's figures (ChannelInventory.available) that
differ from what it last accepted (`published`), in its own SKUs where mapped. `published` moves only once
the connector accepted a batch, so a failed push is simply sent again next run.
"""

import logging

from django.db.models import F, Q
from django.utils import timezone

from core import triggers
from integrations import manifest as calls
from integrations.choices import Workflow

from . import services, sync
from .models import ChannelInventory, Product

logger = logging.getLogger(__name__)

INVENTORY_BATCH = 1000  # items per call (protocol)
MAX_BATCHES = 10  # calls per run; the rest goes next run
SWEEP_LIMIT = 20  # channels taken by one sweep; a full claim re-enqueues the sweep
INVENTORY_GAP = 20  # seconds: a channel's figures are computed at most this often (about once per beat)


def changed_figures(channel) -> list[tuple[int, int]]:
    """
    [(product id, available)] where the engine's figure differs from what the channel last accepted. A channel
    the engine has not computed yet is computed first (inventory.sync), so a push never sends stale figures.
    """
    rows = ChannelInventory.objects.filter(channel=channel)
    if not rows.exists() and triggers.ask(
        triggers.ENGINE_ON, organization_id=channel.organization_id, engine="inventory"
    ):
        sync.recompute(channel.organization_id, channels=[channel])
    changed = rows.filter(~Q(published=F("available")) | Q(published__isnull=True))
    return list(changed.order_by("product_id").values_list("product_id", "available"))


def _skus(channel, product_ids) -> dict[int, str]:
    """{product id: the SKU the channel knows it by}: its own where mapped, else the hub SKU."""
    own = services.external_skus(channel, product_ids)
    rest = set(product_ids) - set(own)
    hub = dict(Product.objects.filter(pk__in=rest).values_list("pk", "sku")) if rest else {}
    return {**hub, **own}


def push_inventory(channel, *, max_batches: int | None = None) -> dict:
    """Send the changed figures in batches; record each accepted batch as published."""
    result = {"calls": 0, "sent": 0, "ok": True, "more": False}
    changed = changed_figures(channel)
    for start in range(0, len(changed), INVENTORY_BATCH):
        if result["calls"] >= (max_batches or MAX_BATCHES):
            result["more"] = True
            break
        batch = changed[start : start + INVENTORY_BATCH]
        skus = _skus(channel, [pid for pid, _ in batch])
        items = [{"sku": skus[pid], "available": n} for pid, n in batch if pid in skus]
        try:
            outcome = calls.call(
                channel,
                "inventory",
                {"items": items},
                flow=Workflow.INVENTORY_OUT,
                check=calls.answered_accepted(len(items)),
            )
        except calls.CallRefused:
            break
        result["calls"] += 1
        if not outcome.ok:
            result["ok"] = False
            break  # nothing recorded: the same figures are sent again next run
        now = timezone.now()
        # What was sent is recorded, not `available`: a figure the engine changed meanwhile is sent next run.
        ChannelInventory.objects.bulk_update(
            [ChannelInventory(pk=pk, published=n, published_at=now) for pk, n in _row_ids(channel, batch)],
            ["published", "published_at"],
        )
        result["sent"] += len(items)
    return result


def _row_ids(channel, batch) -> list[tuple[int, int]]:
    """[(ChannelInventory id, the figure sent)] for a batch of (product id, available)."""
    sent = dict(batch)
    ids = ChannelInventory.objects.filter(channel=channel, product_id__in=list(sent)).values_list(
        "pk", "product_id"
    )
    return [(pk, sent[product_id]) for pk, product_id in ids]


def sweep(limit: int = SWEEP_LIMIT) -> dict:
    """Beat: push changed figures to manifest channels with inventory out on, least recently pushed first."""
    channels = calls.claim("inventory", Workflow.INVENTORY_OUT, limit=limit, gap=INVENTORY_GAP)
    sent = 0
    for channel in channels:
        try:
            sent += push_inventory(channel)["sent"]
        except Exception:  # one channel's failure must not stop the others; retried next run
            logger.exception("Manifest inventory push failed for integration %s.", channel.pk)
        finally:
            calls.release(channel, "inventory")
    return {"channels": len(channels), "items": sent, "full": len(channels) >= limit}
