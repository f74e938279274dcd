"""Manifest inventory push against a real receiver on 127.0.0.1: only changed figures, recorded once accepted."""

import pytest
from django_celery_beat.models import PeriodicTask

from automations.models import EngineSettings
from integrations import lifecycle
from integrations.choices import EventKind, IntegrationStatus
from integrations.models import Integration, IntegrationEvent
from inventory import manifest, sync
from inventory.models import ChannelInventory, InventoryBuffer, InventoryLevel, Location, SkuMapping
from inventory.tasks import manifest_inventory_sweep_task

S = IntegrationStatus


def accepting(request):
    return (200, {"accepted": len(request.json()["items"])})


def pushed(receiver):
    """{sku: available} of every inventory call, in order."""
    return [
        {item["sku"]: item["available"] for item in r.json()["items"]}
        for r in receiver.requests
        if r.path == "/hub/inventory"
    ]


def published(channel):
    """{sku: the figure the channel accepted} of the figures it accepted."""
    rows = ChannelInventory.objects.filter(channel=channel, published__isnull=False)
    return dict(rows.values_list("product__sku", "published"))


def fresh(channel):
    return Integration.objects.select_related("connector", "organization").get(pk=channel.pk)


@pytest.fixture(autouse=True)
def _accept_by_default(receiver):
    receiver.default = accepting


def test_the_first_push_sends_every_figure_signed(storefront, stock, receiver, verify_call):
    result = manifest.push_inventory(storefront)

    assert (result["calls"], result["sent"], result["ok"]) == (1, 3, True)
    [request] = receiver.requests
    items = verify_call(request, storefront)["items"]
    assert sorted(items, key=lambda i: i["sku"]) == [
        {"sku": "MUG", "available": 10},
        {"sku": "TSHIRT-M", "available": 10},
        {"sku": "TSHIRT-S", "available": 10},
    ]
    assert published(storefront) == {"MUG": 10, "TSHIRT-M": 10, "TSHIRT-S": 10}
    assert ChannelInventory.objects.filter(published_at__isnull=True).count() == 0


def test_unchanged_figures_are_not_sent_again(storefront, stock, receiver):
    manifest.push_inventory(storefront)

    result = manifest.push_inventory(fresh(storefront))

    assert result == {"calls": 0, "sent": 0, "ok": True, "more": False}
    assert len(receiver.requests) == 1


def test_only_changed_figures_are_sent(storefront, stock, receiver, products, warehouse, org):
    manifest.push_inventory(storefront)
    # stock of one product moves, and a buffer holds back some of another
    InventoryLevel.objects.filter(product=products["MUG"]).update(on_hand=4)
    InventoryBuffer.objects.create(organization=org, product=products["TSHIRT-M"], quantity=3)
    sync.recompute(org)  # the inventory engine ran

    manifest.push_inventory(fresh(storefront))

    assert pushed(receiver)[1] == {"MUG": 4, "TSHIRT-M": 7}
    assert published(storefront) == {"MUG": 4, "TSHIRT-M": 7, "TSHIRT-S": 10}


def test_the_push_sends_the_engines_figures_not_a_fresh_computation(storefront, stock, receiver, products):
    manifest.push_inventory(storefront)
    # given: stock moved, and the engine has not run yet
    InventoryLevel.objects.filter(product=products["MUG"]).update(on_hand=4)

    result = manifest.push_inventory(fresh(storefront))

    assert result["sent"] == 0
    assert ChannelInventory.objects.get(channel=storefront, product=products["MUG"]).published == 10


def test_a_figure_the_engine_changed_is_pushed_once(storefront, stock, receiver, products, org):
    manifest.push_inventory(storefront)
    InventoryLevel.objects.filter(product=products["MUG"]).update(on_hand=4)
    sync.recompute(org)

    manifest.push_inventory(fresh(storefront))
    manifest.push_inventory(fresh(storefront))

    assert pushed(receiver)[1:] == [{"MUG": 4}]
    row = ChannelInventory.objects.get(channel=storefront, product=products["MUG"])
    assert (row.available, row.published) == (4, 4)


def test_nothing_is_computed_for_a_push_while_the_inventory_engine_is_off(storefront, stock, receiver, org):
    EngineSettings.objects.update_or_create(organization=org, defaults={"inventory_enabled": False})

    assert manifest.push_inventory(storefront)["sent"] == 0

    assert not ChannelInventory.objects.exists() and receiver.requests == []


def test_the_channels_own_skus_are_used_where_mapped(storefront, stock, receiver, products):
    SkuMapping.objects.create(integration=storefront, external_sku="shop-mug", product=products["MUG"])

    manifest.push_inventory(storefront)

    assert set(pushed(receiver)[0]) == {"shop-mug", "TSHIRT-M", "TSHIRT-S"}


def test_stock_that_is_gone_from_where_it_sells_is_published_as_zero(
    storefront, stock, receiver, warehouse, org
):
    manifest.push_inventory(storefront)
    Location.objects.filter(pk=warehouse.pk).update(sells=False)
    sync.recompute(org)

    manifest.push_inventory(fresh(storefront))

    assert pushed(receiver)[1] == {"MUG": 0, "TSHIRT-M": 0, "TSHIRT-S": 0}


@pytest.mark.parametrize(
    "answer",
    [(500, "down"), (200, {"error": "locked"}), (200, {"accepted": 1}), (200, {"ok": True})],
    ids=["500", "error-field", "fewer-accepted", "no-count"],
)
def test_a_failed_push_records_nothing_and_is_sent_again(storefront, stock, receiver, answer):
    receiver.script = [answer]

    result = manifest.push_inventory(storefront)

    assert result["ok"] is False and published(storefront) == {}
    storefront.refresh_from_db()
    assert storefront.consecutive_failures == 1
    manifest.push_inventory(fresh(storefront))
    assert pushed(receiver)[1] == pushed(receiver)[0]
    assert published(storefront) == {"MUG": 10, "TSHIRT-M": 10, "TSHIRT-S": 10}


def test_batches_are_bounded(storefront, stock, receiver, monkeypatch):
    monkeypatch.setattr(manifest, "INVENTORY_BATCH", 2)

    result = manifest.push_inventory(storefront, max_batches=1)

    assert (result["sent"], result["more"]) == (2, True)
    assert len(published(storefront)) == 2
    manifest.push_inventory(fresh(storefront))
    assert [len(p) for p in pushed(receiver)] == [2, 1]


def test_another_organizations_stock_is_never_pushed(storefront, stock, receiver, other_org):
    from inventory.models import Product

    elsewhere = Location.objects.create(organization=other_org, name="Theirs")
    theirs = Product.objects.create(organization=other_org, sku="SECRET", name="Theirs")
    InventoryLevel.objects.create(product=theirs, location=elsewhere, on_hand=99)

    manifest.push_inventory(storefront)

    assert "SECRET" not in pushed(receiver)[0]


def test_each_push_is_in_the_audit_trail(storefront, stock, receiver):
    manifest.push_inventory(storefront)

    [event] = IntegrationEvent.objects.filter(integration=storefront, kind=EventKind.OUTBOUND_CALL)
    assert event.data["endpoint"] == "inventory" and event.data["ok"] is True


# --- the sweep ---------------------------------------------------------------------------------------------


def test_the_sweep_pushes_and_leaves_the_channel_alone_until_the_gap_passed(storefront, stock, receiver):
    assert manifest.sweep() == {"channels": 1, "items": 3, "full": False}

    assert manifest.sweep()["channels"] == 0  # run just now
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "change",
    [{"status": S.DISABLED}, {"status": S.ERROR}, {"flow_inventory_out": False}],
    ids=["disabled", "error", "inventory-out-off"],
)
def test_nothing_is_pushed_to_a_channel_that_may_not_be_called(storefront, stock, receiver, change):
    Integration.objects.filter(pk=storefront.pk).update(**change)

    assert manifest.sweep()["channels"] == 0
    assert receiver.requests == [] and published(storefront) == {}


def test_a_channel_disabled_through_the_service_gets_nothing(storefront, stock, receiver):
    lifecycle.disable(storefront)

    manifest.sweep()

    assert receiver.requests == []


def test_the_sweep_task_runs_the_sweep(storefront, stock, receiver):
    assert manifest_inventory_sweep_task.apply().get()["items"] == 3


def test_the_sweep_is_on_the_beat_every_30_seconds(db):
    task = PeriodicTask.objects.select_related("interval").get(
        task="inventory.tasks.manifest_inventory_sweep_task"
    )
    assert (task.interval.every, task.interval.period, task.enabled) == (30, "seconds", True)
