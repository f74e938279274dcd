"""Fixtures of the order-flow tests."""

import pytest

from orders.choices import OrderStatus


@pytest.fixture
def ready_order(ingest, order_body, stock, standard_method):
    """#1001: 2 × TSHIRT-S, 1 × MUG, ready to route."""
    order, _ = ingest(order_body)
    assert order.status == OrderStatus.READY
    return order
