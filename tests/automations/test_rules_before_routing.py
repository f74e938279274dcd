"""
No order is routed past the automation rules: whatever way it became ready (its hold-engine message lost,
its mapping fixed first), the rules for its arrival run once before the routing engine may ship it.
"""

from automations.choices import RuleTrigger
from automations.engines import hold, routing
from automations.models import EngineSettings, RuleRun
from orders import services as orders
from orders.choices import OrderStatus
from orders.models import Order


def test_a_ready_order_the_rules_never_saw_gets_them_before_it_is_routed(
    ingest_new, order_body, stock, big_order_rule
):
    # given: an order of 600 made ready without the hold engine (its message was lost)
    order = orders.make_ready(
        ingest_new(order_body, lines=[{"sku": "MUG", "quantity": 2, "unit_price": "300"}])
    )
    assert order.rules_applied_at is None

    counts = routing.route_order_by_id(order.pk)

    order.refresh_from_db()
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, "review: big order")
    assert order.rules_applied_at is not None and not order.shipping_requests.exists()
    assert counts.get("routed") is None


def test_an_order_held_for_mapping_whose_message_was_lost_gets_its_rules_from_the_sweep(
    ingest_new, order_body, big_order_rule
):
    # given: an order of 600 with an unmapped SKU: held by ingest, and its hold-engine message lost
    order = ingest_new(order_body, lines=[{"sku": "NOPE-1", "quantity": 2, "unit_price": "300"}])
    assert order.status == OrderStatus.ON_HOLD and order.rules_applied_at is None

    hold.run_now(order.organization)

    order.refresh_from_db()
    assert order.rules_applied_at is not None
    assert "review: big order" in order.hold_reason and "unmapped SKU NOPE-1" in order.hold_reason
    assert RuleRun.objects.filter(order=order, trigger=RuleTrigger.ORDER_CREATED, matched=True).count() == 1
    hold.run_now(order.organization)  # once only
    assert RuleRun.objects.filter(order=order).count() == 1


def test_with_the_hold_engine_off_ready_orders_are_routed_without_rules(
    org, ingest_new, order_body, stock, big_order_rule
):
    EngineSettings.objects.create(organization=org, hold_enabled=False)
    order = ingest_new(order_body, lines=[{"sku": "MUG", "quantity": 2, "unit_price": "300"}])
    assert order.status == OrderStatus.READY  # ingest let it through: no rules to apply

    routing.route_order_by_id(order.pk)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.SENT_TO_FULFILLMENT
    assert not RuleRun.objects.exists()
