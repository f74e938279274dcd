"""
Stock tasks. Idempotent: the channels they work on are claimed in the database (SKIP LOCKED and a lease),
and a push sends only figures that differ from what was last accepted, so a repeat sends nothing twice.
"""

import logging

from celery import shared_task

from . import manifest

logger = logging.getLogger(__name__)

RELIABLE = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(**RELIABLE)
def manifest_inventory_sweep_task():
    """Beat (every 30 s): push changed available-to-sell figures to manifest channels."""
    result = manifest.sweep()
    if result["full"]:
        # More channels are waiting than one sweep takes: continue at once (the claims drain them).
        try:
            manifest_inventory_sweep_task.apply_async(retry=False)
        except Exception:  # the broker is down: the next beat continues
            logger.warning("Could not re-enqueue %s.", manifest_inventory_sweep_task.name, exc_info=True)
    return result
