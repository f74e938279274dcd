"""Stock and order writes from real threads on real PostgreSQL transactions: no lost update, no duplicate,
no deadlock."""

import threading
import time

import pytest
from django.db import connection, transaction

from integrations.models import OutboxEvent
from inventory import services as inventory
from inventory.models import InventoryLevel, Product
from orders import services as orders
from orders.models import Order

# Committed transactions are what is under test; serialized_rollback restores the seeded connectors after.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

TIMEOUT = 30  # seconds for all threads of one run: far above a normal run, far below a hung test run


def run_threads(count, work):
    """Run `work(i)` for i in 0..count-1, each in its own thread and DB connection, started together at a
    barrier. Returns the results in order; fails on any thread's exception or on a thread still running."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def worker(i):
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    deadline = time.monotonic() + TIMEOUT
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    assert not any(thread.is_alive() for thread in threads), "threads still running: deadlock or hang"
    assert not errors, errors
    return results


def test_commits_and_shipments_on_one_level_lose_nothing(products, warehouse):
    mug = products["MUG"]
    level = InventoryLevel.objects.create(product=mug, location=warehouse, on_hand=1000, committed=500)
    rounds = 15

    def work(i):
        for _ in range(rounds):
            with transaction.atomic():
                if i % 2:
                    inventory.ship_stock(warehouse.pk, {mug.pk: 1})
                else:
                    inventory.commit_stock(warehouse.pk, {mug.pk: i + 1})

    run_threads(8, work)

    level.refresh_from_db()
    commits = sum(i + 1 for i in range(0, 8, 2)) * rounds  # threads 0, 2, 4, 6 commit 1, 3, 5, 7 a round
    shipped = 4 * rounds
    assert (level.on_hand, level.committed) == (1000 - shipped, 500 + commits - shipped)


def test_pushes_never_lose_a_commitment(products, warehouse):
    mug = products["MUG"]
    level = InventoryLevel.objects.create(product=mug, location=warehouse, on_hand=50)
    pushed = {100 + i for i in range(0, 8, 2)}

    def work(i):
        for _ in range(10):
            if i % 2:
                with transaction.atomic():
                    inventory.commit_stock(warehouse.pk, {mug.pk: 1})
            else:
                inventory.set_stock(warehouse, [{"sku": "MUG", "on_hand": 100 + i}])

    run_threads(8, work)

    level.refresh_from_db()
    assert level.committed == 4 * 10
    assert level.on_hand in pushed


def test_routing_and_fulfilling_many_orders_at_once(
    ingest, order_body, stock, standard_method, warehouse, products
):
    # given 8 ready orders of 2 T-shirts and a mug each, and enough stock for all
    InventoryLevel.objects.filter(location=warehouse).update(on_hand=100)
    placed = []
    for n in range(8):
        placed.append(ingest({**order_body, "external_id": f"C-{n}", "number": f"#C-{n}"})[0])

    # when every order is routed to the one warehouse at once, then every commitment counts
    requests = run_threads(8, lambda i: orders.create_shipping_request(placed[i], warehouse))
    tee = InventoryLevel.objects.get(product=products["TSHIRT-S"], location=warehouse)
    mug = InventoryLevel.objects.get(product=products["MUG"], location=warehouse)
    assert (tee.committed, mug.committed) == (16, 8)

    # when all are shipped at once, then every shipment counts
    lines = [(products["TSHIRT-S"].pk, 2), (products["MUG"].pk, 1)]
    run_threads(8, lambda i: orders.create_fulfillment(requests[i], {"lines": lines}))
    tee.refresh_from_db()
    mug.refresh_from_db()
    assert (tee.on_hand, tee.committed, mug.on_hand, mug.committed) == (84, 0, 92, 0)
    assert set(Order.objects.values_list("status", flat=True)) == {"fulfilled"}


def test_concurrent_ingest_of_one_new_order_makes_one(ingest, order_body, products, standard_method):
    results = run_threads(8, lambda i: ingest(order_body))

    assert Order.objects.count() == 1
    assert len({order.pk for order, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert OutboxEvent.objects.filter(type="order.created").count() == 1
    assert Order.objects.get().lines.count() == 2


def test_pushes_of_overlapping_skus_in_opposite_orders_do_not_deadlock(org, warehouse):
    # given 3 blocks of 1500 products with no stock rows yet (each round inserts new rows)
    size, pushed = 1500, 1000
    blocks = [
        Product.objects.bulk_create(
            [Product(organization=org, sku=f"R{r}-{i:04}", name=f"R{r}-{i}") for i in range(size)]
        )
        for r in range(3)
    ]
    barrier = threading.Barrier(2)

    def work(i):
        for block in blocks:
            # thread 0 pushes the first 1000 SKUs ascending, thread 1 the last 1000 descending: 500 overlap
            skus = [p.sku for p in block]
            skus = skus[:pushed] if i == 0 else list(reversed(skus[size - pushed :]))
            barrier.wait(timeout=10)
            inventory.set_stock(warehouse, [{"sku": sku, "on_hand": i + 1} for sku in skus])

    run_threads(2, work)

    overlap = slice(size - pushed, pushed)
    for block in blocks:
        values = dict(
            InventoryLevel.objects.filter(location=warehouse, product__in=block).values_list(
                "product__sku", "on_hand"
            )
        )
        assert len(values) == size
        assert {values[p.sku] for p in block[: size - pushed]} == {1}
        assert {values[p.sku] for p in block[pushed:]} == {2}
        assert {values[p.sku] for p in block[overlap]} <= {1, 2}


def test_cancel_racing_a_fulfillment_never_deadlocks(
    ingest, order_body, stock, standard_method, warehouse, products
):
    # given 6 routed orders
    InventoryLevel.objects.filter(location=warehouse).update(on_hand=100)
    placed = [ingest({**order_body, "external_id": f"R-{n}"})[0] for n in range(6)]
    requests = [orders.create_shipping_request(order, warehouse) for order in placed]
    lines = [(products["TSHIRT-S"].pk, 2), (products["MUG"].pk, 1)]

    # when the channel cancels each one while the 3PL ships it
    def work(i):
        n, cancel = divmod(i, 2)
        try:
            if cancel:
                orders.cancel_order(placed[n])
            else:
                orders.create_fulfillment(requests[n], {"lines": lines})
        except orders.OrderConflict:
            return "refused"
        return "done"

    outcomes = run_threads(12, work)

    # then for each order exactly one side won, and the stock agrees with which
    assert all(sorted(outcomes[2 * n : 2 * n + 2]) == ["done", "refused"] for n in range(6))
    shipped = Order.objects.filter(status="fulfilled").count()
    assert shipped + Order.objects.filter(status="canceled").count() == 6
    tee = InventoryLevel.objects.get(product=products["TSHIRT-S"], location=warehouse)
    assert (tee.on_hand, tee.committed) == (100 - 2 * shipped, 0)
