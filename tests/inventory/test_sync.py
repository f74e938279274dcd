"""
inventory.sync: the SQL recompute stores exactly `figures.availability()`'s figures, and the Python fallback
the same (randomized catalogs, buffers of every scope, links, flags); it writes only what changed, emits one
inventory.updated per changed figure, and the webhook of such an event reaches only the channel it is about, in
its own SKU.
"""

import random
from decimal import Decimal

import pytest

from integrations.choices import IntegrationStatus
from integrations.models import Connector, Integration, OutboxEvent, WebhookDelivery
from integrations.webhooks import outbox
from inventory import figures, sync
from inventory.models import (
    ChannelInventory,
    ChannelLocation,
    InventoryBuffer,
    InventoryLevel,
    Location,
    Product,
    SkuMapping,
)
from tests.fixtures.deliveries import make_subscription
from tokens import issuing as key_services
from tokens.choices import KeyKind

EVENT = "inventory.updated"


def stored(channel) -> dict[int, int]:
    return dict(ChannelInventory.objects.filter(channel=channel).values_list("product_id", "available"))


def expected(channel) -> dict[int, int]:
    """availability()'s figures (the one statement, on PostgreSQL) for every product of the catalog."""
    ids = list(Product.objects.filter(organization_id=channel.organization_id).values_list("pk", flat=True))
    return figures.availability(channel, ids)


def events():
    return OutboxEvent.objects.filter(type=EVENT, object_type=sync.OBJECT_TYPE)


def random_catalog(org, make_integration, seed, *, products=40, locations=5):
    """A catalog with random stock, flags, links and buffers of every scope; returns the channels."""
    rng = random.Random(seed)
    channel_connectors = list(Connector.objects.filter(key__in=["custom-channel", "custom-marketplace"]))
    channels = []
    for i in range(4):
        settings = {"sell_incoming_stock": True} if rng.random() < 0.4 else {}
        channels.append(
            make_integration(org, rng.choice(channel_connectors), f"Channel {i}", settings=settings)
        )
    product_rows = Product.objects.bulk_create(
        [
            Product(organization=org, sku=f"P{i:03}", name=f"P{i}", active=rng.random() > 0.15)
            for i in range(products)
        ]
    )
    location_rows = [
        Location.objects.create(
            organization=org, name=f"L{i}", active=rng.random() > 0.2, sells=rng.random() > 0.2
        )
        for i in range(locations)
    ]
    InventoryLevel.objects.bulk_create(
        [
            InventoryLevel(
                product=p,
                location=loc,
                on_hand=rng.randint(0, 60),
                committed=rng.randint(0, 25),
                incoming=rng.randint(0, 15),
            )
            for p in product_rows
            for loc in location_rows
            if rng.random() < 0.75
        ]
    )
    for channel in channels[:2]:  # explicit links for some channels (possibly to switched-off locations)
        for loc in rng.sample(location_rows, rng.randint(1, 3)):
            ChannelLocation.objects.create(channel=channel, location=loc)
    scopes = set()
    for _ in range(rng.randint(15, 40)):
        scope = (
            rng.choice([None, *location_rows]) if rng.random() < 0.6 else None,
            rng.choice([None, *product_rows[:8]]) if rng.random() < 0.6 else None,
            rng.choice([None, *channels]) if rng.random() < 0.5 else None,
        )
        if scope in scopes:
            continue
        scopes.add(scope)
        amount = (
            {"quantity": rng.randint(0, 30)}
            if rng.random() < 0.5
            else {"percent": Decimal(rng.randint(0, 10000)) / 100}
        )
        InventoryBuffer.objects.create(
            organization=org, location=scope[0], product=scope[1], channel=scope[2], **amount
        )
    return channels


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_sql_figures_equal_availability_on_random_catalogs(org, make_integration, seed):
    channels = random_catalog(org, make_integration, seed)

    result = sync.recompute(org)

    for channel in channels:
        channel.refresh_from_db()
        assert stored(channel) == expected(channel), f"channel {channel.name}, seed {seed}"
    assert result["products"] == 40
    assert result["changed"] == result["events"] == 4 * 40


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_python_fallback_gives_the_same_figures(org, make_integration, seed):
    channels = random_catalog(org, make_integration, seed)

    changed, emitted = sync.recompute_in_python(org.pk, sync.sales_channels(org))

    assert changed == emitted == 4 * 40
    for channel in channels:
        assert stored(channel) == expected(channel)
    assert sync.recompute_in_python(org.pk, sync.sales_channels(org)) == (0, 0)


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_incremental_equals_full(org, make_integration, seed):
    channels = random_catalog(org, make_integration, seed)
    sync.recompute(org)
    rng = random.Random(seed)
    # given: stock of some products moves behind the engine's back
    levels = list(InventoryLevel.objects.filter(product__organization=org).order_by("pk"))
    moved = rng.sample(levels, 25)
    for level in moved:
        level.on_hand, level.committed = rng.randint(0, 60), rng.randint(0, 25)
    InventoryLevel.objects.bulk_update(moved, ["on_hand", "committed"])
    touched = sorted({level.product_id for level in moved})

    # when: only those products are recomputed
    incremental = sync.recompute(org, touched)

    for channel in channels:
        assert stored(channel) == expected(channel)
    assert incremental["products"] == len(touched)
    # then: a full recompute finds nothing left to change
    assert sync.recompute(org) == {"products": 40, "changed": 0, "events": 0}


def test_only_changed_figures_emit_one_event_each(org, integration, stock, products, warehouse):
    marketplace = Integration.objects.create(
        organization=org,
        connector=Connector.objects.get(key="custom-marketplace", organization=None),
        name="Market",
        status=IntegrationStatus.CONNECTED,
    )
    first = sync.recompute(org)
    assert (first["changed"], first["events"]) == (6, 6)  # 3 products × 2 channels, never published before

    InventoryLevel.objects.filter(product=products["MUG"], location=warehouse).update(on_hand=4)
    OutboxEvent.objects.all().delete()
    second = sync.recompute(org, [products["MUG"].pk, products["TSHIRT-S"].pk])

    assert (second["products"], second["changed"], second["events"]) == (2, 2, 2)
    assert sorted(events().values_list("object_id", "integration_id")) == sorted(
        [
            (f"{products['MUG'].pk}:{integration.pk}", integration.pk),
            (f"{products['MUG'].pk}:{marketplace.pk}", marketplace.pk),
        ]
    )
    event = events().get(integration=integration)
    assert event.payload == {
        "product": str(products["MUG"].pk),
        "channel": str(integration.pk),
        "available": 4,
    }
    assert stored(integration)[products["MUG"].pk] == 4


def test_nothing_is_written_or_emitted_when_nothing_changed(org, integration, stock):
    sync.recompute(org)
    before = dict(ChannelInventory.objects.values_list("pk", "updated_at"))
    OutboxEvent.objects.all().delete()

    assert sync.recompute(org) == {"products": 3, "changed": 0, "events": 0}

    assert not events().exists()
    assert dict(ChannelInventory.objects.values_list("pk", "updated_at")) == before


def test_products_without_stock_and_inactive_products_are_zero(org, integration, stock, products):
    Product.objects.create(organization=org, sku="NEW", name="No stock yet")
    Product.objects.filter(pk=products["MUG"].pk).update(active=False)

    sync.recompute(org)

    assert dict(
        ChannelInventory.objects.filter(channel=integration).values_list("product__sku", "available")
    ) == {
        "TSHIRT-S": 10,
        "TSHIRT-M": 10,
        "MUG": 0,
        "NEW": 0,
    }


def test_disabled_channels_3pls_and_other_organizations_are_left_alone(
    org, integration, stock, warehouse_integration, other_org, other_integration
):
    Integration.objects.filter(pk=integration.pk).update(status=IntegrationStatus.DISABLED)

    assert sync.recompute(org)["changed"] == 0

    assert not ChannelInventory.objects.exists()


def test_sells_incoming_stock_is_the_channels_setting(org, integration, stock, products):
    InventoryLevel.objects.filter(product=products["MUG"]).update(incoming=5)
    Integration.objects.filter(pk=integration.pk).update(settings={"sell_incoming_stock": True})

    sync.recompute(org)

    assert stored(integration)[products["MUG"].pk] == 15


# --- the webhook ----------------------------------------------------------------------------------------


def subscribed(integration):
    key_services.issue_key(kind=KeyKind.INTEGRATION, name=f"{integration.name} key", integration=integration)
    return make_subscription(integration, events=[EVENT])


def delivered(integration):
    import json

    return [
        json.loads(d.body)["data"]
        for d in WebhookDelivery.objects.filter(integration=integration, event_type=EVENT).order_by("pk")
    ]


def test_the_webhook_reaches_only_its_channel_in_its_own_sku(
    org, integration, stock, products, warehouse_integration, make_integration, channel_connector
):
    other_channel = make_integration(org, channel_connector, "Second shop")
    for receiver in (integration, other_channel, warehouse_integration):
        subscribed(receiver)
    SkuMapping.objects.create(integration=integration, external_sku="shop-mug", product=products["MUG"])
    sync.recompute(org, [products["MUG"].pk])

    while outbox.dispatch_outbox()[0]:
        pass

    [mine] = delivered(integration)
    assert {k: mine[k] for k in ("sku", "available")} == {"sku": "shop-mug", "available": 10}
    assert set(mine) == {"sku", "available", "updated_at"}
    [theirs] = delivered(other_channel)
    assert {k: theirs[k] for k in ("sku", "available")} == {"sku": "MUG", "available": 10}
    assert delivered(warehouse_integration) == []


def test_the_renderer_answers_nothing_for_another_channels_figure(
    org, integration, stock, products, make_integration, channel_connector
):
    other_channel = make_integration(org, channel_connector, "Second shop")
    sync.recompute(org)
    name = sync.object_id(products["MUG"].pk, other_channel.pk)

    render = outbox._renderers[sync.OBJECT_TYPE]

    assert render(integration, [name]) == {}
    assert render(other_channel, [name])[name]["available"] == 10


# --- what tells the engine: admin changes that move every figure ------------------------------------------


def pending_everything(org):
    from inventory.models import AvailabilityChange

    return AvailabilityChange.objects.filter(organization=org, product__isnull=True).count()


def test_admin_buffer_and_link_changes_ask_for_a_full_recompute(
    org, org_admin, admin_client_for, integration, warehouse
):
    client = admin_client_for(org_admin)

    added = client.post(
        "/admin/inventory/inventorybuffer/add/",
        {"organization": org.pk, "quantity": 2, "location": "", "product": "", "channel": "", "percent": ""},
    )
    linked = client.post(
        "/admin/inventory/channellocation/add/", {"channel": integration.pk, "location": warehouse.pk}
    )

    assert (added.status_code, linked.status_code) == (302, 302)
    assert pending_everything(org) == 2
    link = ChannelLocation.objects.get(channel=integration)
    client.post(f"/admin/inventory/channellocation/{link.pk}/delete/", {"post": "yes"})
    assert pending_everything(org) == 3


def test_admin_location_flags_ask_for_a_full_recompute_and_other_edits_do_not(
    org, org_admin, admin_client_for, warehouse
):
    client = admin_client_for(org_admin)
    url = f"/admin/inventory/location/{warehouse.pk}/change/"
    form = {
        "organization": org.pk,
        "name": warehouse.name,
        "kind": warehouse.kind,
        "address": "{}",
        "active": "on",
        "managed_by": warehouse.managed_by_id,
        "priority": 5,
        "ships": "on",
        "sells": "on",
    }

    assert client.post(url, form).status_code == 302
    assert pending_everything(org) == 0
    form.pop("sells")
    assert client.post(url, form).status_code == 302
    assert pending_everything(org) == 1
