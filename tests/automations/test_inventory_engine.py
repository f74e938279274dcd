"""
The inventory engine: drains AvailabilityChange rows (one product: incremental; no product: the whole
catalog), leaves them while switched off, retries orders waiting for stock, and overlapping runs emit each
change once.
"""

import threading

import pytest
from django.db import connection

from automations.choices import Engine
from automations.engines import inventory as engine
from automations.engines import routing
from automations.models import EngineSettings, EngineStatus
from automations.tasks import inventory_changes_task
from integrations.models import OutboxEvent
from inventory import services, sync
from inventory.models import AvailabilityChange, ChannelInventory, InventoryBuffer, InventoryLevel


@pytest.fixture(autouse=True)
def retried(monkeypatch):
    """The routing engine's retry, recorded: [(org id, [product ids])]."""
    calls = []
    monkeypatch.setattr(
        routing, "retry_for_products", lambda org_id, ids: calls.append((org_id, sorted(ids)))
    )
    return calls


def figures(channel):
    return dict(ChannelInventory.objects.filter(channel=channel).values_list("product__sku", "available"))


def channel_events():
    return OutboxEvent.objects.filter(type="inventory.updated", object_type=sync.OBJECT_TYPE)


def test_stock_changes_are_drained_and_recomputed_for_their_products(
    org, integration, stock, products, warehouse, retried
):
    sync.recompute(org)
    OutboxEvent.objects.all().delete()
    # given: a stock push changes one product (the service writes the change row in its transaction)
    services.set_stock(warehouse, [{"sku": "MUG", "on_hand": 3}])
    assert AvailabilityChange.objects.filter(organization=org).count() == 1

    counts = engine.process_changes(org)

    assert counts == {"products": 1, "changed": 1, "events": 1}
    assert not AvailabilityChange.objects.exists()
    assert figures(integration)["MUG"] == 3
    assert channel_events().count() == 1
    assert retried == []  # stock went down: no order waiting for it can ship now
    assert EngineStatus.objects.get(organization=org, engine=Engine.INVENTORY).last_counts == counts

    # and when stock goes up, orders waiting for that product are retried
    services.set_stock(warehouse, [{"sku": "MUG", "on_hand": 30}])
    engine.process_changes(org)
    assert retried == [(org.pk, [products["MUG"].pk])]


def test_taking_a_reservation_retries_no_waiting_order(org, integration, stock, products, warehouse, retried):
    # given: a routing commits stock (a reservation taken: nothing became available)
    services.commit_stock(warehouse.pk, {products["MUG"].pk: 1})

    engine.process_changes(org)

    assert retried == []
    # and giving it back (a cancel) may let a waiting order ship
    services.release_levels(org.pk, {(products["MUG"].pk, warehouse.pk): 1})
    engine.process_changes(org)
    assert retried == [(org.pk, [products["MUG"].pk])]


def test_an_organization_wide_change_recomputes_the_whole_catalog(org, integration, stock, products, retried):
    services.mark_changed(org, [products["MUG"].pk])
    InventoryBuffer.objects.create(organization=org, quantity=4)
    services.mark_changed(org)  # a buffer changed: every product

    counts = engine.process_changes(org.pk)

    assert counts == {"products": 3, "changed": 3, "events": 3, "full": 1}
    assert figures(integration) == {"MUG": 6, "TSHIRT-M": 6, "TSHIRT-S": 6}
    assert not AvailabilityChange.objects.exists()
    assert retried == [(org.pk, sorted(p.pk for p in products.values()))]


def test_a_second_run_with_nothing_pending_does_nothing(org, integration, stock, products):
    services.mark_changed(org, [products["MUG"].pk])
    engine.process_changes(org)
    services.mark_changed(org, [products["MUG"].pk])  # touched, but its figure did not move
    before = channel_events().count()

    assert engine.process_changes(org) == {"products": 1, "changed": 0, "events": 0}
    assert engine.process_changes(org) == {}
    assert channel_events().count() == before


def test_a_switched_off_engine_leaves_the_changes_and_the_figures(org, integration, stock, products, retried):
    EngineSettings.objects.update_or_create(organization=org, defaults={"inventory_enabled": False})
    services.mark_changed(org, [products["MUG"].pk])

    assert engine.process_changes(org) == {"skipped": 1}
    assert engine.full_recompute(org) == {"skipped": 1}
    assert engine.sweep() == {}

    assert AvailabilityChange.objects.filter(organization=org).count() == 1
    assert not ChannelInventory.objects.exists() and retried == []


def test_the_sweep_takes_only_organizations_with_pending_changes(
    org, integration, stock, products, other_org, other_integration
):
    services.mark_changed(org, [products["MUG"].pk])

    totals = engine.sweep()

    assert totals["organizations"] == 1 and totals["changed"] == 1
    assert not ChannelInventory.objects.filter(channel=other_integration).exists()


def test_run_now_repairs_every_figure(org, integration, stock, products):
    sync.recompute(org)
    ChannelInventory.objects.filter(channel=integration).update(available=99)  # drifted

    totals = engine.run_now(org)

    assert totals["organizations"] == 1 and totals["changed"] == 3
    assert figures(integration) == {"MUG": 10, "TSHIRT-M": 10, "TSHIRT-S": 10}


def test_a_bounded_run_enqueues_itself_for_the_rest(org, integration, stock, products, monkeypatch):
    monkeypatch.setattr(engine, "DRAIN_BATCH", 1)
    monkeypatch.setattr(engine, "MAX_ROUNDS", 2)
    enqueued = []
    monkeypatch.setattr(engine, "_enqueue_again", enqueued.append)
    services.mark_changed(org, [p.pk for p in products.values()])

    engine.process_changes(org)

    assert enqueued == [org.pk]
    assert AvailabilityChange.objects.filter(organization=org).count() == 1


def test_the_task_runs_the_engine(org, integration, stock, products):
    services.mark_changed(org, [products["MUG"].pk])

    assert inventory_changes_task.apply(args=[org.pk]).get()["changed"] == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_overlapping_runs_give_one_result_and_emit_each_change_once(
    org, integration, stock, products, warehouse
):
    # given: every product's stock moved, with its change rows
    InventoryLevel.objects.filter(location=warehouse).update(on_hand=7)
    services.mark_changed(org, [p.pk for p in products.values()])
    services.mark_changed(org)
    start = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            start.wait()
            results.append(engine.process_changes(org.pk))
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()  # this thread's own connection (close_old_connections keeps a young one open)

    # when: two runs start together
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then: one did the work, the other found nothing left; each figure was emitted once
    assert errors == []
    assert sorted(r.get("changed", 0) for r in results) == [0, 3]
    assert figures(integration) == {"MUG": 7, "TSHIRT-M": 7, "TSHIRT-S": 7}
    assert channel_events().count() == 3
    assert not AvailabilityChange.objects.exists()


def test_a_new_sales_channel_gets_its_first_figures_from_the_sweep(
    org, integration, stock, products, make_integration, channel_connector
):
    sync.recompute(org)
    OutboxEvent.objects.all().delete()
    # given: a second shop added after the figures were computed (nothing moved, so no change row)
    outlet = make_integration(org, channel_connector, "Outlet shop")

    totals = engine.sweep()

    assert figures(outlet) == {"MUG": 10, "TSHIRT-M": 10, "TSHIRT-S": 10}
    assert totals["channels"] == 1 and totals["changed"] == 3
    assert channel_events().count() == 3  # the new channel's figures only: the first shop heard nothing
    assert engine.sweep() == {}  # computed once


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_channel_enabled_again_has_its_figures_recomputed(
    org, integration, stock, products, warehouse, monkeypatch
):
    from automations import handlers
    from integrations import lifecycle
    from integrations.choices import IntegrationStatus

    sync.recompute(org)
    enqueued = []
    monkeypatch.setattr(handlers, "enqueue", lambda task, **options: enqueued.append(options["args"]))
    # given: a disabled shop, whose figures are not kept while stock moves
    lifecycle.transition(integration, IntegrationStatus.DISABLED, reason="paused")
    services.set_stock(warehouse, [{"sku": "MUG", "on_hand": 4}])
    engine.process_changes(org)
    assert figures(integration)["MUG"] == 10

    # when it is enabled again, the engine is told after the commit and recomputes that channel
    lifecycle.transition(integration, IntegrationStatus.CONNECTING, reason="back")
    assert [org.pk, integration.pk] in enqueued
    counts = engine.recompute_channels(org.pk, [integration.pk])

    assert counts["channels"] == 1 and figures(integration)["MUG"] == 4
