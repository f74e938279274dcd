"""
What the automations app does when a lower app fires a trigger (core/triggers.py), registered in apps.py:
each enqueues its engine's task by name once the change is committed. Naming the task, rather than importing
it, keeps this module below automations.tasks, which imports the engines.
"""

from core.queue import enqueue, enqueue_once
from integrations.choices import IntegrationStatus

from .choices import Engine
from .engine_settings import engine_enabled

PROCESS_ORDER = "automations.tasks.process_order_task"
ROUTE_ORDER = "automations.tasks.route_order_task"
INVENTORY_CHANGES = "automations.tasks.inventory_changes_task"
CHANNEL_INVENTORY = "automations.tasks.channel_inventory_task"


def order_received(organization_id, order_id, created) -> None:
    """An order arrived or its channel updated it: the hold engine applies the rules (then routes it)."""
    enqueue(PROCESS_ORDER, args=[order_id, created])


def order_ready(organization_id, order_id) -> None:
    """An order became ready outside the hold engine's task (that task routes its own): route it."""
    enqueue(ROUTE_ORDER, args=[order_id])


def inventory_doorbell(organization_id) -> str:
    return f"automations:inventory-rung:{organization_id}"


def availability_changed(organization_id) -> None:
    """One inventory task per organization waiting at a time: it drains every change committed before it starts."""
    enqueue_once(INVENTORY_CHANGES, inventory_doorbell(organization_id), args=[organization_id])


def integration_status_changed(organization_id, integration_id, previous, status) -> None:
    """A channel enabled again gets its figures recomputed (the engine ignores integrations that sell nothing)."""
    if previous == IntegrationStatus.DISABLED and status != IntegrationStatus.DISABLED:
        enqueue(CHANNEL_INVENTORY, args=[organization_id, integration_id])


def engine_on(organization_id, engine) -> bool:
    """The apps below ask whether an engine is on (the hold engine at ingest, the inventory engine's figures)."""
    return engine_enabled(organization_id, Engine(engine))
