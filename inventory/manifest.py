"""
Manifest connectors, stock side (examples/MANIFEST_PROTOCOL.md, `inventory`): the hub pushes to a channel's
`inventory` endpoint what it may sell — only the figures that differ from what it was last told
(ChannelInventory), in its own SKUs where mapped. ChannelInventory moves only once the connector accepted
a batch, so a failed push is simply computed and sent again next run.
"""

import logging

from django.utils import timezone

from integrations import manifest as calls
from integrations.choices import Workflow

from . import services
from .models import ChannelInventory, Product

logger = logging.getLogger(__name__)

INVENTORY_BATCH = 1000  # items per call (protocol)
MAX_BATCHES = 10  # calls per run; the rest goes next run
SWEEP_LIMIT = 20  # channels taken by one sweep; a full claim re-enqueues the sweep
INVENTORY_GAP = 20  # seconds: a channel's figures are computed at most this often (about once per beat)


def changed_figures(channel) -> list[tuple[int, int]]:
    """[(product id, available)] where what the channel may sell differs from what it was last told."""
    figures = services.availability(channel)
    published = dict(ChannelInventory.objects.filter(channel=channel).values_list("product_id", "available"))
    for product_id in published:
        figures.setdefault(product_id, 0)  # no longer stocked where it sells from: nothing to sell
    return sorted((pid, n) for pid, n in figures.items() if published.get(pid) != n)


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
        ChannelInventory.objects.bulk_create(
            [
                ChannelInventory(
                    channel=channel, product_id=pid, available=n, published_at=now, updated_at=now
                )
                for pid, n in batch
            ],
            update_conflicts=True,
            unique_fields=["channel", "product"],
            update_fields=["available", "published_at", "updated_at"],
        )
        result["sent"] += len(items)
    return result


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
