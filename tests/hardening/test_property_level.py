"""
Object property level authorization (OWASP API3:2023): a key can neither write the fields the hub owns
(status, owner, routing, ids) by putting them in a body, nor read the properties it may not see (secret
settings, webhook secrets, another tenant's ids).
"""

import pytest

from integrations import connector_settings
from integrations.models import WebhookSubscription
from orders.choices import OrderStatus
from orders.models import Order
from tokens import issuing as key_services
from tokens.choices import KeyKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(api_client, integration):
    return api_client(
        key_services.issue_key(
            kind=KeyKind.INTEGRATION,
            name="shop",
            integration=integration,
            grants=["orders:read", "orders:write", "webhooks:read", "webhooks:write"],
        )
    )


def test_fields_the_hub_owns_are_not_written_from_an_order_body(
    shop, integration, other_integration, order_body, products, warehouse
):
    body = {
        **order_body,
        "id": "999999",
        "status": OrderStatus.FULFILLED,
        "organization": other_integration.organization_id,
        "integration": other_integration.pk,
        "source": other_integration.pk,
        "routing_location": warehouse.pk,
        "hold_reasons": [],
        "tags": ["vip"],
        "rules_applied_at": "2020-01-01T00:00:00Z",
    }
    response = shop.post("/api/v1/orders", body, format="json")
    # Refused, each such field named (issue 17: strict by default; they were ignored before), nothing written.
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["details"]) == set(body) - set(order_body) - {"tags"}  # tags: a field
    assert not Order.objects.exists()

    response = shop.post("/api/v1/orders", order_body, format="json")
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    assert order.source_id == integration.pk
    assert order.organization_id == integration.organization_id
    assert order.status in {OrderStatus.NEW, OrderStatus.READY, OrderStatus.ON_HOLD}
    assert order.routing_location_id is None
    assert order.rules_applied_at is None
    assert not Order.objects.filter(source=other_integration).exists()


def test_the_integration_answer_leaves_secret_settings_out(
    api_client, org, strict_connector, make_integration, integration
):
    strict = make_integration(
        org,
        strict_connector,
        "Strict",
        settings={"base_url": "https://shop.example.test", "api_token": "tok-SECRET-42", "page_size": 5},
    )
    key = key_services.issue_key(kind=KeyKind.INTEGRATION, name="strict", integration=strict)
    response = api_client(key).get("/api/v1/integration")
    assert response.status_code == 200, response.content
    assert response.json()["settings"] == {"base_url": "https://shop.example.test", "page_size": 5}
    assert "tok-SECRET-42" not in response.content.decode()
    assert connector_settings.full_settings(strict)["api_token"] == "tok-SECRET-42"  # kept, just not shown


def test_a_webhook_secret_is_shown_once_and_cannot_be_chosen_by_the_client(shop, integration):
    hook = {"url": "https://hooks.example.test/in", "events": ["order.created"]}
    chosen = shop.post("/api/v1/webhooks", {**hook, "secret": "whsec_chosen"}, format="json")
    assert chosen.status_code == 400 and list(chosen.json()["error"]["details"]) == ["secret"], chosen.content
    assert not WebhookSubscription.objects.exists()

    created = shop.post("/api/v1/webhooks", hook, format="json")
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert WebhookSubscription.objects.get(integration=integration).secret == secret

    listed = shop.get("/api/v1/webhooks")
    assert listed.status_code == 200
    assert secret not in listed.content.decode()
    assert all("secret" not in hook for hook in listed.json()["results"])
