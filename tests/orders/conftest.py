"""Fixtures of the order-flow tests: a ready order, and the channel's and the 3PL's API clients."""

import pytest

from orders import services
from orders.choices import OrderStatus
from orders.models import Order
from tests.orders.helpers import ORDERS, integration_key


@pytest.fixture
def ready_order(ingest, order_body, stock, standard_method):
    """#1001: 2 × TSHIRT-S, 1 × MUG, ready to route."""
    order, _ = ingest(order_body)
    assert order.status == OrderStatus.READY
    return order


@pytest.fixture
def channel(api_client, integration_key):
    """The web shop's client (custom-channel's recommended grants)."""
    return api_client(integration_key)


@pytest.fixture
def tpl(api_client, warehouse_integration):
    """The 3PL's client: custom-3pl's recommended grants, and orders:read to see the orders routed to it."""
    grants = [*warehouse_integration.connector.recommended_grants, "orders:read"]
    return api_client(integration_key(warehouse_integration, grants=grants))


@pytest.fixture
def routed(channel, order_body, stock, standard_method, warehouse):
    """The channel's order #1001 (2 × TSHIRT-S, 1 × MUG), routed whole to the 3PL's warehouse."""
    response = channel.post(ORDERS, order_body, format="json")
    assert response.status_code == 201, response.content
    order = services.make_ready(Order.objects.get(pk=response.json()["id"]))  # as the hold engine, no rules
    return order, services.create_shipping_request(order, warehouse)
