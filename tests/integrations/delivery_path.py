"""Driving the webhook path in a test: dispatch and deliver everything owed, make retries due."""

from django.utils import timezone

from integrations.choices import IntegrationStatus
from integrations.models import Integration, WebhookDelivery
from integrations.webhooks import delivery, outbox

GRANTS = ["webhooks:read", "webhooks:write", "orders:read", "fulfillments:read", "shipping_requests:read"]


def flush():
    """Everything owed, now: dispatch the outbox, then deliver until nothing is due."""
    while outbox.dispatch_outbox()[0]:
        pass
    sent = 0
    while batch := delivery.deliver_due():
        sent += batch
    return sent


def make_due(**filters):
    WebhookDelivery.objects.filter(**filters).update(next_attempt_at=timezone.now())


def connected(integration):
    Integration.objects.filter(pk=integration.pk).update(status=IntegrationStatus.CONNECTED)
    integration.refresh_from_db()
    return integration
