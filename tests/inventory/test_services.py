"""Catalog and stock rules through inventory.services: SKU translation, product upserts, stock pushes; and what
a channel may sell after buffers (inventory.figures), by the PostgreSQL statement and by the Python fallback."""

from decimal import Decimal

import pytest
from django.db import transaction

from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import OutboxEvent
from inventory import figures, services
from inventory.models import (
    AvailabilityChange,
    ChannelLocation,
    InventoryBuffer,
    InventoryLevel,
    Location,
    Product,
    SkuMapping,
)


def on_hand(product, location):
    return InventoryLevel.objects.get(product=product, location=location).on_hand


@pytest.fixture
def west(org):
    return Location.objects.create(organization=org, name="West", kind="warehouse", priority=2)


@pytest.fixture
def second_channel(org, channel_connector, make_integration):
    return make_integration(org, channel_connector, "Acme marketplace")


@pytest.fixture
def buffer(org):
    """`buffer(quantity=… | percent=…, location=, product=, channel=)` → an InventoryBuffer of `org`."""

    def make(**fields):
        return InventoryBuffer.objects.create(organization=org, **fields)

    return make


def ids(products, *skus):
    return [products[sku].pk for sku in skus]


# --- SKU translation ----------------------------------------------------------------------------------


def test_a_3pl_sku_mapping_works_both_ways(org, products, warehouse_integration):
    tee = products["TSHIRT-S"]
    SkuMapping.objects.create(integration=warehouse_integration, external_sku="W-TEE-S", product=tee)

    # out: the 3PL is told its own SKU; unmapped products keep the hub SKU (absent here)
    assert services.external_skus(warehouse_integration, ids(products, "TSHIRT-S", "MUG")) == {
        tee.pk: "W-TEE-S"
    }
    # in: its SKU and the hub SKU both resolve; unknown ones are left out
    assert services.resolve_skus(org, warehouse_integration, ["W-TEE-S", "MUG", "NOPE"]) == {
        "W-TEE-S": tee,
        "MUG": products["MUG"],
    }


def test_resolve_skus_ignores_other_integrations_and_orgs(
    org, other_org, products, integration, warehouse_integration
):
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="W-TEE-S", product=products["TSHIRT-S"]
    )
    foreign = Product.objects.create(organization=other_org, sku="MUG", name="Globex mug")

    assert services.resolve_skus(org, integration, ["W-TEE-S", "MUG"]) == {"MUG": products["MUG"]}
    assert services.resolve_skus(other_org, None, ["MUG"]) == {"MUG": foreign}
    assert services.external_skus(None, ids(products, "TSHIRT-S")) == {}


def test_set_stock_translates_a_3pl_sku(products, stock, warehouse, warehouse_integration):
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="W-MUG", product=products["MUG"]
    )

    updated, errors = services.set_stock(
        warehouse, [{"sku": "W-MUG", "on_hand": 4}], integration=warehouse_integration
    )

    assert (updated, errors) == (1, [])
    assert on_hand(products["MUG"], warehouse) == 4


# --- products -----------------------------------------------------------------------------------------


def test_upsert_products_counts_and_leaves_unchanged_ones_alone(org, products):
    # given TSHIRT-S and MUG exist
    untouched = products["TSHIRT-S"].updated_at
    items = [
        {"sku": "TSHIRT-S", "name": "T-shirt S", "price": "12.50"},  # same as stored
        {"sku": "MUG", "name": "Mug", "price": "9.00"},  # price changed
        {"sku": "CAP", "name": "Cap", "price": "15.00"},
        {"sku": "SOCKS", "name": "Socks"},
    ]

    created, updated, result = services.upsert_products(org, items)

    assert (created, updated) == (2, 1)
    assert [p.sku for p in result] == ["TSHIRT-S", "MUG", "CAP", "SOCKS"]
    assert Product.objects.get(sku="TSHIRT-S").updated_at == untouched
    assert Product.objects.get(sku="MUG").price == Decimal("9.00")
    assert Product.objects.get(sku="CAP").price == Decimal("15.00")
    events = sorted(OutboxEvent.objects.filter(object_type="product").values_list("type", "payload__sku"))
    assert events == [("product.created", "CAP"), ("product.created", "SOCKS"), ("product.updated", "MUG")]


def test_upsert_products_again_is_a_no_op(org, products):
    items = [{"sku": "CAP", "name": "Cap", "price": "15.00", "weight": "0.120"}]
    services.upsert_products(org, items)
    before = OutboxEvent.objects.count()

    assert services.upsert_products(org, items)[:2] == (0, 0)
    assert OutboxEvent.objects.count() == before


def test_upsert_products_last_repeat_wins(org):
    created, updated, result = services.upsert_products(
        org, [{"sku": "CAP", "name": "first"}, {"sku": "CAP", "name": "second"}]
    )

    assert (created, updated, len(result)) == (1, 0, 1)
    assert Product.objects.get(sku="CAP").name == "second"


# --- stock pushes -------------------------------------------------------------------------------------


def test_set_stock_applies_absolute_counts(products, stock, warehouse, west):
    InventoryLevel.objects.filter(pk=stock["MUG"].pk).update(committed=3)

    updated, errors = services.set_stock(
        warehouse, [{"sku": "MUG", "on_hand": 4}, {"sku": "TSHIRT-S", "on_hand": 0}]
    )
    services.set_stock(west, [{"sku": "TSHIRT-M", "on_hand": 7}])

    assert (updated, errors) == (2, [])
    level = InventoryLevel.objects.get(pk=stock["MUG"].pk)
    assert (level.on_hand, level.committed) == (4, 3)  # a push never touches commitments
    assert on_hand(products["TSHIRT-S"], warehouse) == 0
    assert on_hand(products["TSHIRT-M"], warehouse) == 10
    assert on_hand(products["TSHIRT-M"], west) == 7  # the level row is created


def test_set_stock_reports_unknown_skus_as_one_exception(products, stock, warehouse, warehouse_integration):
    items = [{"sku": "MUG", "on_hand": 1}, {"sku": "GHOST-1", "on_hand": 1}, {"sku": "GHOST-2", "on_hand": 2}]

    updated, errors = services.set_stock(warehouse, items, integration=warehouse_integration)

    assert updated == 1
    assert errors == [{"sku": "GHOST-1", "code": "unknown_sku"}, {"sku": "GHOST-2", "code": "unknown_sku"}]
    assert on_hand(products["MUG"], warehouse) == 1
    exc = SyncException.objects.get()
    assert (exc.kind, exc.integration, exc.occurrences) == (
        ExceptionKind.UNKNOWN_SKU,
        warehouse_integration,
        1,
    )
    assert exc.data == {"skus": ["GHOST-1", "GHOST-2"]}

    # a second push with the same problem counts on the same exception
    services.set_stock(warehouse, items, integration=warehouse_integration)
    assert SyncException.objects.get().occurrences == 2


def test_only_changed_levels_emit_inventory_updated(products, stock, warehouse, warehouse_integration):
    items = [{"sku": "MUG", "on_hand": 10}, {"sku": "TSHIRT-S", "on_hand": 6}]

    services.set_stock(warehouse, items, integration=warehouse_integration)

    event = OutboxEvent.objects.get(type="inventory.updated")
    assert event.integration == warehouse_integration
    assert (event.payload["sku"], event.payload["on_hand"], event.payload["previous_on_hand"]) == (
        "TSHIRT-S",
        6,
        10,
    )

    services.set_stock(warehouse, items, integration=warehouse_integration)
    assert OutboxEvent.objects.filter(type="inventory.updated").count() == 1


def test_set_stock_of_5000_items_uses_a_bounded_number_of_queries(
    org, warehouse, warehouse_integration, django_assert_max_num_queries
):
    # given 5000 products, a third of them already stocked at the warehouse
    Product.objects.bulk_create(
        [Product(organization=org, sku=f"BULK-{i:05}", name=f"Bulk {i}") for i in range(5000)]
    )
    stocked = Product.objects.filter(sku__lt="BULK-01667")
    InventoryLevel.objects.bulk_create(
        [InventoryLevel(product=p, location=warehouse, on_hand=1) for p in stocked]
    )
    items = [{"sku": f"BULK-{i:05}", "on_hand": 5} for i in range(5000)]

    # lookup (mapping + products), savepoint, lock, 5 upsert batches, 5 outbox batches, release
    with django_assert_max_num_queries(15):
        updated, errors = services.set_stock(warehouse, items, integration=warehouse_integration)

    assert (updated, errors) == (5000, [])
    assert set(InventoryLevel.objects.filter(location=warehouse).values_list("on_hand", flat=True)) == {5}
    assert OutboxEvent.objects.filter(type="inventory.updated").count() == 5000


# --- the change rows the inventory engine takes --------------------------------------------------------


def pending(org):
    return sorted(AvailabilityChange.objects.filter(organization=org).values_list("product_id", "stock_up"))


def test_take_changes_deletes_a_batch_oldest_first_and_says_what_it_asks(org, products, other_org):
    mug, shirt, cap = products["MUG"].pk, products["TSHIRT-S"].pk, products["TSHIRT-M"].pk
    with transaction.atomic():
        services.mark_changed(org, [mug], stock_up=True)
        services.mark_changed(org, [shirt, mug])
        services.mark_changed(org, [cap])
        services.mark_changed(other_org.pk, [mug])

        taken = services.take_changes(org, 3)

    assert taken == services.Changes(products=sorted([mug, shirt]), stock_up=[mug], more=True)
    assert pending(org) == [(cap, False)]  # the fourth row waits for the next batch
    with transaction.atomic():
        assert services.take_changes(org, 3) == services.Changes(products=[cap], stock_up=[], more=False)
        assert services.take_changes(org, 3) is None
    assert AvailabilityChange.objects.filter(organization=other_org).count() == 1


def test_a_row_naming_no_product_takes_every_row_for_a_full_recompute(org, products):
    with transaction.atomic():
        services.mark_changed(org, [products["MUG"].pk])
        services.mark_changed(org)  # a buffer changed: everything
        services.mark_changed(org, [products["TSHIRT-S"].pk])

        taken = services.take_changes(org, 1000)

    assert taken == services.Changes(products=None, stock_up=[], more=False)
    assert pending(org) == []


def test_organizations_with_changes_and_take_all_changes(org, other_org, products):
    with transaction.atomic():
        services.mark_changed(org, [products["MUG"].pk])
        services.mark_changed(other_org.pk, None)
    assert services.organizations_with_changes() == {org.pk, other_org.pk}

    with transaction.atomic():
        services.take_all_changes(org)

    assert services.organizations_with_changes() == {other_org.pk}


# --- availability -------------------------------------------------------------------------------------


@pytest.fixture(params=["postgresql", "python"])
def availability(request):
    """`availability(channel, ids)` as each implementation computes it: the one statement, the fallback."""
    return figures.availability if request.param == "postgresql" else figures.availability_in_python


def test_availability_sums_on_hand_less_committed_over_locations(
    availability, integration, products, stock, warehouse, west
):
    InventoryLevel.objects.filter(pk=stock["TSHIRT-S"].pk).update(committed=4)
    InventoryLevel.objects.create(product=products["TSHIRT-S"], location=west, on_hand=5, committed=2)

    available = availability(integration, ids(products, "TSHIRT-S", "MUG"))

    assert available == {products["TSHIRT-S"].pk: 6 + 3, products["MUG"].pk: 10}


def test_availability_floors_an_oversold_location_at_zero(
    availability, integration, products, stock, warehouse, west
):
    InventoryLevel.objects.filter(pk=stock["MUG"].pk).update(committed=13)
    InventoryLevel.objects.create(product=products["MUG"], location=west, on_hand=2)

    assert availability(integration, ids(products, "MUG")) == {products["MUG"].pk: 2}


def test_availability_names_products_without_stock(availability, integration, org, stock):
    cap = Product.objects.create(organization=org, sku="CAP", name="Cap")

    assert availability(integration, [cap.pk]) == {cap.pk: 0}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"quantity": 3}, 7),
        ({"quantity": 30}, 0),
        ({"percent": "15"}, 8),  # 1.5 held back, rounded up to 2
        ({"percent": "100"}, 0),
        ({"percent": "0"}, 10),
    ],
)
def test_an_org_wide_buffer(availability, integration, products, stock, buffer, rule, expected):
    buffer(**rule)

    assert availability(integration, ids(products, "MUG")) == {products["MUG"].pk: expected}


def test_the_most_specific_location_less_buffer_wins(
    availability, integration, second_channel, products, stock, buffer
):
    # given an org-wide buffer of 1, 2 for mugs, 3 for this channel, 4 for mugs on this channel
    buffer(quantity=1)
    buffer(quantity=2, product=products["MUG"])
    buffer(quantity=3, channel=integration)
    buffer(quantity=4, product=products["MUG"], channel=integration)
    wanted = ids(products, "MUG", "TSHIRT-S")

    # then each product and channel gets exactly one of them, the narrowest
    assert availability(integration, wanted) == {wanted[0]: 10 - 4, wanted[1]: 10 - 3}
    assert availability(second_channel, wanted) == {wanted[0]: 10 - 2, wanted[1]: 10 - 1}


def test_the_most_specific_location_buffer_wins(
    availability, integration, products, stock, warehouse, west, buffer
):
    InventoryLevel.objects.create(product=products["MUG"], location=west, on_hand=5)
    InventoryLevel.objects.create(product=products["TSHIRT-S"], location=west, on_hand=5)
    buffer(quantity=2, location=warehouse)
    buffer(percent="50", location=warehouse, product=products["MUG"])
    wanted = ids(products, "MUG", "TSHIRT-S")

    # East holds back 5 mugs (50 %) but 2 T-shirts; West holds back nothing
    assert availability(integration, wanted) == {wanted[0]: 5 + 5, wanted[1]: 8 + 5}


def test_other_orgs_and_channels_buffers_do_not_apply(
    availability, integration, second_channel, other_org, products, stock, buffer
):
    InventoryBuffer.objects.create(organization=other_org, quantity=5)
    buffer(quantity=5, channel=second_channel)

    assert availability(integration, ids(products, "MUG")) == {products["MUG"].pk: 10}


def test_channel_locations_restrict_what_it_sells(
    availability, integration, second_channel, products, stock, warehouse, west
):
    InventoryLevel.objects.create(product=products["MUG"], location=west, on_hand=3)
    ChannelLocation.objects.create(channel=integration, location=west)

    assert availability(integration, ids(products, "MUG")) == {products["MUG"].pk: 3}
    assert availability(second_channel, ids(products, "MUG")) == {products["MUG"].pk: 13}


def test_a_channel_linked_only_to_an_inactive_location_sells_nothing(
    availability, integration, products, stock, warehouse, west
):
    ChannelLocation.objects.create(channel=integration, location=west)
    InventoryLevel.objects.create(product=products["MUG"], location=west, on_hand=3)
    Location.objects.filter(pk=west.pk).update(active=False)

    assert availability(integration, ids(products, "MUG")) == {products["MUG"].pk: 0}


@pytest.mark.parametrize("switch_off", [{"active": False}, {"sells": False}])
def test_inactive_and_non_selling_locations_are_left_out(
    availability, integration, products, stock, warehouse, west, switch_off
):
    InventoryLevel.objects.create(product=products["MUG"], location=west, on_hand=3)
    Location.objects.filter(pk=warehouse.pk).update(**switch_off)

    assert availability(integration, ids(products, "MUG")) == {products["MUG"].pk: 3}


def test_sell_incoming_stock_adds_incoming(availability, integration, products, stock, warehouse):
    InventoryLevel.objects.filter(pk=stock["MUG"].pk).update(incoming=4, committed=1)
    mug = [products["MUG"].pk]
    assert availability(integration, mug) == {mug[0]: 9}

    integration.settings = {"sell_incoming_stock": True}
    integration.save(update_fields=["settings"])

    assert availability(integration, mug) == {mug[0]: 13}
    assert availability(integration, mug, include_incoming=False) == {mug[0]: 9}


def test_a_fractional_percent_buffer_rounds_up(availability, integration, products, stock, buffer):
    buffer(percent="10.01")  # 1.001 units held back → 2

    assert availability(integration, ids(products, "MUG")) == {products["MUG"].pk: 8}


def test_the_most_specific_buffer_wins_and_buffers_do_not_stack(
    availability, integration, products, stock, buffer, warehouse
):
    # Given a product-wide buffer of 4 and a buffer of 3 for the same product at the warehouse
    buffer(quantity=4, product=products["MUG"])
    buffer(quantity=3, product=products["MUG"], location=warehouse)

    # Then the warehouse's own buffer wins for its stock: 10 − 3, not 10 − 3 − 4
    assert availability(integration, ids(products, "MUG")) == {products["MUG"].pk: 7}


def test_an_inactive_product_is_published_as_zero(availability, integration, products, stock):
    Product.objects.filter(pk=products["MUG"].pk).update(active=False)

    assert availability(integration, ids(products, "MUG", "TSHIRT-S")) == {
        products["MUG"].pk: 0,
        products["TSHIRT-S"].pk: 10,
    }
