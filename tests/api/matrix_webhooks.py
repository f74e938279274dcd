"""
Webhook subscriptions in the tenant-boundary matrix (tests/api/test_tenant_matrix.py): `ENTRIES` for its
REGISTRY and `build(world)` for its `world` fixture. Import this module after `Tenancy` is defined there.

Tenant A's channel and 3PL each subscribe with a canary URL (a leak of a row's content is caught, not only
its id); Globex's channel subscribes too, so the other organization's lists are not vacuous. The outsiders'
POST names a literal public address, so no DNS is consulted and the write really happens — for the
outsider's own integration, never A's.
"""

from integrations.models import WebhookSubscription
from tests.api.test_tenant_matrix import Tenancy

PUBLIC_TARGET = "https://93.184.216.34/hooks"  # a literal public IPv4 address: resolved without DNS


def build(world):
    """A subscription each for A's channel, A's 3PL and Globex's channel."""
    for integration, url in (
        (world.channel, "https://hooks.example.com/CANARY-A-shop"),
        (world.tpl, "https://hooks.example.com/CANARY-A-3pl"),
        (world.b, "https://hooks.example.net/globex"),
    ):
        WebhookSubscription.objects.create(
            integration=integration, url=url, event_types=["order.created"], secret="whsec_bWF0cml4"
        )


def webhooks_of_a(w):
    return WebhookSubscription.objects.filter(integration__in=w.tenant_a)


WEBHOOKS = dict(
    tenant=webhooks_of_a,
    org=lambda w: WebhookSubscription.objects.filter(integration__organization=w.org_a),
)

ENTRIES: dict[str, Tenancy] = {
    "api:webhook-list": Tenancy(
        **WEBHOOKS, body=lambda w: {"url": PUBLIC_TARGET, "events": ["order.created", "inventory.updated"]}
    ),
    "api:webhook-detail": Tenancy(**WEBHOOKS, obj=lambda w: webhooks_of_a(w).first()),
}
