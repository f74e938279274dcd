"""
The automations app's ears: dead deliveries and failing integrations raise exceptions (the exceptions engine), and
every committed change that concerns an engine enqueues its task (orders: hold then routing; stock: inventory).
"""

from contextvars import ContextVar

from django.dispatch import receiver

from core.queue import enqueue, enqueue_once
from integrations import signals
from integrations.choices import IntegrationStatus
from inventory import signals as inventory_signals
from orders import signals as order_signals

from . import services
from .choices import ExceptionKind


@receiver(signals.delivery_dead)
def delivery_dead(sender, delivery, **kwargs):
    subscription = delivery.subscription
    services.raise_exception(
        delivery.organization_id,
        ExceptionKind.DELIVERY_DEAD,
        f"Webhook {delivery.event_type} {delivery.event_id} to {subscription.url} is dead after "
        f"{delivery.attempts} attempts ({delivery.last_error or f'HTTP {delivery.last_status_code}'}). "
        "Fix the receiver, then replay it from the deliveries list or with `manage.py replay_deliveries`.",
        integration=delivery.integration,
        # One open exception per subscription, counting its dead deliveries.
        entity_type="webhook_subscription",
        entity_id=subscription.pk,
        data={"delivery": delivery.pk, "event_id": delivery.event_id, "url": subscription.url},
    )


@receiver(signals.delivery_recovered)
def delivery_recovered(sender, subscription, **kwargs):
    services.resolve(
        subscription.integration.organization_id,
        ExceptionKind.DELIVERY_DEAD,
        integration=subscription.integration,
        entity_type="webhook_subscription",
        entity_id=subscription.pk,
    )


@receiver(signals.integration_failing)
def integration_failing(sender, integration, reason, **kwargs):
    services.raise_exception(
        integration.organization_id,
        ExceptionKind.INTEGRATION_ERROR,
        f"{integration.name} moved to Error: {reason}",
        integration=integration,
        entity_type="integration",
        entity_id=integration.pk,
    )


@receiver(signals.integration_recovered)
def integration_recovered(sender, integration, **kwargs):
    services.resolve(
        integration.organization_id,
        ExceptionKind.INTEGRATION_ERROR,
        integration=integration,
        entity_type="integration",
        entity_id=integration.pk,
    )


# --- the engines' triggers: each change enqueues its engine's task once it is committed -----------------


@receiver(order_signals.order_received)
def order_received(sender, organization_id, order_id, created, **kwargs):
    from .tasks import process_order_task

    enqueue(process_order_task, args=[order_id, created])


# Set by process_order_task to the order it will route itself once the rules let it through.
routing_inline: ContextVar[int | None] = ContextVar("routing_inline", default=None)


@receiver(order_signals.order_ready)
def order_ready(sender, organization_id, order_id, **kwargs):
    from .tasks import route_order_task

    if routing_inline.get() == order_id:
        return
    enqueue(route_order_task, args=[order_id])


def inventory_doorbell(organization_id) -> str:
    return f"automations:inventory-rung:{organization_id}"


@receiver(inventory_signals.availability_changed)
def availability_changed(sender, organization_id, **kwargs):
    """One inventory task per organization waiting at a time: it drains every change committed before it starts."""
    from .tasks import inventory_changes_task

    enqueue_once(inventory_changes_task, inventory_doorbell(organization_id), args=[organization_id])


@receiver(signals.status_changed)
def status_changed(sender, organization_id, integration_id, previous, status, **kwargs):
    """A channel enabled again gets its figures recomputed (the engine ignores integrations that sell nothing)."""
    from .tasks import channel_inventory_task

    if previous == IntegrationStatus.DISABLED and status != IntegrationStatus.DISABLED:
        enqueue(channel_inventory_task, args=[organization_id, integration_id])
