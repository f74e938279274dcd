"""
What a fulfillment locks. bench/load.py found 3PL fulfillments and routing deadlocking under load: the
fulfillment locked its shipping request's location FOR UPDATE (a bare select_for_update with
select_related), while a routing transaction holding the stock rows the fulfillment wanted needed KEY SHARE on
that location for the foreign key check of the request it inserted.
"""

import threading

import pytest
from django.db import connection, transaction

from orders import services
from orders.choices import ShippingRequestStatus

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_fulfillment_does_not_wait_for_transactions_referencing_its_location(
    ingest, order_body, stock, standard_method, warehouse, products
):
    # Given: a routed order, and another transaction holding the location KEY SHARE — as a routing commit
    # does while PostgreSQL checks the foreign key of the shipping request it inserted for that location
    order, _ = ingest(order_body)
    request = services.create_shipping_request(order, warehouse)
    held, release, problems = threading.Event(), threading.Event(), []

    def referencing_transaction():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM inventory_location WHERE id = %s FOR KEY SHARE", [warehouse.pk])
                held.set()
                release.wait(timeout=20)
        except Exception as exc:
            problems.append(exc)
        finally:
            held.set()
            connection.close()

    other = threading.Thread(target=referencing_transaction)
    other.start()
    try:
        assert held.wait(timeout=10)
        # When: the 3PL ships, unwilling to wait on a lock for long
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            lines = [(products["TSHIRT-S"].pk, 2), (products["MUG"].pk, 1)]
            fulfillment, created = services.create_fulfillment(
                request, {"external_id": "F-1", "lines": lines}
            )
    finally:
        release.set()
        other.join(timeout=20)

    # Then: it shipped without waiting for the other transaction
    assert problems == []
    assert created and fulfillment.shipping_request_id == request.pk
    request.refresh_from_db()
    assert request.status == ShippingRequestStatus.FULFILLED
