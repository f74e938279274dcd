"""
A Celery worker SIGKILLed mid-task (its whole process group, as the OOM killer or a lost node would), then
started again as a supervisor would: the work it was doing is done exactly once.
"""

import json
import time

import psycopg

from harness.hub import order_body

from .conftest import LEASE, Receiver


def wait_until(probe, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(step)


def test_a_worker_killed_with_a_batch_in_flight_delivers_each_event_once(hub, receivers):
    # given a receiver that holds the first request of each event open, and three orders
    receiver = Receiver(hold_first=True)
    subscription = hub.subscribe("Stalled", receivers.start(receiver), ["order.created"])
    receiver.secret = subscription["secret"]
    orders = [hub.push_order_key("Stalled", f"STALL-{n}")[0]["id"] for n in range(3)]

    # when the worker is killed while both its processes hold deliveries in flight (the third waits)
    in_flight = receiver.wait_for(2, timeout=60)
    time.sleep(1)  # the rest of a batch, if one took more
    held = {r.webhook_id for r in receiver.requests}
    hub.procs["worker"].kill_group()
    receiver.release()
    hub.start_worker().wait_for_text(" ready.")

    # then every order's event arrives, each under one webhook-id (a retry repeats it, never a new one)
    def one_success_per_order():
        succeeded = {
            r.data["data"]["id"] for r in receiver.requests if r.status == 200 and r.verified and not r.held
        }
        return succeeded >= set(orders)

    wait_until(one_success_per_order, 60, "every order's event delivered")
    ids_per_order: dict[str, set[str]] = {}
    for request in receiver.requests:
        ids_per_order.setdefault(request.data["data"]["id"], set()).add(request.webhook_id)
    assert set(ids_per_order) == set(orders)
    assert all(len(ids) == 1 for ids in ids_per_order.values()), ids_per_order
    # the killed attempts came again with the same body, once their lease ran out
    for webhook_id in held:
        tries = [r for r in receiver.requests if r.webhook_id == webhook_id]
        assert len({r.body for r in tries}) == 1
        assert tries[-1].status == 200
        assert tries[-1].at - tries[0].at >= LEASE - 1
    assert in_flight[0].webhook_id in held

    # and the hub records one succeeded delivery per event
    deliveries = hub.deliveries(subscription["id"])
    assert sorted(d["event_id"] for d in deliveries) == sorted(
        next(iter(ids)) for ids in ids_per_order.values()
    )
    assert {d["status"] for d in deliveries} == {"succeeded"}


def test_a_worker_killed_while_routing_an_order_routes_it_once(hub):
    # given the routing engine's stock lock on F-MUG held by someone else, so that routing an order blocks
    # inside its transaction (order row locked, shipping request not yet written)
    [(product,)] = hub.sql("SELECT id FROM inventory_product WHERE sku = 'F-MUG'")
    level = "FROM inventory_inventorylevel WHERE product_id = %s AND location_id = %s"
    [(committed_before,)] = hub.sql(f"SELECT committed {level}", (product, int(hub.location)))
    blocker = psycopg.connect(hub.postgres.url())
    try:
        blocker.execute(f"SELECT 1 {level} FOR UPDATE", (product, int(hub.location)))

        # when a channel's order is being routed and the worker routing it is killed there
        order, key = hub.push_order_key("Routed", "ROUTE-KILL-1", qty=3, sku="F-MUG")
        waiting = wait_until(
            lambda: hub.sql(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE '%%inventory_inventorylevel%%FOR UPDATE%%'"
            ),
            30,
            "routing blocked on the stock lock",
        )
        hub.procs["worker"].kill_group()
    finally:
        blocker.rollback()  # the killed worker's transaction runs on, finds its client gone, rolls back
        blocker.close()
    wait_until(
        lambda: not hub.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (waiting[0][0],)),
        30,
        "the killed worker's session ended",
    )
    assert hub.sql(
        "SELECT count(*) FROM orders_shippingrequest WHERE order_id = %s", (int(order["id"]),)
    ) == [(0,)], "the killed routing committed"

    # and a new worker starts (a supervisor's restart): the sweep routes the order
    hub.start_worker().wait_for_text(" ready.")
    requests = wait_until(
        lambda: hub.sql("SELECT id FROM orders_shippingrequest WHERE order_id = %s", (int(order["id"]),)),
        60,
        "the order routed after the restart",
    )
    time.sleep(3 * 2)  # a few more sweeps: none may route it again

    # then it was routed once, with its stock committed once
    requests = hub.sql(
        "SELECT id, status FROM orders_shippingrequest WHERE order_id = %s", (int(order["id"]),)
    )
    assert len(requests) == 1, requests
    [(committed_after,)] = hub.sql(f"SELECT committed {level}", (product, int(hub.location)))
    assert committed_after - committed_before == 3
    with hub.api("Routed") as api:
        seen = api.get(f"/orders/{order['id']}").json()
        assert len(seen["shipping_requests"]) == 1, json.dumps(seen)
        # the channel's retry of its POST replays; it does not make a second order
        body = order_body("ROUTE-KILL-1", [{"sku": "F-MUG", "quantity": 3, "unit_price": "1.00"}])
        again = api.post("/orders", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
        assert again.json()["id"] == order["id"]
    assert hub.sql("SELECT count(*) FROM orders_order WHERE external_id = 'ROUTE-KILL-1'") == [(1,)]
