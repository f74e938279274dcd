"""
Integration tasks. All are idempotent: the rows they work on are claimed in the database (SKIP LOCKED or a
lease), so a duplicate message, a redelivered one after a worker died, or two workers at once are harmless.
"""

from celery import shared_task

from . import delivery, services

# Global Celery settings already ask for acks_late, reject_on_worker_lost and prefetch 1 (config/settings.py);
# they are repeated on the delivery tasks because losing one of those would lose nothing but time.
RELIABLE = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(acks_late=True)
def expire_stale_connecting_task():
    """Beat: integrations that never completed the handshake within the window move to `error`."""
    return services.expire_stale_connecting()


@shared_task(**RELIABLE)
def dispatch_outbox_task():
    """On commit of a change: its outbox rows become deliveries (bounded batches, re-enqueued if more)."""
    for _ in range(10):
        dispatched, _made = delivery.dispatch_outbox()
        if dispatched < delivery.OUTBOX_BATCH:
            return
    dispatch_outbox_task.apply_async(retry=False)


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
