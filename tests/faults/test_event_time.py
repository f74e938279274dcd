"""
Event-time bodies, per-object sequences and the catch-up feed through real processes (#16, items 1, 2 and 7):
gunicorn, a Celery worker and beat on PostgreSQL and Redis, and loopback receivers verifying every signature.

* two shipments committed while the worker is stopped still reach the channel as `partially_fulfilled`, then
  `fulfilled` (bodies rendered at dispatch said `fulfilled` twice);
* a connector that deletes its subscription and subscribes again goes on from the sequence it had;
* a receiver that was down reads every event it missed from GET /webhook-events, each exactly once, the same
  object its deliveries carry.

It shares the package's hub (conftest.py), so it costs no hub of its own.
"""

import json
import signal
import uuid

from .conftest import Receiver
from .test_worker_killed import wait_until


def order_status(hub, name, order_id) -> str:
    with hub.api(name) as api:
        return api.get(f"/orders/{order_id}").json()["status"]


def routed_request(hub, order_id) -> dict | None:
    """The order's shipping request as the 3PL lists it, once the engines routed it."""
    with hub.api("Warehouse") as api:
        page = api.get("/shipping-requests", params={"limit": 500}).json()["results"]
    return next((r for r in page if r["order"]["id"] == order_id), None)


def heard(receiver, order_id, event_type="order.updated") -> list[dict]:
    bodies = [r.data for r in receiver.requests if r.verified and r.status == 200]
    return [b for b in bodies if b["type"] == event_type and b["data"]["id"] == order_id]


def test_two_shipments_committed_while_the_worker_is_stopped_reach_the_channel_as_they_happened(
    hub, receivers
):
    # given a channel's order of two tees, routed to the 3PL, whose events so far have all arrived
    receiver = Receiver()
    subscription = hub.subscribe("Paused", receivers.start(receiver), ["order.updated"])
    receiver.secret = subscription["secret"]
    order, _ = hub.push_order_key("Paused", "PAUSE-1", qty=2)
    request = wait_until(lambda: routed_request(hub, order["id"]), 60, "the order routed")
    wait_until(
        lambda: any(b["data"]["status"] == "sent_to_fulfillment" for b in heard(receiver, order["id"])),
        60,
        "sent_to_fulfillment delivered",
    )

    # when the worker is stopped (SIGSTOP: nothing dispatches or delivers) and the 3PL ships one tee, then the other
    worker = hub.procs["worker"]
    worker._signal_group(signal.SIGSTOP)
    try:
        for n in (1, 2):
            body = {
                "shipping_request": request["id"],
                "external_id": f"PAUSE-1-{n}",
                "carrier": "UPS",
                "tracking_number": f"1Z{n}",
                "lines": [{"sku": "F-TEE", "quantity": 1}],
            }
            with hub.api("Warehouse") as api:
                answer = api.post("/fulfillments", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
            assert answer.status_code == 201, answer.text
        assert order_status(hub, "Paused", order["id"]) == "fulfilled"
    finally:
        worker._signal_group(signal.SIGCONT)

    # then the channel hears both states, in sequence order, though both were dispatched after the second
    def shipped():
        before = ("new", "on_hold", "ready", "sent_to_fulfillment")  # told before the worker stopped
        updates = [b for b in heard(receiver, order["id"]) if b["data"]["status"] not in before]
        return updates if len(updates) >= 2 else None

    updates = sorted(wait_until(shipped, 60, "both updates delivered"), key=lambda b: b["sequence"])
    assert [b["data"]["status"] for b in updates] == ["partially_fulfilled", "fulfilled"]


def test_a_resubscription_continues_the_sequence(hub, receivers):
    # given a channel's order whose events reached a first subscription
    first = Receiver()
    subscription = hub.subscribe("Resubscriber", receivers.start(first), ["order.created", "order.updated"])
    first.secret = subscription["secret"]
    order, _ = hub.push_order_key("Resubscriber", "RESUB-1")
    wait_until(
        lambda: any(b["data"]["status"] == "sent_to_fulfillment" for b in heard(first, order["id"])),
        60,
        "the order routed and told",
    )
    numbers = sorted(
        b["sequence"] for t in ("order.created", "order.updated") for b in heard(first, order["id"], t)
    )
    assert numbers == list(range(1, len(numbers) + 1))

    # when the connector deletes that subscription, subscribes again elsewhere and the order is canceled
    with hub.api("Resubscriber") as api:
        assert api.delete(f"/webhooks/{subscription['id']}").status_code == 204
    second = Receiver()
    again = hub.subscribe("Resubscriber", receivers.start(second), ["order.canceled"])
    second.secret = again["secret"]
    with hub.api("Resubscriber") as api:
        assert api.post(f"/orders/{order['id']}/cancel").status_code == 200

    # then the new subscription's first event goes on from the last number (it restarted at 1 before)
    [canceled] = wait_until(
        lambda: heard(second, order["id"], "order.canceled"), 60, "order.canceled delivered"
    )
    assert canceled["sequence"] == numbers[-1] + 1


def read_feed(api, after=None) -> list[dict]:
    """Every event of the feed after `after`, following `next`, as a connector catching up does."""
    page = api.get("/webhook-events", params={"after": after} if after else {}).json()
    events = page["results"]
    while page["next"]:
        page = api.get(page["next"]).json()
        events += page["results"]
    return events


def test_a_receiver_that_was_down_recovers_every_event_from_the_feed_exactly_once(hub, receivers):
    # given a channel whose receiver is down: every delivery is refused
    down = Receiver(default=(503, {}))
    subscription = hub.subscribe(
        "Recovering", receivers.start(down), ["order.created", "order.updated", "order.canceled"]
    )
    down.secret = subscription["secret"]
    with hub.api("Recovering") as api:
        before = read_feed(api)
    place = before[-1]["id"] if before else None

    # when three orders come in and are routed, one is canceled, while it is down; and it reads the feed
    # twice on the way back (a first read part way, then after it), as a connector resuming does
    orders = [hub.push_order_key("Recovering", f"DOWN-{n}")[0]["id"] for n in range(3)]
    for order_id in orders:
        wait_until(lambda o=order_id: routed_request(hub, o), 60, "the order routed")
    with hub.api("Recovering") as api:
        part = read_feed(api, after=place)
        assert api.post(f"/orders/{orders[0]}/cancel").status_code == 200
    wait_until(lambda: order_status(hub, "Recovering", orders[0]) == "canceled", 30, "the order canceled")
    recorded = {
        row[0]: row[1]
        for row in hub.sql(
            "SELECT event_id, body FROM integrations_webhookevent WHERE integration_id = %s AND type LIKE 'order.%%'",
            (hub.integrations["Recovering"],),
        )
        if json.loads(row[1])["data"]["id"] in orders
    }

    def the_rest():
        with hub.api("Recovering") as api:
            rest = read_feed(api, after=part[-1]["id"])
        ids = {e["id"] for e in part + rest if e["type"].startswith("order.") and e["data"]["id"] in orders}
        return rest if ids >= set(recorded) else None

    rest = wait_until(the_rest, 30, "every recorded event in the feed")

    # then every event of the orders is read exactly once, as the deliveries that failed carry it
    read = [e for e in part + rest if e["type"].startswith("order.") and e["data"]["id"] in orders]
    assert sorted(e["id"] for e in read) == sorted(recorded)  # each once: no id twice, none missing
    assert all(e == json.loads(recorded[e["id"]]) for e in read)
    # each as it was then: the canceled order's created event does not say canceled
    told = {e["type"]: e["data"]["status"] for e in read if e["data"]["id"] == orders[0]}
    assert told["order.canceled"] == "canceled" and told["order.created"] != "canceled"
    sent = {
        event_id: body
        for event_id, body in hub.sql(
            "SELECT event_id, body FROM integrations_webhookdelivery WHERE subscription_id = %s",
            (int(subscription["id"]),),
        )
    }
    assert set(sent) >= set(recorded)  # the failing deliveries carry the same events …
    assert all(json.loads(sent[event_id]) == json.loads(body) for event_id, body in recorded.items())
    # … none of which reached the receiver
    assert not [r for r in down.requests if r.status == 200]
    # and resuming after the last event read gives nothing more
    with hub.api("Recovering") as api:
        tail = read_feed(api, after=read[-1]["id"])
    assert [e for e in tail if e["type"].startswith("order.") and e["data"]["id"] in orders] == []
