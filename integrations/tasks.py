"""
Integration tasks: the top of the integrations app, and the only module of it that touches Celery (the modules
below ask for a task by its registered name through core.queue). All are idempotent: the rows they work on
are claimed in the database (SKIP LOCKED or a lease), so a duplicate message, a redelivered one after a
worker died, or two workers at once are harmless.
"""

from celery import shared_task
from django.conf import settings

from core.queue import RELIABLE, enqueue

from . import housekeeping, lifecycle, manifest
from .webhooks import delivery, doorbells, outbox


@shared_task(acks_late=True)
def expire_stale_connecting_task():
    """Beat: integrations that never completed the handshake within the window move to `error`."""
    return lifecycle.expire_stale_connecting()


@shared_task(**RELIABLE)
def dispatch_outbox_task():
    """On commit of a change: its outbox rows become deliveries (bounded batches, re-enqueued if more)."""
    doorbells.answer_doorbell()
    for _ in range(10):
        dispatched, _made = outbox.dispatch_outbox()
        if dispatched < outbox.OUTBOX_BATCH:
            return
    enqueue(dispatch_outbox_task)


@shared_task(**RELIABLE)
def deliver_due_task():
    """Send one batch of due deliveries; a full batch rings again so a backlog drains without waiting."""
    sent = delivery.deliver_due()
    if sent and sent >= settings.WEBHOOK_BATCH_SIZE:
        doorbells.ring(1)
    return sent


@shared_task(**RELIABLE)
def sweep_deliveries_task():
    """Beat (every few seconds): dispatch what no message announced, wake workers for due deliveries."""
    return delivery.sweep()


@shared_task(**RELIABLE)
def prune_deliveries_task():
    """
    Beat (daily): succeeded deliveries and dispatched outbox rows past WEBHOOK_RETENTION_DAYS, the request log
    past REQUEST_LOG_RETENTION_DAYS (integrations.housekeeping).
    """
    return housekeeping.prune()


# --- manifest connectors ---------------------------------------------------------------------------------


@shared_task(**RELIABLE)
def check_health_task(integration_id):
    """Call one integration's health endpoint (entering connecting, or the beat's round); a repeat is harmless."""
    integration = (
        manifest.health_check_targets().select_related("connector").filter(pk=integration_id).first()
    )
    if integration is None:  # deleted, disabled or moved on since it was queued
        return None
    return manifest.check_health(integration).ok


@shared_task(**RELIABLE)
def check_manifest_health_task():
    """Beat (every 5 minutes): a health check for every connected or connecting manifest integration."""
    ids = list(manifest.health_check_targets().order_by("pk").values_list("pk", flat=True))
    for integration_id in ids:
        enqueue(check_health_task, args=[integration_id])  # broker down: the next round checks it
    return len(ids)
