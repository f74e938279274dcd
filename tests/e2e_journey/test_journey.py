"""
The whole journey through real processes (conftest.py): a channel pushes an order, the engines route it to
a 3PL on their own (hold engine, then routing engine, each on commit), the 3PL hears of it by signed webhook, acknowledges and ships, and the channel hears of the shipment
by signed webhook and marks its order dispatched. Then the delivery engine's promises: a receiver that
fails is retried with the same webhook-id on the Standard Webhooks schedule (or sooner with Retry-After),
and a worker killed mid-delivery loses nothing and duplicates nothing. And the samples' refusals and corrections
(#16): a rejected request holds its order, a corrected tracking number and a voided parcel reach the channel;
an address changed after the 3PL acknowledged reaches its parcel; a 3PL that was down catches up from the
event feed, each event once.
"""

import time
import uuid

import httpx

from harness.hub import order_body

from .conftest import LEASE, Receiver


def routed_request(hub, order_id, timeout=30.0) -> dict:
    """The shipping request the engines made for an order, once they did (the channel's view of its order)."""
    deadline = time.monotonic() + timeout
    with hub.api("Shop") as api:
        while True:
            order = api.get(f"/orders/{order_id}").json()
            if order["shipping_requests"]:  # routed (the 3PL may already be shipping it)
                [request] = order["shipping_requests"]
                return request
            assert order["status"] in ("new", "ready"), order  # held or worse: the engines refused it
            assert time.monotonic() < deadline, f"not routed within {timeout} s: {order}"
            time.sleep(0.2)


def test_order_to_dispatch_through_signed_webhooks(hub, connectors):
    # given a 3PL with its location and stock, and a channel, both subscribed to their webhooks
    tpl = connectors.start(
        "sample_3pl.py",
        "--key",
        hub.keys["Warehouse"],
        "--location-name",
        "E2E 3PL",
        "--stock",
        "E2E-TEE=10,E2E-MUG=5",
        "--carrier",
        "E2E Post",
        "--poll-interval",
        "0",  # webhooks only: a lost webhook must fail this test, not be papered over by the poll
    )
    location = tpl.wait_for("location", name="E2E 3PL")["id"]
    stock = tpl.wait_for("stock_pushed")
    assert (stock["updated"], stock["errors"]) == (2, [])
    tpl.wait_for("subscribed")
    channel = connectors.start(
        "sample_channel.py",
        "--key",
        hub.keys["Shop"],
        "--external-id-prefix",
        "E2E-",
        "--push-order",
        "E2E-TEE:2,E2E-MUG:1",
        "--poll-interval",
        "0",
    )
    assert channel.wait_for("connected")["status"] == "connected"
    channel.wait_for("subscribed")

    # when the channel pushes an order: the hold engine lets it through, the routing engine routes it to
    # the only location with its stock
    pushed = channel.wait_for("order_pushed", external_id="E2E-1")
    assert pushed["status"] == "new", pushed  # the engines take it from here, after the commit
    request = routed_request(hub, pushed["order"])
    assert str(request["location"]) == str(location)
    request_id = request["id"]

    # then the 3PL hears of it by a verified webhook, acknowledges it and ships it
    heard = tpl.wait_for("webhook", type="shipping_request.created", data_id=request_id, status=200)
    assert heard["verified"] is True
    assert tpl.wait_for("acknowledged", shipping_request=request_id)["status"] == "acknowledged"
    shipped = tpl.wait_for("shipped", shipping_request=request_id)
    assert shipped["via"] == "webhook"
    assert sorted((line["sku"], line["quantity"]) for line in shipped["lines"]) == [
        ("E2E-MUG", 1),
        ("E2E-TEE", 2),
    ]

    # and the channel hears of the shipment by a verified webhook and marks its order dispatched
    told = channel.wait_for("webhook", type="fulfillment.created", data_id=shipped["fulfillment"], status=200)
    assert told["verified"] is True
    dispatched = channel.wait_for("order_dispatched", external_id="E2E-1")
    assert dispatched["fulfillment"] == shipped["fulfillment"]
    assert (dispatched["carrier"], dispatched["tracking_number"]) == ("E2E Post", shipped["tracking_number"])
    assert (dispatched["via"], dispatched["confirmed"]) == ("webhook", True)
    assert channel.wait_for("order_status", order=pushed["order"], status="fulfilled")

    # and the hub agrees; no delivery anywhere failed its signature check
    with hub.api("Shop") as api:
        assert api.get(f"/orders/{pushed['order']}").json()["status"] == "fulfilled"
    unverified = [e for e in tpl.events + channel.events if e["event"] == "webhook" and not e["verified"]]
    assert unverified == []


def test_a_failing_receiver_is_retried_with_the_same_webhook_id(hub, receivers):
    # given a receiver that answers 500, then 503 asking to retry in 1 s, then recovers
    receiver = Receiver(answers=[(500, {}), (503, {"Retry-After": "1"})])
    subscription = hub.subscribe("Flaky shop", receivers.start(receiver), ["order.created"])
    receiver.secret = subscription["secret"]

    # when an event is due to it
    hub.push_order("Flaky shop", "FLAKY-1", [{"sku": "E2E-TEE", "quantity": 1, "unit_price": "12.50"}])

    # then it is tried three times with the same webhook-id and body, each one signed
    first, second, third = receiver.wait_for(3, timeout=60)
    assert [r.status for r in (first, second, third)] == [500, 503, 200]
    assert first.webhook_id.startswith("evt_")
    assert {r.webhook_id for r in (first, second, third)} == {first.webhook_id}
    assert {r.body for r in (first, second, third)} == {first.body}
    assert all(r.verified for r in (first, second, third))
    # the first retry on the schedule (about 5 s, ±10%), the second sooner than scheduled: Retry-After
    assert 4.0 <= second.at - first.at <= 15.0, second.at - first.at
    assert third.at - second.at <= 10.0, third.at - second.at

    # and the hub records one delivery, succeeded on its third attempt
    [delivery] = hub.deliveries(subscription["id"])
    assert delivery == {
        "event_id": first.webhook_id,
        "event_type": "order.created",
        "status": "succeeded",
        "attempts": 3,
    }


def test_a_worker_killed_mid_delivery_loses_nothing_and_duplicates_nothing(hub, receivers):
    # given a receiver that holds the first request of each event open
    receiver = Receiver(hold_first=True)
    subscription = hub.subscribe("Stalled shop", receivers.start(receiver), ["order.created"])
    receiver.secret = subscription["secret"]
    hub.push_order("Stalled shop", "STALL-1", [{"sku": "E2E-MUG", "quantity": 1, "unit_price": "8.00"}])
    [in_flight] = receiver.wait_for(1, timeout=30)
    assert in_flight.verified

    # when the worker sending it is killed (SIGKILL to its whole process group) and a new one starts
    killed = hub.procs["worker"]
    killed.kill_group()
    assert not killed.alive()
    receiver.release()
    hub.start_worker().wait_for_text(" ready.")

    # then the delivery arrives again, with the same webhook-id and body, once its lease has run out
    again = receiver.wait_for(2, timeout=60)[1]
    assert (again.webhook_id, again.body, again.verified, again.status) == (
        in_flight.webhook_id,
        in_flight.body,
        True,
        200,
    )
    assert again.at - in_flight.at >= LEASE - 1  # not before the lease (taken just before) ran out

    # and exactly one succeeded delivery is recorded, and nothing more was sent
    deliveries = hub.deliveries(subscription["id"])
    assert [(d["event_id"], d["status"]) for d in deliveries] == [(in_flight.webhook_id, "succeeded")]
    assert deliveries[0]["attempts"] >= 2  # the killed attempt counted when it was claimed
    assert len(receiver.requests) == 2


def test_the_samples_refuse_correct_void_and_delete_through_signed_webhooks(hub, connectors):
    # given the sample 3PL, which cannot ship mugs and relabels each parcel, and the sample channel
    tpl = connectors.start(
        "sample_3pl.py",
        "--key",
        hub.keys["Warehouse"],
        "--location-name",
        "E2E 3PL",
        "--stock",
        "E2E-TEE=10,E2E-MUG=5",
        "--refuse-sku",
        "E2E-MUG",
        "--relabel",
        "--poll-interval",
        "0",
    )
    tpl.wait_for("subscribed")
    channel = connectors.start(
        "sample_channel.py",
        *("--key", hub.keys["Shop"], "--external-id-prefix", "FIX-", "--poll-interval", "0"),
        *("--push-order", "E2E-TEE:1", "--push-order", "E2E-MUG:1"),
    )
    store = channel.wait_for("listening")["url"] + "/orders"
    tee, mug = (channel.wait_for("order_pushed", external_id=f"FIX-{n}")["order"] for n in (1, 2))

    # when the 3PL gets both: it rejects the mug's request with a reason, and the hub holds that order
    rejected = tpl.wait_for("rejected", order=mug)
    assert (rejected["status"], rejected["reason"]) == (
        "rejected",
        "Cannot ship E2E-MUG from E2E 3PL: stock damaged",
    )
    with hub.api("Shop") as api:
        deadline = time.monotonic() + 30
        while (held := api.get(f"/orders/{mug}").json())["status"] != "on_hold":
            assert time.monotonic() < deadline, held
            time.sleep(0.2)

    # and ships the T-shirt and corrects its tracking: the channel shows the corrected one
    first = tpl.wait_for("shipped", order=tee)
    relabeled = tpl.wait_for("relabeled", fulfillment=first["fulfillment"])["tracking_number"]
    assert relabeled == first["tracking_number"] + "R"
    deadline = time.monotonic() + 30
    while (shown := httpx.get(store, timeout=5).json()["orders"]["FIX-1"])["fulfillments"] != [
        {"id": first["fulfillment"], "carrier": "UPS", "tracking_number": relabeled}
    ]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)

    # when the parcel is voided (it never left)
    with hub.api("Warehouse") as api:
        assert api.post(f"/fulfillments/{first['fulfillment']}/cancel").status_code == 200

    # then the channel takes the dispatch back, and the order is to be shipped again
    channel.wait_for("dispatch_withdrawn", fulfillment=first["fulfillment"], via="webhook")
    assert httpx.get(store, timeout=5).json()["orders"]["FIX-1"]["dispatched"] is False
    with hub.api("Shop") as api:
        order = api.get(f"/orders/{tee}").json()
    assert order["status"] == "sent_to_fulfillment"
    assert [(f["id"], f["status"]) for f in order["fulfillments"]] == [(first["fulfillment"], "canceled")]

    # and a product deleted from the catalog is delisted by the channel and left out of the 3PL's pushes
    with hub.api("admin") as api:
        gone = api.post("/products", json={"sku": "E2E-GONE", "name": "Gone", "price": "1.00"}).json()
        assert api.delete(f"/products/{gone['id']}").status_code == 200
    channel.wait_for("product_delisted", sku="E2E-GONE")
    tpl.wait_for("product_archived", sku="E2E-GONE")


def test_the_3pl_ships_to_a_changed_address_and_catches_up_from_the_feed_after_a_restart(
    hub, connectors, tmp_path
):
    # given the sample 3PL keeping its state in a file, packing each parcel for 10 s before shipping: the
    # correction must reach it while it packs (0.1 s on a quiet machine; the margin is for a loaded CI)
    tpl_args = (
        *("--key", hub.keys["Warehouse"], "--location-name", "E2E 3PL", "--stock", "E2E-TEE=10,E2E-MUG=5"),
        *("--poll-interval", "0", "--state", str(tmp_path / "3pl.json")),
    )
    tpl = connectors.start("sample_3pl.py", *tpl_args, "--ship-delay", "10")
    tpl.wait_for("caught_up")  # its first run: the feed from now on

    # when a shop's order is routed to it, and the shop corrects the street once the 3PL acknowledged it
    tee = [{"sku": "E2E-TEE", "quantity": 1, "unit_price": "12.50"}]
    moved = routed_request(hub, hub.push_order("Shop", "MOVE-1", tee)["id"])["id"]
    tpl.wait_for("acknowledged", shipping_request=moved)
    body = order_body("MOVE-1", tee)
    body["shipping_address"]["line1"] = "9 Pier Rd"
    with hub.api("Shop") as api:
        again = api.post("/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert again.status_code == 200, again.text

    # then shipping_request.updated reaches it before the parcel leaves, and the parcel goes to the new street
    changed = tpl.wait_for("shipping_request_changed", shipping_request=moved)
    assert (changed["changes"], changed["via"]) == (["shipping_address.line1"], "webhook")
    assert tpl.wait_for("shipped", shipping_request=moved)["ship_to"]["line1"] == "9 Pier Rd"

    # when it is stopped, and meanwhile an order is routed to it and a product is deleted
    tpl.stop()
    assert tpl.popen.returncode == 0
    waiting = routed_request(hub, hub.push_order("Shop", "MOVE-2", tee)["id"])["id"]
    with hub.api("admin") as api:
        gone = api.post("/products", json={"sku": "E2E-GONE-2", "name": "Gone", "price": "1.00"}).json()
        assert api.delete(f"/products/{gone['id']}").status_code == 200

    # and starts again with its state file
    restarted = connectors.start("sample_3pl.py", *tpl_args)

    # then it reads the feed from its first start: what it missed is acted on once, what it had by webhook not
    # again (the request it shipped, with its update)
    caught = restarted.wait_for("caught_up")
    read = restarted.matching("feed")
    outcomes = {(e["type"], e["data_id"]): e["outcome"] for e in read}
    assert outcomes == {
        ("shipping_request.created", moved): "duplicate",
        ("shipping_request.updated", moved): "duplicate",
        ("shipping_request.created", waiting): "handled",
        ("product.deleted", gone["id"]): "handled",
    }, read
    assert (caught["read"], caught["handled"]) == (4, 2)
    assert restarted.wait_for("shipped", shipping_request=waiting)["via"] == "feed"
    restarted.wait_for("product_archived", sku="E2E-GONE-2", via="feed")
    assert restarted.matching("shipped", shipping_request=moved) == []
