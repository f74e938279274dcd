"""
Order tasks. Idempotent: the integrations they work on are claimed in the database (SKIP LOCKED and a lease),
so a duplicate message, a redelivered one or two workers at once never pull or dispatch the same one twice.
"""

import logging

from celery import shared_task

from . import manifest

logger = logging.getLogger(__name__)

RELIABLE = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(**RELIABLE)
def manifest_orders_sweep_task():
    """Beat (every 30 s): pull orders from manifest channels whose poll is due; push their dispatches."""
    result = manifest.sweep()
    if result["full"]:
        # More integrations are waiting than one sweep takes: continue at once (the claims drain them).
        try:
            manifest_orders_sweep_task.apply_async(retry=False)
        except Exception:  # the broker is down: the next beat continues
            logger.warning("Could not re-enqueue %s.", manifest_orders_sweep_task.name, exc_info=True)
    return result
