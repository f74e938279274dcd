"""
Webhook subscriptions in the tenant-boundary matrix (tests/api/test_tenant_matrix.py): `ENTRIES` for its
REGISTRY and `build(world)` for its `world` fixture. Import this module after `Tenancy` is defined there.

Tenant A's channel and 3PL each subscribe with a canary URL (a leak of a row's content is caught, not only
its id); Globex's channel subscribes too, so the other organization's lists are not vacuous. The outsiders'
POST names a literal public address, so no DNS is consulted and the write really happens — for the
outsider's own integration, never A's. Each subscription has a dead delivery with one attempt, whose body
and error carry the canary, for the deliveries routes (list, one, replay), and a recorded event whose body
carries it, for the catch-up feed (GET /webhook-events).
"""

from django.utils import timezone

from integrations.choices import DeliveryStatus
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from tests.api.test_tenant_matrix import Tenancy

PUBLIC_TARGET = "https://93.184.216.34/hooks"  # a literal public IPv4 address: resolved without DNS


def build(world):
    """A subscription each for A's channel, A's 3PL and Globex's channel."""
    for integration, url in (
        (world.channel, "https://hooks.example.com/CANARY-A-shop"),
        (world.tpl, "https://hooks.example.com/CANARY-A-3pl"),
        (world.b, "https://hooks.example.net/globex"),
    ):
        subscription = WebhookSubscription.objects.create(
            integration=integration, url=url, event_types=["order.created"], secret="whsec_bWF0cml4"
        )
        now, canary = timezone.now(), url.rsplit("/", 1)[-1]
        delivery = WebhookDelivery.objects.create(
            organization_id=integration.organization_id,
            integration=integration,
            subscription=subscription,
            event_id=f"evt_{canary}",
            event_type="order.created",
            sequence=1,
            body=f'{{"id":"evt_{canary}","type":"order.created","data":{{"note":"{canary}"}}}}',
            status=DeliveryStatus.DEAD,
            attempts=1,
            next_attempt_at=now,
            last_error=f"{canary} refused",
        )
        WebhookAttempt.objects.create(
            delivery=delivery, number=1, url=url, error=f"{canary} refused", started_at=now
        )
        WebhookEvent.objects.create(
            organization_id=integration.organization_id,
            integration=integration,
            event_id=f"evt_feed_{canary}",
            type="order.created",
            object_type="order",
            object_id="1",
            sequence=1,
            body=f'{{"id":"evt_feed_{canary}","type":"order.created","data":{{"note":"{canary}"}}}}',
            created_at=now,
        )


def webhooks_of_a(w):
    return WebhookSubscription.objects.filter(integration__in=w.tenant_a)


WEBHOOKS = dict(
    tenant=webhooks_of_a,
    org=lambda w: WebhookSubscription.objects.filter(integration__organization=w.org_a),
)


def deliveries_of_a(w):
    return WebhookDelivery.objects.filter(integration__in=w.tenant_a)


DELIVERIES = dict(
    tenant=deliveries_of_a,
    org=lambda w: WebhookDelivery.objects.filter(organization=w.org_a),
    obj=lambda w: deliveries_of_a(w).first(),
)


def events_of_a(w):
    return WebhookEvent.objects.filter(integration__in=w.tenant_a)


ENTRIES: dict[str, Tenancy] = {
    # The catch-up feed: rows are known by their evt_… id (the JSON row's "id", the model's event_id).
    "api:webhook-event-list": Tenancy(
        tenant=events_of_a,
        org=lambda w: WebhookEvent.objects.filter(organization=w.org_a),
        key=lambda row: row["id"] if isinstance(row, dict) else row.event_id,
    ),
    "api:webhook-list": Tenancy(
        **WEBHOOKS, body=lambda w: {"url": PUBLIC_TARGET, "events": ["order.created", "inventory.updated"]}
    ),
    "api:webhook-detail": Tenancy(**WEBHOOKS, obj=lambda w: webhooks_of_a(w).first()),
    # A's subscription by its id: its deliveries, a test event, a new secret — all 404 to an outsider.
    "api:webhook-deliveries": Tenancy(**WEBHOOKS, obj=lambda w: webhooks_of_a(w).first()),
    "api:webhook-test": Tenancy(**WEBHOOKS, obj=lambda w: webhooks_of_a(w).first()),
    "api:webhook-rotate-secret": Tenancy(
        **WEBHOOKS, obj=lambda w: webhooks_of_a(w).first(), body=lambda w: {"overlap_hours": 1}
    ),
    "api:webhook-delivery-detail": Tenancy(**DELIVERIES),
    "api:webhook-delivery-replay": Tenancy(**DELIVERIES),
}
