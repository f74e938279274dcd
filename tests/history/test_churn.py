"""The hub at work (orders in, routing, webhook deliveries, key use, status moves) writes no history rows:
only configuration changes do."""

import pytest
from django.apps import apps

from automations.engines.routing import route_order_by_id
from integrations.models import Integration
from integrations.webhooks import delivery, outbox
from orders.models import Order, ShippingRequest
from tokens import issuing as key_services
from tokens.choices import KeyKind

from .helpers import history_models, history_rows

pytestmark = pytest.mark.django_db

SHOP_GRANTS = ["orders:read", "orders:write", "webhooks:read", "webhooks:write", "exceptions:write"]


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT = 2.0


def flush():
    while outbox.dispatch_outbox()[0]:
        pass
    while delivery.deliver_due():
        pass


def order(number):
    return {
        "external_id": f"H-{number}",
        "number": f"#H{number}",
        "currency": "USD",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "country": "US"},
        "shipping_method": "shopify-std",
        "lines": [{"sku": "MUG", "quantity": 1, "unit_price": "8.00"}],
    }


def test_every_configuration_model_has_history():
    labels = {m._meta.label for m in history_models()}
    # The historical models themselves are not configuration: only the tracked ones are listed.
    assert labels == {
        "integrations.Integration",
        "integrations.WebhookSubscription",
        "inventory.SkuMapping",
        "orders.ShippingMethodMapping",
        "automations.AutomationRule",
        "automations.RoutingRule",
        "automations.RoutingRuleLocation",
        "automations.EngineSettings",
        "tokens.ApiKey",
    }
    # The historical model is a registered model of the app, under the name migrations give it.
    assert Integration.history.model in apps.get_models()
    assert Integration.history.model._meta.label == "integrations.HistoricalIntegration"


def test_running_the_hub_writes_no_history_rows(
    integration, stock, warehouse, standard_method, routing_settings, card, receiver, api_client
):
    # Configuration first: each of these is a change worth its row.
    shop_key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="shop", integration=integration, grants=SHOP_GRANTS
    )
    card("Everywhere", [warehouse])
    client = api_client(shop_key)
    hook = client.post("/api/v1/webhooks", {"url": receiver.url, "events": ["order.created"]}, format="json")
    assert hook.status_code == 201, hook.content
    before = history_rows()

    # The hub at work: a handshake, orders in through the API, routing, deliveries, an error report.
    assert client.post("/api/v1/integration/connect").status_code == 200
    for number in range(3):
        response = client.post("/api/v1/orders", order(number), format="json")
        assert response.status_code == 201, response.content
    for pk in Order.objects.values_list("pk", flat=True):
        route_order_by_id(pk)
    flush()
    assert client.post(
        "/api/v1/integration/error", {"message": "upstream 502"}, format="json"
    ).status_code in (
        200,
        202,
    )

    # It did happen, through the paths that save these models with runtime fields only.
    integration.refresh_from_db()
    assert integration.status == "error" and integration.last_activity_at is not None
    assert ShippingRequest.objects.count() == 3
    assert len(receiver.requests) == 3
    shop_key.key.refresh_from_db()
    assert shop_key.key.last_used_at is not None
    assert history_rows() == before

    # ...while a configuration change still is one row.
    integration.name = "Renamed shop"
    integration.save()
    after = history_rows()
    assert after.pop("integrations.Integration") == before.pop("integrations.Integration") + 1
    assert after == before


def test_a_save_of_untracked_fields_only_writes_no_row(integration):
    rows = integration.history.count()

    integration.consecutive_failures = 3
    integration.save(update_fields=["consecutive_failures", "updated_at"])
    integration.save()  # a full save that changed nothing tracked

    assert integration.history.count() == rows
    integration.notification_email = "ops@shop.test"
    integration.save(update_fields=["notification_email"])
    assert integration.history.count() == rows + 1
