"""
Stock tasks. Idempotent: the channels they work on are claimed in the database (SKIP LOCKED and a lease),
and a push sends only figures that differ from what was last accepted, so a repeat sends nothing twice.
"""

from celery import shared_task

from core.queue import RELIABLE, enqueue

from . import manifest


@shared_task(**RELIABLE)
def manifest_inventory_sweep_task():
    """Beat (every 30 s): push changed available-to-sell figures to manifest channels."""
    result = manifest.sweep()
    if result["full"]:
        # More channels are waiting than one sweep takes: continue at once (the claims drain them).
        enqueue(manifest_inventory_sweep_task)  # the broker down: the next beat continues
    return result
