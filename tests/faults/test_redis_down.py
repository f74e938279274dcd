"""
Redis stopped for a while (broker and cache both): the API's writes still succeed, and quickly — the rate
limit lets requests through, Idempotency-Key still holds (its record is in PostgreSQL, not the cache), and
publishing gives up at once — while the outbox keeps the events. Once Redis is back (empty: it kept
nothing), the beat's sweeps find the work and every delivery catches up, none lost, none twice.
"""

import time
import uuid

from harness.hub import order_body

from .conftest import Receiver


def by_event(receiver: Receiver) -> dict[tuple[str, str], set[str]]:
    """(event type, object id) → the webhook-ids it arrived under (answered, verified)."""
    seen: dict[tuple[str, str], set[str]] = {}
    for request in receiver.requests:
        if request.verified and request.status == 200:
            body = request.data
            seen.setdefault((body["type"], body["data"]["id"]), set()).add(request.webhook_id)
    return seen


def wait_for_events(receiver: Receiver, wanted: set[tuple[str, str]], timeout: float) -> float:
    """Seconds until every wanted (type, id) has arrived; fails after `timeout`."""
    began = time.monotonic()
    with receiver.changed:
        while not wanted <= set(by_event(receiver)):
            left = timeout - (time.monotonic() - began)
            assert left > 0, f"missing after {timeout} s: {wanted - set(by_event(receiver))}"
            receiver.changed.wait(min(left, 0.5))
    return time.monotonic() - began


def test_with_redis_down_writes_succeed_and_deliveries_catch_up(hub, receivers):
    # given a channel hearing of its orders and their fulfillments, a 3PL hearing of shipping requests, and
    # one order already routed to the 3PL
    channel, tpl = Receiver(), Receiver()
    channel.secret = hub.subscribe(
        "Shop", receivers.start(channel), ["order.created", "fulfillment.created"]
    )["secret"]
    tpl.secret = hub.subscribe("Warehouse", receivers.start(tpl), ["shipping_request.created"])["secret"]
    before, _ = hub.push_order_key("Shop", "REDIS-0")
    wait_for_events(channel, {("order.created", before["id"])}, 60)
    [(request_id,)] = wait_for_rows(hub, "SELECT id FROM orders_shippingrequest WHERE order_id = %s", before)
    wait_for_events(tpl, {("shipping_request.created", str(request_id))}, 60)

    # when Redis stops
    worker = hub.procs["worker"]
    hub.redis.stop()
    timings = {}

    def timed(name, call):
        began = time.monotonic()
        answer = call()
        timings[name] = round(time.monotonic() - began, 3)
        return answer

    # then orders, a fulfillment and a stock count are still taken, each the first time
    orders, keys = [], {}
    with hub.api("Shop") as shop, hub.api("Warehouse") as warehouse:
        for n in range(1, 4):
            keys[n] = str(uuid.uuid4())
            body = order_body(f"REDIS-{n}", [{"sku": "F-TEE", "quantity": 1, "unit_price": "1.00"}])
            answer = timed(
                f"order {n}",
                lambda b=body, k=keys[n]: shop.post("/orders", json=b, headers={"Idempotency-Key": k}),
            )
            assert answer.status_code == 201, answer.text
            orders.append(answer.json())
        fulfillment = {
            "shipping_request": str(request_id),
            "external_id": "REDIS-SHIP-0",
            "carrier": "Fault Post",
            "tracking_number": "RD0",
            "lines": [{"sku": "F-TEE", "quantity": 1}],
        }
        answer = timed(
            "fulfillment",
            lambda: warehouse.post(
                "/fulfillments", json=fulfillment, headers={"Idempotency-Key": str(uuid.uuid4())}
            ),
        )
        assert answer.status_code == 201, answer.text
        shipped = answer.json()
        stock = {"location": hub.location, "items": [{"sku": "F-TEE", "on_hand": 900}]}
        answer = timed(
            "stock",
            lambda: warehouse.post("/inventory", json=stock, headers={"Idempotency-Key": str(uuid.uuid4())}),
        )
        assert answer.status_code == 200 and answer.json()["updated"] == 1, answer.text

        # and a client's retry with the same Idempotency-Key is replayed, not run again: the claim and the
        # stored answer are PostgreSQL rows, whatever the cache
        body = order_body("REDIS-1", [{"sku": "F-TEE", "quantity": 1, "unit_price": "1.00"}])
        again = timed(
            "order 1 retried", lambda: shop.post("/orders", json=body, headers={"Idempotency-Key": keys[1]})
        )
        assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
        assert again.json()["id"] == orders[0]["id"]
        # no RateLimit headers without the counter (the limit is not applied, the request is not refused)
        assert "RateLimit-Limit" not in again.headers
        reads = timed("GET /orders", lambda: shop.get("/orders", params={"external_id": "REDIS-2"}))
        assert [o["id"] for o in reads.json()["results"]] == [orders[1]["id"]]

    # while the events wait in the outbox
    pending = hub.sql("SELECT count(*) FROM integrations_outboxevent WHERE dispatched_at IS NULL")[0][0]
    time.sleep(3)  # an outage lasts a while

    # when Redis is back
    hub.redis.start()
    back = time.monotonic()

    # then every event is delivered within a minute: the new orders to the channel, the fulfillment made
    # during the outage, and the shipping requests the engines made once they could run again
    channel_wants = {("order.created", o["id"]) for o in orders} | {("fulfillment.created", shipped["id"])}
    caught_up_channel = wait_for_events(channel, channel_wants, 60)
    requests = wait_for_rows(
        hub,
        "SELECT id FROM orders_shippingrequest WHERE order_id = ANY(%s)",
        None,
        params=([int(o["id"]) for o in orders],),
        count=3,
    )
    tpl_wants = {("shipping_request.created", str(r)) for (r,) in requests}
    wait_for_events(tpl, tpl_wants, 60)
    caught_up = time.monotonic() - back

    # by the same worker, which reconnected on its own
    assert hub.procs["worker"] is worker and worker.alive(), worker.tail()

    # and nothing was lost or sent twice under another webhook-id
    for receiver in (channel, tpl):
        assert all(len(ids) == 1 for ids in by_event(receiver).values()), by_event(receiver)
    for n in range(4):
        assert hub.sql("SELECT count(*) FROM orders_order WHERE external_id = %s", (f"REDIS-{n}",)) == [(1,)]
    assert hub.sql("SELECT count(*) FROM orders_fulfillment WHERE external_id = 'REDIS-SHIP-0'") == [(1,)]
    for (r,) in requests:
        assert hub.sql("SELECT count(*) FROM orders_shippingrequest WHERE id = %s", (r,)) == [(1,)]
    assert len(requests) == 3  # one each: routed once
    with hub.api("Warehouse") as warehouse:
        [level] = warehouse.get("/inventory", params={"sku": "F-TEE", "location": hub.location}).json()[
            "results"
        ]
        assert level["on_hand"] == 900

    print(
        f"\n[faults] Redis down: request seconds {timings}; {pending} outbox events waited; "
        f"the channel caught up {caught_up_channel:.1f} s after Redis returned, everything {caught_up:.1f} s"
    )


def wait_for_rows(hub, query, order, *, params=None, count=1, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        rows = hub.sql(query, params if params is not None else (int(order["id"]),))
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"{query}: {rows} after {timeout} s"
        time.sleep(0.3)
