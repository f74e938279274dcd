"""Webhook delivery: outbox → deliveries → signed POSTs to a real receiver on 127.0.0.1, retries, dead-lettering."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from automations.choices import ExceptionKind, ExceptionStatus
from automations.models import SyncException
from integrations import delivery, services, webhooks
from integrations.choices import DeliveryStatus, EventKind, IntegrationStatus
from integrations.models import IntegrationEvent, OutboxEvent, WebhookAttempt, WebhookDelivery
from tokens import services as key_services
from tokens.choices import KeyKind

GRANTS = ["webhooks:read", "webhooks:write", "orders:read", "fulfillments:read", "shipping_requests:read"]


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT = 2.0
    settings.WEBHOOK_CONNECT_TIMEOUT = 1.0


@pytest.fixture
def shop_key(integration):
    return key_services.issue_key(kind=KeyKind.INTEGRATION, name="hooks", integration=integration, grants=GRANTS)


@pytest.fixture
def subscribe(shop_key, receiver):
    def go(integration=None, key=None, events=("order.created", "order.updated", "fulfillment.created"), path="/"):
        key = key or shop_key
        return webhooks.subscribe(integration or key.key.integration, receiver.url + path, list(events), key.key)

    return go


def flush():
    """Everything owed, now: dispatch the outbox, then deliver until nothing is due."""
    while delivery.dispatch_outbox()[0]:
        pass
    sent = 0
    while batch := delivery.deliver_due():
        sent += batch
    return sent


def make_due(**filters):
    WebhookDelivery.objects.filter(**filters).update(next_attempt_at=timezone.now())


def test_an_order_is_delivered_signed_with_the_api_representation(
    subscribe, receiver, ingest, order_body, products, api_client, shop_key
):
    subscription, secret = subscribe(events=["order.created"])
    order, _ = ingest(order_body)

    assert flush() == 1

    [request] = receiver.requests
    Webhook(secret).verify(request.body, request.headers)  # the reference verifier accepts it
    body = request.json()
    assert set(body) == {"id", "type", "created_at", "sequence", "data"}
    assert body["type"] == "order.created" and body["sequence"] == 1
    assert body["id"].startswith("evt_") and request.headers["webhook-id"] == body["id"]
    assert body["data"] == api_client(shop_key).get(f"/api/v1/orders/{order.pk}").json()
    sent = WebhookDelivery.objects.get()
    assert (sent.status, sent.attempts, sent.last_status_code, sent.sequence) == (
        DeliveryStatus.SUCCEEDED, 1, 200, 1
    )
    assert sent.succeeded_at is not None and sent.locked_until is None
    assert WebhookAttempt.objects.get().succeeded
