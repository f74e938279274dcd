"""
The engines' tasks: small and idempotent (each claims or locks what it works on), enqueued after the commit
of the change that concerns them (automations/handlers.py, called through core/triggers.py), and swept by beat (migration 0003) so nothing
is left behind when a worker dies or the broker was down.
"""

from celery import shared_task

from core.queue import RELIABLE, answer_doorbell

from . import engines, handlers
from .choices import RuleTrigger, RunTrigger
from .engines import exceptions, hold, inventory, merge, routing


@shared_task(**RELIABLE)
def process_order_task(order_id, created=True):
    """
    An order arrived or its channel updated it: apply the automation rules (the hold engine); an order they
    let through is routed here at once, not behind the queue (the hold engine does not fire ORDER_READY).
    """
    trigger = RuleTrigger.ORDER_CREATED if created else RuleTrigger.ORDER_UPDATED
    counts = hold.process_order(order_id, trigger=trigger)
    if counts.get("ready") or counts.get("already_processed"):
        # Also on a redelivered message: a first run that made it ready may have died before routing it.
        merge(counts, routing.route_order_by_id(order_id))
    return counts


@shared_task(**RELIABLE)
def route_order_task(order_id):
    """An order became ready: route it (the routing engine)."""
    return routing.route_order_by_id(order_id)


@shared_task(**RELIABLE)
def inventory_changes_task(organization_id):
    """Stock moved in an organization: recompute what its channels may sell for the products concerned."""
    answer_doorbell(handlers.inventory_doorbell(organization_id))  # changes from now on ring again
    return inventory.process_changes(organization_id)


@shared_task(**RELIABLE)
def channel_inventory_task(organization_id, integration_id):
    """A sales channel was enabled again: compute all its figures (they were not kept while disabled)."""
    return inventory.recompute_channels(organization_id, [integration_id])


@shared_task(**RELIABLE)
def run_engine_task(engine, organization_id, trigger=RunTrigger.ADMIN):
    """Run now (the engine settings page): one engine's run_now for one organization, off the web request."""
    return engines.run_now(engine, organization_id, trigger=trigger)


@shared_task(**RELIABLE)
def hold_sweep_task():
    """Beat: release holds whose time passed; apply rules to new orders whose message was lost."""
    return hold.sweep()


@shared_task(**RELIABLE)
def routing_sweep_task():
    """Beat: route ready orders whose message was lost; retry unroutable orders whose retry is due."""
    return routing.sweep()


@shared_task(**RELIABLE)
def inventory_sweep_task():
    """Beat: process stock changes no message processed yet."""
    return inventory.sweep()


@shared_task(**RELIABLE)
def exceptions_sweep_task():
    """Beat: stuck orders, stale exceptions, notification digests."""
    return exceptions.sweep()
