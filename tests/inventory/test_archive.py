"""
Archiving a product and deactivating a location, through the inventory engine and the router (issue 16,
item 6): an archived product's figures are 0 for every channel (the figures statement on PostgreSQL and its
Python fallback) and come back on restore; an order naming it is held, then routed once it is restored; a
deactivated location's stock stops counting and routing passes it over.
"""

import pytest

from automations.engines import inventory as inventory_engine
from automations.engines import routing
from integrations.models import OutboxEvent
from inventory import archive, figures, sync
from inventory.models import ChannelInventory
from orders import services as order_services
from orders.choices import OrderStatus
from orders.locations import LocationConflict, deactivate_location, reactivate_location
from orders.services import UNROUTABLE_REASON
from tests.automations.routing_helpers import routed_to, unroutable_exception

pytestmark = pytest.mark.django_db


def stored(channel, product) -> int:
    return ChannelInventory.objects.get(channel=channel, product=product).available


def figure_events(channel, product):
    return OutboxEvent.objects.filter(
        type="inventory.updated",
        object_type=sync.OBJECT_TYPE,
        object_id=sync.object_id(product.pk, channel.pk),
    )


# --- products ---------------------------------------------------------------------------------------------


def test_an_archived_product_sells_nothing_anywhere_and_restoring_it_brings_its_figures_back(
    org, integration, make_integration, channel_connector, stock, products
):
    # given: two channels told 10 mugs
    other_shop = make_integration(org, channel_connector, "Second shop")
    sync.recompute(org)
    mug = products["MUG"]
    assert (stored(integration, mug), stored(other_shop, mug)) == (10, 10)

    # when: the mug is archived and the engine drains what that marked
    archive.archive_product(mug)
    inventory_engine.process_changes(org)

    # then: 0 for every channel, from the statement and stored, each announced once; stock is kept
    assert figures.availability(integration, [mug.pk]) == {mug.pk: 0}
    assert (stored(integration, mug), stored(other_shop, mug)) == (0, 0)
    assert figure_events(integration, mug).count() == figure_events(other_shop, mug).count() == 2
    stock["MUG"].refresh_from_db()
    assert stock["MUG"].on_hand == 10
    assert figures.availability(integration, [products["TSHIRT-S"].pk]) == {products["TSHIRT-S"].pk: 10}

    # when: restored
    archive.restore_product(mug)
    inventory_engine.process_changes(org)

    # then: sellable again
    assert (stored(integration, mug), stored(other_shop, mug)) == (10, 10)
    assert figure_events(integration, mug).count() == 3


def test_the_python_fallback_gives_an_archived_product_zero(integration, stock, products):
    archive.archive_product(products["MUG"])

    assert figures.availability_in_python(integration)[products["MUG"].pk] == 0
    assert figures.availability_in_python(integration)[products["TSHIRT-S"].pk] == 10


def test_restoring_a_product_that_is_not_archived_is_refused(products):
    mug = products["MUG"]

    with pytest.raises(archive.AlreadyArchived):
        archive.restore_product(mug)

    mug.refresh_from_db()
    assert mug.archived_at is None
    assert not OutboxEvent.objects.filter(object_type="product").exists()


def test_restoring_records_product_updated(products):
    archive.archive_product(products["MUG"])

    archive.restore_product(products["MUG"])

    types = list(
        OutboxEvent.objects.filter(object_type="product", object_id=str(products["MUG"].pk))
        .order_by("pk")
        .values_list("type", flat=True)
    )
    assert types == ["product.deleted", "product.updated"]


def test_an_order_naming_an_archived_product_is_held_and_routed_once_it_is_restored(
    ready_order, products, warehouse, shelve
):
    shelve(warehouse, products["MUG"], 5)
    shelve(warehouse, products["TSHIRT-S"], 5)
    archive.archive_product(products["MUG"])
    order = ready_order(("MUG", 1), ("TSHIRT-S", 1))

    routing.route_order_by_id(order.pk)

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD and UNROUTABLE_REASON in order.hold_reason
    assert routed_to(order) == {}
    assert "MUG archived" in unroutable_exception(order).message

    # when: restored, the engine's drain retries the orders waiting for the product
    archive.restore_product(products["MUG"])
    inventory_engine.process_changes(order.organization)

    order.refresh_from_db()
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT
    assert routed_to(order) == {"East": {"MUG": 1, "TSHIRT-S": 1}}


# --- locations --------------------------------------------------------------------------------------------


def test_a_deactivated_locations_stock_stops_counting_and_counts_again_when_reactivated(
    org, integration, stock, products, warehouse, west, shelve
):
    shelve(west, products["MUG"], 3)
    sync.recompute(org)
    assert stored(integration, products["MUG"]) == 13

    deactivate_location(warehouse)
    inventory_engine.process_changes(org)

    assert stored(integration, products["MUG"]) == 3
    assert stored(integration, products["TSHIRT-S"]) == 0

    reactivate_location(warehouse)
    inventory_engine.process_changes(org)

    assert stored(integration, products["MUG"]) == 13


def test_routing_passes_a_deactivated_location_over(ready_order, products, warehouse, west, shelve):
    shelve(warehouse, products["MUG"], 5)
    shelve(west, products["MUG"], 5)
    deactivate_location(warehouse)
    order = ready_order(("MUG", 2))

    routing.route_order_by_id(order.pk)

    assert routed_to(order) == {"West": {"MUG": 2}}


def test_a_location_with_open_shipping_requests_stays_active(ready_order, products, warehouse, shelve):
    shelve(warehouse, products["MUG"], 5)
    order = ready_order(("MUG", 1))
    request = order_services.create_shipping_request(order, warehouse)

    with pytest.raises(LocationConflict) as refused:
        deactivate_location(warehouse)

    assert refused.value.details == {"shipping_requests": [str(request.pk)]}
    warehouse.refresh_from_db()
    assert warehouse.active


def test_reactivating_an_active_location_is_refused(warehouse):
    with pytest.raises(LocationConflict):
        reactivate_location(warehouse)
