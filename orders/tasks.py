"""
Order tasks. Idempotent: the integrations they work on are claimed in the database (SKIP LOCKED and a lease),
so a duplicate message, a redelivered one or two workers at once never pull or dispatch the same one twice.
"""

from celery import shared_task

from core.queue import RELIABLE, enqueue

from . import manifest


@shared_task(**RELIABLE)
def manifest_orders_sweep_task():
    """Beat (every 30 s): pull orders from manifest channels whose poll is due; push their dispatches."""
    result = manifest.sweep()
    if result["full"]:
        # More integrations are waiting than one sweep takes: continue at once (the claims drain them).
        enqueue(manifest_orders_sweep_task)  # the broker down: the next beat continues
    return result
