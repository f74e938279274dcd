"""
The engines react on commit: each change that concerns an engine enqueues its task once committed (never
before, never for a rolled-back change), and a burst of stock changes rings the inventory engine once.
"""

import pytest
from django.core.cache import cache
from django.db import transaction

from automations import receivers, tasks
from automations.choices import RuleTrigger
from automations.engines import hold
from inventory import services as inventory
from orders import services as orders
from orders.choices import OrderStatus
from orders.models import Order


@pytest.fixture
def enqueued(monkeypatch):
    """What the receivers publish, as (task name, args), instead of sending it to the broker."""
    sent = []

    def record(task, **options):
        sent.append((task.name.rsplit(".", 1)[-1], tuple(options.get("args", ()))))
        return True

    monkeypatch.setattr(receivers, "enqueue", record)
    monkeypatch.setattr("core.queue.enqueue", record)  # enqueue_once publishes through it
    return sent


@pytest.fixture
def doorbell(org):
    key = receivers.inventory_doorbell(org.pk)
    cache.delete(key)
    yield key
    cache.delete(key)


def test_an_ingested_order_reaches_the_hold_engine_after_the_commit(
    integration, order_body, products, standard_method, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        order, _ = orders.ingest_order(integration, order_body)
        assert enqueued == []  # not before the commit

    assert ("process_order_task", (order.pk, True)) in enqueued
    orders.ingest_order(integration, order_body)  # no commit callbacks run here: nothing sent
    assert [name for name, _ in enqueued].count("process_order_task") == 1


def test_a_rolled_back_ingest_enqueues_nothing(
    integration, order_body, products, standard_method, enqueued, django_capture_on_commit_callbacks
):
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        orders.ingest_order(integration, order_body)
        raise RuntimeError("the request failed after the ingest")

    assert enqueued == []


def test_an_order_made_ready_is_routed_by_the_routing_engine(
    integration, order_body, products, standard_method, enqueued, django_capture_on_commit_callbacks
):
    order, _ = orders.ingest_order(integration, order_body)

    with django_capture_on_commit_callbacks(execute=True):
        orders.make_ready(order)

    assert enqueued == [("route_order_task", (order.pk,))]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_hold_engines_task_routes_the_order_it_lets_through_itself(
    integration, order_body, stock, standard_method, enqueued
):
    # (transactional: the task's own commits run their callbacks while it runs, as on a worker)
    order, _ = orders.ingest_order(integration, order_body)

    counts = tasks.process_order_task(order.pk, True)

    order.refresh_from_db()
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT
    assert counts["ready"] == 1 and counts.get("routed") == 1, counts
    assert ("route_order_task", (order.pk,)) not in enqueued  # routed inline, not a second time via the queue


def test_a_burst_of_stock_changes_rings_the_inventory_engine_once(
    org, warehouse, products, enqueued, doorbell, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        inventory.set_stock(warehouse, [{"sku": "MUG", "on_hand": 5}])
    # more commits before the task started: it will drain their rows too
    for _ in range(3):
        receivers.availability_changed(sender=None, organization_id=org.pk)

    assert enqueued == [("inventory_changes_task", (org.pk,))]

    # when the task starts it answers the doorbell, so a change committed after that rings again
    tasks.inventory_changes_task(org.pk)
    receivers.availability_changed(sender=None, organization_id=org.pk)
    assert enqueued == [("inventory_changes_task", (org.pk,))] * 2


def test_a_redelivered_hold_task_routes_the_order_a_dead_first_run_made_ready(
    integration, order_body, stock, standard_method, enqueued
):
    # given: the first run applied the rules and made the order ready, then its worker died before routing
    order, _ = orders.ingest_order(integration, order_body)
    hold.process_order(order.pk, trigger=RuleTrigger.ORDER_CREATED)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.READY

    # when the message is delivered again
    tasks.process_order_task(order.pk, True)

    # then the rules are not applied twice, and the order is routed
    assert Order.objects.get(pk=order.pk).status == OrderStatus.SENT_TO_FULFILLMENT


def test_one_transaction_announces_its_stock_changes_once_per_organization(org, warehouse, products):
    from django.db import connection

    from inventory.services import _Announce

    with transaction.atomic():
        for on_hand in (5, 6, 7):
            inventory.set_stock(warehouse, [{"sku": "MUG", "on_hand": on_hand}])
        pending = [func for _, func, _ in connection.run_on_commit if isinstance(func, _Announce)]

    assert pending == [_Announce(org.pk)]
