"""
Integration tasks. All are idempotent: the rows they work on are claimed in the database (SKIP LOCKED or a
lease), so a duplicate message, a redelivered one after a worker died, or two workers at once are harmless.
"""

from celery import shared_task

from core.queue import RELIABLE, enqueue

from . import delivery, services


@shared_task(acks_late=True)
def expire_stale_connecting_task():
    """Beat: integrations that never completed the handshake within the window move to `error`."""
    return services.expire_stale_connecting()


@shared_task(**RELIABLE)
def dispatch_outbox_task():
    """On commit of a change: its outbox rows become deliveries (bounded batches, re-enqueued if more)."""
    delivery.answer_doorbell()
    for _ in range(10):
        dispatched, _made = delivery.dispatch_outbox()
        if dispatched < delivery.OUTBOX_BATCH:
            return
    enqueue(dispatch_outbox_task)


@shared_task(**RELIABLE)
def deliver_due_task():
    """Send one batch of due deliveries; a full batch rings again so a backlog drains without waiting."""
    sent = delivery.deliver_due()
    if sent and sent >= delivery.settings.WEBHOOK_BATCH_SIZE:
        delivery.ring(1)
    return sent


@shared_task(**RELIABLE)
def sweep_deliveries_task():
    """Beat (every few seconds): dispatch what no message announced, wake workers for due deliveries."""
    return delivery.sweep()


@shared_task(**RELIABLE)
def prune_deliveries_task():
    """Beat (daily): succeeded deliveries and dispatched outbox rows past WEBHOOK_RETENTION_DAYS."""
    return delivery.prune()


# --- manifest connectors ---------------------------------------------------------------------------------


@shared_task(**RELIABLE)
def check_health_task(integration_id):
    """Call one integration's health endpoint (entering connecting, or the beat's round); a repeat is harmless."""
    from . import manifest  # appended section: kept local so the module's head stays as it was

    integration = (
        manifest.health_check_targets().select_related("connector").filter(pk=integration_id).first()
    )
    if integration is None:  # deleted, disabled or moved on since it was queued
        return None
    return manifest.check_health(integration).ok


@shared_task(**RELIABLE)
def check_manifest_health_task():
    """Beat (every 5 minutes): a health check for every connected or connecting manifest integration."""
    from . import manifest

    ids = list(manifest.health_check_targets().order_by("pk").values_list("pk", flat=True))
    for integration_id in ids:
        manifest.enqueue_health_check(integration_id)
    return len(ids)
