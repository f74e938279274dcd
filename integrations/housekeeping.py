"""
Housekeeping of the integrations app: what is deleted once it has served, in one place for the daily beat task
(integrations.tasks.prune_deliveries_task) — succeeded deliveries and their attempts, dispatched outbox rows,
the request log (one IntegrationEvent per API request), the catch-up feed's events past their retention, and
signing secrets whose rotation overlap ended. Failed and dead deliveries, every other kind of event on the audit
trail, and the sequence counters (a number must never be given twice), are kept.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, Q, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from .choices import DeliveryStatus, EventKind, EventType
from .models import (
    IntegrationEvent,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from .webhooks.feed import retention_cutoff


def _prunable_outbox(cutoff):
    """
    Dispatched outbox rows past the retention, but never a shipment a manifest connector has not taken yet:
    its dispatch reads them from the outbox past its cursor, however long it stayed in error.
    """
    cursor = Coalesce(
        Cast(KeyTextTransform("dispatch_after", "integration__manifest_state"), BigIntegerField()), Value(0)
    )
    owed_to_manifest = Q(
        type=EventType.FULFILLMENT_CREATED,
        integration__connector__manifest__has_key="dispatch",
        pk__gt=cursor,
    )
    return OutboxEvent.objects.filter(dispatched_at__lt=cutoff).exclude(owed_to_manifest)


def prune(now=None, batch: int = 5000) -> dict[str, int]:
    """
    Delete succeeded deliveries (with their attempts) and dispatched outbox rows past WEBHOOK_RETENTION_DAYS,
    and the request log (API-request events) past REQUEST_LOG_RETENTION_DAYS; in batches of `batch` rows.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    deleted = {"deliveries": 0, "outbox_events": 0, "request_log": 0}
    while True:
        ids = list(
            WebhookDelivery.objects.filter(
                status=DeliveryStatus.SUCCEEDED, succeeded_at__lt=cutoff
            ).values_list("pk", flat=True)[:batch]
        )
        if not ids:
            break
        WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
        deleted["deliveries"] += WebhookDelivery.objects.filter(pk__in=ids)._raw_delete(connection.alias)
    while True:
        ids = list(_prunable_outbox(cutoff).values_list("pk", flat=True)[:batch])
        if not ids:
            break
        WebhookDelivery.objects.filter(outbox_event_id__in=ids).update(outbox_event=None)
        WebhookEvent.objects.filter(outbox_event_id__in=ids).update(outbox_event=None)
        deleted["outbox_events"] += OutboxEvent.objects.filter(pk__in=ids)._raw_delete(connection.alias)
    deleted["webhook_events"] = prune_webhook_events(now, batch=batch)
    deleted["request_log"] = prune_request_log(now, batch=batch)
    deleted["previous_secrets"] = drop_previous_secrets(now)
    return deleted


def prune_webhook_events(now=None, batch: int = 5000) -> int:
    """Delete the feed's events recorded before WEBHOOK_EVENT_RETENTION_DAYS (their deliveries keep their bodies)."""
    old = WebhookEvent.objects.filter(created_at__lt=retention_cutoff(now))
    deleted = 0
    while True:
        ids = list(old.values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += WebhookEvent.objects.filter(pk__in=ids)._raw_delete(connection.alias)


def drop_previous_secrets(now=None) -> int:
    """Forget the rotated-out signing secrets whose overlap has ended (they already sign nothing)."""
    ended = WebhookSubscription.objects.filter(previous_secret_until__lte=now or timezone.now())
    return ended.update(previous_secret="", previous_secret_until=None)


def prune_request_log(now=None, batch: int = 5000) -> int:
    """Delete API-request events older than REQUEST_LOG_RETENTION_DAYS; the rest of the audit trail stays."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.REQUEST_LOG_RETENTION_DAYS)
    old_requests = IntegrationEvent.objects.filter(kind=EventKind.API_REQUEST, created_at__lt=cutoff)
    deleted = 0
    while True:
        ids = list(old_requests.values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += IntegrationEvent.objects.filter(pk__in=ids)._raw_delete(connection.alias)
