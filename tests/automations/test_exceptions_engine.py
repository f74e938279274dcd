"""The exceptions engine's sweep: stuck orders, causes that cleared, the stale rule, retention, the switch."""

from datetime import timedelta

import pytest
from django.utils import timezone

from automations import exceptions
from automations.choices import ExceptionStatus
from automations.engine_settings import engine_settings
from automations.engines import exceptions as engine
from automations.models import AutomationRule, RuleRun, SyncException
from core.sync_exceptions import ExceptionKind
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import Order, OrderLine, ShippingRequest
from orders.services import UNROUTABLE_REASON

HOURS = 48  # EngineSettings.stuck_after_hours default


@pytest.fixture
def make_order(org, integration):
    """`make_order(status, age_hours=0, **fields)`: an order of the channel, last changed that long ago."""
    counter = iter(range(1, 10_000))

    def make(status=OrderStatus.READY, age_hours=0, organization=None, source=None, **fields):
        number = next(counter)
        order = Order.objects.create(
            organization=organization or org,
            source=source or integration,
            external_id=f"E{number}",
            number=f"#{number}",
            status=status,
            **fields,
        )
        if age_hours:
            Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(hours=age_hours))
        order.refresh_from_db()
        return order

    return make


def open_exceptions(kind=None):
    rows = SyncException.objects.filter(status=ExceptionStatus.OPEN)
    return rows.filter(kind=kind) if kind else rows


def raise_for(order, kind, integration=None, **extra):
    return exceptions.raise_exception(
        order.organization_id,
        kind,
        f"Order {order}: {kind}",
        integration=integration or order.source,
        entity_type="order",
        entity_id=order.pk,
        **extra,
    )


# --- stuck orders ---------------------------------------------------------------------------------------


def test_order_ready_too_long_is_raised_against_its_channel(org, integration, make_order):
    stuck = make_order(OrderStatus.READY, age_hours=HOURS + 1)
    make_order(OrderStatus.READY, age_hours=HOURS - 1)  # not yet
    make_order(OrderStatus.ON_HOLD, age_hours=HOURS * 3)  # held: a person decides, not stuck
    make_order(OrderStatus.FULFILLED, age_hours=HOURS * 3)

    counts = engine.sweep(org)

    exc = open_exceptions(ExceptionKind.STUCK_ORDER).get()
    assert counts["stuck"] == 1
    assert (exc.integration, exc.entity_type, exc.entity_id) == (integration, "order", str(stuck.pk))
    assert f"Order {stuck} has been ready since {stuck.updated_at:%Y-%m-%d %H:%M} UTC" in exc.message
    assert "routing engine" in exc.message
    assert exc.data == {"status": "ready", "since": stuck.updated_at.isoformat()}


def test_order_sent_too_long_is_raised_against_the_fulfiller(
    org, make_order, warehouse, warehouse_integration
):
    order = make_order(OrderStatus.SENT_TO_FULFILLMENT)
    ShippingRequest.objects.create(
        organization=org, order=order, location=warehouse, fulfiller=warehouse_integration
    )
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(hours=HOURS + 5))

    engine.sweep(org)

    exc = open_exceptions(ExceptionKind.STUCK_ORDER).get()
    assert exc.integration == warehouse_integration
    assert "sent to fulfillment" in exc.message and "Acme 3PL is connected" in exc.message


def test_sent_order_without_an_open_request_falls_back_to_its_channel(
    org, integration, make_order, warehouse, warehouse_integration
):
    order = make_order(OrderStatus.SENT_TO_FULFILLMENT)
    ShippingRequest.objects.create(
        organization=org,
        order=order,
        location=warehouse,
        fulfiller=warehouse_integration,
        status=ShippingRequestStatus.CANCELED,
    )
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(hours=HOURS + 5))

    engine.sweep(org)

    assert open_exceptions(ExceptionKind.STUCK_ORDER).get().integration == integration


def test_threshold_is_the_organizations(org, make_order):
    engine_settings(org).__class__.objects.filter(organization=org).update(stuck_after_hours=2)
    make_order(OrderStatus.READY, age_hours=3)

    assert engine.sweep(org)["stuck"] == 1


def test_a_stuck_order_is_raised_once_and_seen_again_at_each_sweep(org, make_order):
    make_order(OrderStatus.READY, age_hours=HOURS + 1)
    engine.sweep(org)
    first = open_exceptions().get()

    again = engine.sweep(org)

    second = open_exceptions().get()
    assert again["stuck"] == 0
    assert (second.pk, second.occurrences) == (first.pk, 1)
    assert second.last_seen > first.last_seen  # the stale rule must not close a live cause


def test_stuck_candidates_are_capped_per_run(org, make_order, monkeypatch):
    monkeypatch.setattr(engine, "STUCK_BATCH", 2)
    for _ in range(3):
        make_order(OrderStatus.READY, age_hours=HOURS + 1)

    assert [engine.sweep(org)["stuck"] for _ in range(3)] == [2, 1, 0]
    assert open_exceptions().count() == 3


def test_stuck_query_count_does_not_grow_with_orders(org, make_order, django_assert_max_num_queries):
    for _ in range(20):
        make_order(OrderStatus.READY, age_hours=HOURS + 1)
    settings = engine_settings(org)

    # Seen-again UPDATE, candidates, their integrations, one INSERT (+ the savepoint's two): not one per order.
    with django_assert_max_num_queries(6):
        assert engine.raise_stuck(org, settings, timezone.now()) == 20


@pytest.mark.parametrize(
    "change",
    [
        {"status": OrderStatus.SENT_TO_FULFILLMENT},  # routed: updated now
        {"status": OrderStatus.FULFILLED},
        {"status": OrderStatus.CANCELED},
    ],
)
def test_stuck_exception_resolves_when_the_order_moves_on(org, make_order, change):
    order = make_order(OrderStatus.READY, age_hours=HOURS + 1)
    engine.sweep(org)

    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now(), **change)
    counts = engine.sweep(org)

    exc = SyncException.objects.get()
    assert counts["resolved"] == 1
    assert exc.status == ExceptionStatus.RESOLVED and exc.resolved_at is not None
    assert exc.data["resolved_by"] == "cause_cleared" and exc.data["status"] == "ready"  # keys kept


# --- causes that cleared --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "cleared"),
    [
        ({"status": OrderStatus.ON_HOLD, "hold_reason": f"review; {UNROUTABLE_REASON}"}, False),
        ({"status": OrderStatus.SENT_TO_FULFILLMENT}, True),
        ({"status": OrderStatus.CANCELED}, True),
        ({"status": OrderStatus.ON_HOLD, "hold_reason": "review"}, True),  # held, but not for routing
        ({"status": OrderStatus.READY}, True),  # released: the routing engine tries again
    ],
)
def test_unroutable_exception_resolves_once_the_order_is_not_held_for_routing(
    org, make_order, fields, cleared
):
    order = make_order(**fields)
    exc = raise_for(order, ExceptionKind.UNROUTABLE_ORDER)

    counts = engine.sweep(org)

    exc.refresh_from_db()
    assert (exc.status == ExceptionStatus.RESOLVED) is cleared
    assert counts["resolved"] == int(cleared)


@pytest.mark.parametrize(
    ("mapped", "status", "cleared"),
    [
        (False, OrderStatus.ON_HOLD, False),
        (True, OrderStatus.ON_HOLD, True),
        (False, OrderStatus.CANCELED, True),
    ],
)
def test_unmapped_sku_resolves_once_every_line_is_mapped_or_the_order_canceled(
    org, make_order, products, mapped, status, cleared
):
    order = make_order(status)
    OrderLine.objects.create(
        order=order, line_number=1, product=products["MUG"], sku="MUG", external_sku="MUG", quantity=1
    )
    OrderLine.objects.create(
        order=order,
        line_number=2,
        product=products["TSHIRT-S"] if mapped else None,
        sku="TSHIRT-S" if mapped else "",
        external_sku="SHOP-TS",
        quantity=1,
    )
    exc = raise_for(order, ExceptionKind.UNMAPPED_SKU)

    engine.sweep(org)

    exc.refresh_from_db()
    assert (exc.status == ExceptionStatus.RESOLVED) is cleared


@pytest.mark.parametrize(
    ("method", "status", "cleared"),
    [
        (False, OrderStatus.ON_HOLD, False),
        (True, OrderStatus.READY, True),
        (False, OrderStatus.CANCELED, True),
    ],
)
def test_unmapped_shipping_method_resolves_once_mapped_or_canceled(
    org, make_order, standard_method, method, status, cleared
):
    order = make_order(
        status, shipping_method_code="shopify-x", shipping_method=standard_method if method else None
    )
    exc = raise_for(order, ExceptionKind.UNMAPPED_SHIPPING_METHOD)

    engine.sweep(org)

    exc.refresh_from_db()
    assert (exc.status == ExceptionStatus.RESOLVED) is cleared


def test_exception_of_a_deleted_order_resolves(org, make_order):
    order = make_order(OrderStatus.ON_HOLD, hold_reason=UNROUTABLE_REASON)
    exc = raise_for(order, ExceptionKind.UNROUTABLE_ORDER)
    order.delete()

    engine.sweep(org)

    exc.refresh_from_db()
    assert exc.status == ExceptionStatus.RESOLVED


def test_other_kinds_and_entities_are_left_to_their_engines(org, integration, make_order):
    order = make_order(OrderStatus.FULFILLED)
    dead = exceptions.raise_exception(
        org, ExceptionKind.DELIVERY_DEAD, "dead", integration=integration, entity_type="webhook_subscription"
    )
    invalid = raise_for(order, ExceptionKind.INVALID_ORDER_DATA)

    assert engine.sweep(org)["resolved"] == 0
    assert set(open_exceptions().values_list("pk", flat=True)) == {dead.pk, invalid.pk}


# --- stale ---------------------------------------------------------------------------------------------


def age(exc, days):
    SyncException.objects.filter(pk=exc.pk).update(last_seen=timezone.now() - timedelta(days=days))


def test_stale_rule_resolves_exceptions_not_seen_for_n_days(org, integration):
    engine_settings(org).__class__.objects.filter(organization=org).update(stale_after_days=3)
    old = exceptions.raise_exception(
        org, ExceptionKind.CONNECTOR_REPORTED, "old", integration=integration, data={"code": "E1"}
    )
    recent = exceptions.raise_exception(org, ExceptionKind.CONNECTOR_REPORTED, "new", entity_id="2")
    age(old, 4)
    age(recent, 2)

    counts = engine.sweep(org)

    old.refresh_from_db()
    assert counts["stale"] == 1
    assert old.status == ExceptionStatus.RESOLVED and old.resolved_at is not None
    assert old.data == {"code": "E1", "resolved_by": "stale"}
    assert old.updated_at >= old.resolved_at  # `updated_since` lists see it
    assert SyncException.objects.get(pk=recent.pk).status == ExceptionStatus.OPEN


def test_without_stale_days_nothing_goes_stale(org):
    old = exceptions.raise_exception(org, ExceptionKind.CONNECTOR_REPORTED, "old")
    age(old, 400)

    assert engine.sweep(org)["stale"] == 0
    assert SyncException.objects.get(pk=old.pk).status == ExceptionStatus.OPEN


# --- retention, switch, isolation ----------------------------------------------------------------------


def test_old_rule_runs_and_closed_exceptions_are_pruned(org, make_order):
    rule = AutomationRule.objects.create(organization=org, name="r", actions=[{"type": "hold"}])
    old_run, new_run = (RuleRun.objects.create(organization=org, rule=rule, matched=True) for _ in range(2))
    RuleRun.objects.filter(pk=old_run.pk).update(created_at=timezone.now() - timedelta(days=31))
    closed, recent, still_open = (
        exceptions.raise_exception(org, ExceptionKind.CONNECTOR_REPORTED, "x", entity_id=str(i))
        for i in range(3)
    )
    long_ago = timezone.now() - timedelta(days=91)
    SyncException.objects.filter(pk=closed.pk).update(status=ExceptionStatus.DISMISSED, resolved_at=long_ago)
    SyncException.objects.filter(pk=recent.pk).update(
        status=ExceptionStatus.RESOLVED, resolved_at=timezone.now()
    )
    SyncException.objects.filter(pk=still_open.pk).update(first_seen=long_ago)

    counts = engine.sweep(org)

    assert counts["pruned"] == 2
    assert list(RuleRun.objects.values_list("pk", flat=True)) == [new_run.pk]
    assert set(SyncException.objects.values_list("pk", flat=True)) == {recent.pk, still_open.pk}


def test_switched_off_engine_does_nothing(org, make_order, mailoutbox):
    engine_settings(org).__class__.objects.filter(organization=org).update(
        exceptions_enabled=False, stale_after_days=1
    )
    make_order(OrderStatus.READY, age_hours=HOURS * 2)
    cleared = raise_for(make_order(OrderStatus.CANCELED), ExceptionKind.UNROUTABLE_ORDER)
    age(exceptions.raise_exception(org, ExceptionKind.CONNECTOR_REPORTED, "old"), 5)

    assert engine.sweep(org) == {
        "stuck": 0,
        "unacknowledged": 0,
        "resolved": 0,
        "stale": 0,
        "mailed": 0,
        "notified": 0,
    }
    assert engine.run_now(org)["mailed"] == 0

    assert open_exceptions().count() == 2 and SyncException.objects.get(pk=cleared.pk).notified_at is None
    assert mailoutbox == []


def test_a_sweep_of_one_organization_leaves_the_others_alone(org, other_org, other_integration, make_order):
    mine = make_order(OrderStatus.READY, age_hours=HOURS + 1)
    theirs = make_order(
        OrderStatus.READY, age_hours=HOURS + 1, organization=other_org, source=other_integration
    )
    their_cleared = raise_for(
        make_order(OrderStatus.CANCELED, organization=other_org, source=other_integration),
        ExceptionKind.UNROUTABLE_ORDER,
    )

    engine.sweep(org)

    assert list(open_exceptions(ExceptionKind.STUCK_ORDER).values_list("entity_id", flat=True)) == [
        str(mine.pk)
    ]
    assert SyncException.objects.get(pk=their_cleared.pk).status == ExceptionStatus.OPEN

    engine.sweep()  # every organization

    assert open_exceptions(ExceptionKind.STUCK_ORDER).filter(entity_id=str(theirs.pk)).exists()
    assert SyncException.objects.get(pk=their_cleared.pk).status == ExceptionStatus.RESOLVED
