"""
Operator actions on webhook deliveries (the admin's deliveries list, `manage.py replay_deliveries`): queue
deliveries again with a fresh retry schedule, and send a subscription a test event through the normal path.
"""

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from core import signing

from ..audit import record_event
from ..choices import TEST_EVENT_TYPE, DeliveryStatus, EventKind
from ..models import Integration, WebhookDelivery, WebhookSubscription
from . import sequences
from .doorbells import ring
from .outbox import new_event_id


def replay(deliveries, *, actor=None) -> int:
    """
    Queue deliveries again with a fresh retry schedule (same webhook-id and body); returns how many. One
    event per integration says who replayed what.
    """
    now = timezone.now()
    with transaction.atomic():
        chosen = WebhookDelivery.objects.filter(pk__in=deliveries.values("pk")).exclude(
            status=DeliveryStatus.PENDING
        )
        per_integration = dict(
            chosen.values_list("integration_id").annotate(n=Count("pk")).values_list("integration_id", "n")
        )
        count = chosen.update(
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, locked_until=None, updated_at=now
        )
        for integration in Integration.objects.filter(pk__in=list(per_integration)).select_related(
            "organization"
        ):
            n = per_integration[integration.pk]
            record_event(
                integration,
                EventKind.DELIVERY,
                f"{n} webhook deliver{'y' if n == 1 else 'ies'} queued again (replay).",
                actor=actor,
                data={"replayed": n},
            )
        if count:
            transaction.on_commit(lambda: ring(count))
    return count


def send_test_event(subscription: WebhookSubscription, *, actor=None) -> WebhookDelivery:
    """A `webhook.test` delivery to one subscription, sent now through the normal path."""
    with transaction.atomic():
        # A test event is about its subscription: numbered on that object's own counter.
        key = (subscription.integration_id, "webhook", str(subscription.pk))
        sequence = sequences.take([key])[key][0]
        event_id, now = new_event_id(), timezone.now()
        data = {"message": "A test event from Switchyard.", "webhook": str(subscription.pk)}
        delivery = WebhookDelivery.objects.create(
            organization_id=subscription.integration.organization_id,
            integration_id=subscription.integration_id,
            subscription=subscription,
            event_id=event_id,
            event_type=TEST_EVENT_TYPE,
            sequence=sequence,
            body=signing.payload(event_id, TEST_EVENT_TYPE, now, sequence, data).decode("utf-8"),
            next_attempt_at=now,
        )
        record_event(
            subscription.integration,
            EventKind.DELIVERY,
            f"Test event {event_id} queued for {subscription.url}.",
            actor=actor,
            data={"delivery": delivery.pk, "event_id": event_id},
        )
        transaction.on_commit(lambda: ring(1))
    return delivery
