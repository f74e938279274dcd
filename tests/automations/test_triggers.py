"""
The engines react on commit: each change that concerns an engine fires its trigger (core/triggers.py), whose
handler (automations/handlers.py) enqueues the engine's task once committed (never before, never for a
rolled-back change), and a burst of stock changes rings the inventory engine once.
"""

import pytest
from django.core.cache import cache
from django.db import connection, transaction

from automations import handlers, tasks
from automations.choices import RuleTrigger
from automations.engines import hold
from core import triggers
from inventory import services as inventory
from orders import services as orders
from orders.choices import OrderStatus
from orders.models import Order


@pytest.fixture
def enqueued(monkeypatch):
    """What the handlers publish, as (task name, args), instead of sending it to the broker."""
    sent = []

    def record(task, **options):
        name = task if isinstance(task, str) else task.name
        sent.append((name.rsplit(".", 1)[-1], tuple(options.get("args", ()))))
        return True

    monkeypatch.setattr(handlers, "enqueue", record)
    monkeypatch.setattr("automations.engines.hold.enqueue", record)
    monkeypatch.setattr("core.queue.enqueue", record)  # enqueue_once publishes through it
    return sent


@pytest.fixture
def doorbell(org):
    key = handlers.inventory_doorbell(org.pk)
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
        handlers.availability_changed(organization_id=org.pk)

    assert enqueued == [("inventory_changes_task", (org.pk,))]

    # when the task starts it answers the doorbell, so a change committed after that rings again
    tasks.inventory_changes_task(org.pk)
    handlers.availability_changed(organization_id=org.pk)
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
    with transaction.atomic():
        for on_hand in (5, 6, 7):
            inventory.set_stock(warehouse, [{"sku": "MUG", "on_hand": on_hand}])
        pending = [
            func
            for _, func, _ in connection.run_on_commit
            if isinstance(func, triggers.Firing) and func.trigger == triggers.AVAILABILITY_CHANGED
        ]

    assert pending == [triggers.Firing(triggers.AVAILABILITY_CHANGED, (("organization_id", org.pk),))]


def test_a_person_releasing_a_hold_sends_the_order_to_routing_once(
    integration, order_body, products, standard_method, enqueued, django_capture_on_commit_callbacks
):
    order, _ = orders.ingest_order(integration, order_body)
    order = orders.hold(order, "review")

    with django_capture_on_commit_callbacks(execute=True):
        orders.release(order)

    assert enqueued == [("route_order_task", (order.pk,))]


def test_an_engine_that_routes_the_order_itself_announces_nothing(
    integration, order_body, products, standard_method, enqueued, django_capture_on_commit_callbacks
):
    order, _ = orders.ingest_order(integration, order_body)
    held = orders.hold(order, "review")

    with django_capture_on_commit_callbacks(execute=True):
        orders.make_ready(order, announce=False)
        orders.release(held, announce=False)

    assert enqueued == []


def test_the_hold_sweep_sends_an_order_whose_message_was_lost_to_routing(
    integration, order_body, products, standard_method, enqueued, django_capture_on_commit_callbacks
):
    # given: a new order whose hold-engine message was lost
    order, _ = orders.ingest_order(integration, order_body)

    with django_capture_on_commit_callbacks(execute=True):
        counts = hold.run_now(order.organization_id)

    assert counts["lost_messages"] == 1
    assert Order.objects.get(pk=order.pk).status == OrderStatus.READY
    assert enqueued == [("route_order_task", (order.pk,))]


def test_a_trigger_fired_twice_with_the_same_facts_runs_once_per_commit(
    org, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        for _ in range(3):
            triggers.fire(triggers.ORDER_READY, organization_id=org.pk, order_id=7)
        triggers.fire(triggers.ORDER_READY, organization_id=org.pk, order_id=8)

    assert enqueued == [("route_order_task", (7,)), ("route_order_task", (8,))]


def test_a_trigger_nobody_handles_or_with_other_facts_fails_where_it_is_fired(org):
    with pytest.raises(TypeError):
        triggers.fire(triggers.ORDER_READY, organization_id=org.pk)
    with triggers.handled_by(triggers.ORDER_READY, None), pytest.raises(Exception, match="order_ready"):
        triggers.fire(triggers.ORDER_READY, organization_id=org.pk, order_id=1)


@pytest.fixture
def published(monkeypatch):
    """Every task message as the broker would get it: (task, args, queue, options), in publishing order."""
    from celery.app.task import Task

    sent = []

    def record(self, args=None, kwargs=None, **options):
        queue = self.app.amqp.router.route(dict(options), self.name, args, kwargs)["queue"].name
        extra = {k: v for k, v in options.items() if k != "retry"}
        sent.append((self.name.rsplit(".", 1)[-1], tuple(args or ()), queue, extra))

    monkeypatch.setattr(Task, "apply_async", record)
    cache.clear()  # no doorbell left rung by an earlier test
    yield sent
    cache.clear()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_order_reaches_the_engines_in_the_order_and_queues_it_did_before_the_triggers(
    integration, order_body, stock, standard_method, published
):
    # (transactional: each commit runs its callbacks, as in gunicorn and on a worker.) The flow of the signal
    # receivers before core/triggers.py, measured the same in bench/engines.py: nothing delayed, the engines'
    # tasks on the default queue, the outbox's doorbell on the deliveries queue.
    order, _ = orders.ingest_order(integration, order_body)
    assert published == [
        ("dispatch_outbox_task", (), "deliveries", {}),
        ("process_order_task", (order.pk, True), "celery", {}),
    ]

    published.clear()
    cache.clear()  # the dispatch task answered its doorbell
    tasks.process_order_task(order.pk, True)
    # routed in the hold task itself (no route_order_task); its commitments ring the inventory engine once
    assert published == [
        ("dispatch_outbox_task", (), "deliveries", {}),
        ("inventory_changes_task", (order.organization_id,), "celery", {}),
    ]

    published.clear()
    cache.clear()
    tasks.inventory_changes_task(order.organization_id)
    # the figures' events ring the outbox; the run drained every change, so it does not enqueue itself again
    assert published == [("dispatch_outbox_task", (), "deliveries", {})]
