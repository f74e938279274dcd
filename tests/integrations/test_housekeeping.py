"""Housekeeping (integrations.housekeeping, the daily beat task): what is deleted once it has served, and what is kept."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import audit, housekeeping
from integrations.choices import DeliveryStatus, EventKind
from integrations.models import IntegrationEvent, OutboxEvent, WebhookAttempt, WebhookDelivery
from integrations.tasks import prune_deliveries_task
from tests.integrations.delivery_path import flush

S = DeliveryStatus
pytestmark = pytest.mark.usefixtures("local_receivers")


def aged(event, days):
    IntegrationEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=days))
    return event.pk


def test_prune_deletes_old_succeeded_deliveries_only(
    subscribe, receiver, ingest, order_body, products, settings
):
    subscribe(events=["order.created"])
    receiver.script = [(200, "ok"), (500, "no")]
    ingest(order_body)
    ingest({**order_body, "external_id": "2"})
    flush()
    old = timezone.now() - timedelta(days=settings.WEBHOOK_RETENTION_DAYS + 1)
    WebhookDelivery.objects.update(succeeded_at=old, created_at=old)
    OutboxEvent.objects.update(dispatched_at=old)

    pruned = housekeeping.prune()

    assert pruned["deliveries"] == 1 and pruned["outbox_events"] >= 2
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == [S.FAILED]
    assert WebhookAttempt.objects.count() == 1


def test_the_request_log_is_pruned_after_its_retention_and_the_trail_kept(integration, settings):
    # Given the request log kept for 5 days: requests 6 and 4 days old, and an older status move.
    settings.REQUEST_LOG_RETENTION_DAYS = 5
    request = dict(actor="key:abc", data={"method": "GET", "path": "/api/v1/me", "status": 200})
    expired = aged(
        audit.record_event(integration, EventKind.API_REQUEST, "GET /api/v1/me → 200", **request), 6
    )
    recent = aged(
        audit.record_event(integration, EventKind.API_REQUEST, "GET /api/v1/me → 200", **request), 4
    )
    trail = aged(audit.record_event(integration, EventKind.STATUS_CHANGED, "Connected → Error: down"), 60)

    # When the daily task runs
    pruned = prune_deliveries_task.apply().get()

    # Then only the request past the retention is gone
    assert pruned["request_log"] == 1
    remaining = set(IntegrationEvent.objects.values_list("pk", flat=True))
    assert expired not in remaining and {recent, trail} <= remaining
