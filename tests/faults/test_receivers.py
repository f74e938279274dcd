"""
Receivers that misbehave do not hold up the others: one that accepts the connection and never answers is
cut off by WEBHOOK_TIMEOUT (recorded as a timeout, retried on the schedule with the same webhook-id) while
another integration's deliveries keep arriving; one that answers 500 or refuses connections does not delay
a healthy integration's deliveries. Latencies are printed as figures, never asserted.
"""

import socket
import statistics
import threading
import time

from .conftest import WEBHOOK_TIMEOUT, Receiver
from .test_redis_down import by_event
from .test_worker_killed import wait_until


class HangingServer:
    """Accepts every connection, reads the request, never answers: (arrival, webhook-id) per request."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.seen: list[tuple[float, str]] = []
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="hanging", daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            conn.settimeout(5)
            try:
                head = conn.recv(65536).decode("latin-1")
            except OSError:
                head = ""
            webhook_id = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in head.split("\r\n")
                    if line.lower().startswith("webhook-id:")
                ),
                "",
            )
            with self.lock:
                self.seen.append((time.monotonic(), webhook_id))
                self.open.append(conn)  # kept open, unanswered

    def close(self):
        self.sock.close()
        with self.lock:
            for conn in self.open:
                conn.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens there: connections are refused


def push_and_time(hub, name: str, receiver: Receiver, external_id: str) -> float:
    """Seconds from an order's POST to its order.created arriving at `receiver` (it must, within 60 s)."""
    began = time.monotonic()
    order, _ = hub.push_order_key(name, external_id)
    [arrived] = receiver.wait_for(
        1, timeout=60, where=lambda r: r.status == 200 and r.data["data"]["id"] == order["id"]
    )
    return arrived.at - began


def test_a_hanging_receiver_times_out_while_others_are_delivered(hub, receivers):
    # given an integration whose receiver hangs, and another with a healthy one
    hanging = HangingServer()
    try:
        stuck = hub.subscribe("Hanging", hanging.url, ["order.created"])
        healthy = Receiver()
        healthy.secret = hub.subscribe("Bystander", receivers.start(healthy), ["order.created"])["secret"]

        # when the hanging one has deliveries due (enough to keep both worker processes waiting on it)
        hung_orders = [hub.push_order_key("Hanging", f"HANG-{n}")[0]["id"] for n in range(4)]
        wait_until(lambda: len(hanging.seen) >= 1, 60, "the hanging receiver reached")
        # then the other integration's deliveries still arrive, each once
        latencies = [push_and_time(hub, "Bystander", healthy, f"BYSTANDER-{n}") for n in range(3)]
        assert all(len(ids) == 1 for ids in by_event(healthy).values())
        assert len(by_event(healthy)) == 3

        # and the hanging deliveries are recorded as timeouts and tried again with the same webhook-id
        def retried():
            ids = [webhook_id for _, webhook_id in hanging.seen]
            return all(ids.count(i) >= 2 for i in set(ids)) and len(set(ids)) == len(hung_orders) and ids

        wait_until(retried, 60, "every hanging delivery retried")
        first_ids = {}
        for at, webhook_id in hanging.seen:
            first_ids.setdefault(webhook_id, []).append(at)
        for tries in first_ids.values():
            # the second attempt waits for the first to time out, then for the schedule's 5 s (±10%)
            assert tries[1] - tries[0] >= WEBHOOK_TIMEOUT + 4.5 - 1, tries
        attempts = hub.sql(
            "SELECT a.error, a.succeeded, a.status_code FROM integrations_webhookattempt a "
            "JOIN integrations_webhookdelivery d ON d.id = a.delivery_id WHERE d.subscription_id = %s",
            (int(stuck["id"]),),
        )
        assert attempts and all(row == ("Timed out.", False, None) for row in attempts), attempts
        deliveries = hub.sql(
            "SELECT event_id, status FROM integrations_webhookdelivery WHERE subscription_id = %s",
            (int(stuck["id"]),),
        )
        assert sorted(e for e, _ in deliveries) == sorted(first_ids)
        assert {s for _, s in deliveries} <= {"failed", "pending"}  # owed: the schedule goes on
    finally:
        hanging.close()
    print(
        f"\n[faults] hanging receiver (timeout {WEBHOOK_TIMEOUT} s): the other integration's deliveries took "
        + ", ".join(f"{t:.2f}" for t in latencies)
        + " s"
    )


def test_an_integration_failing_hard_does_not_delay_another(hub, receivers):
    # given a healthy integration: its delivery latency alone
    healthy = Receiver()
    subscription = hub.subscribe("Healthy", receivers.start(healthy), ["order.created"])
    healthy.secret = subscription["secret"]
    alone = [push_and_time(hub, "Healthy", healthy, f"ALONE-{n}") for n in range(4)]

    # when one integration's receiver answers 500 and another's refuses connections, with a burst each
    failing = Receiver(default=(500, {}))
    broken = hub.subscribe("Failing", receivers.start(failing), ["order.created"])
    refused = hub.subscribe("Refused", closed_port_url(), ["order.created"])
    for n in range(10):
        hub.push_order_key("Failing", f"FAIL-{n}")
        hub.push_order_key("Refused", f"REFUSED-{n}")
    busy = [push_and_time(hub, "Healthy", healthy, f"BUSY-{n}") for n in range(4)]

    # then the healthy integration got every event once, each numbered as its order's first (sequence counts
    # per integration and object since #16)
    events = by_event(healthy)
    assert len(events) == 8 and all(len(ids) == 1 for ids in events.values()), events
    sequences = sorted(r.data["sequence"] for r in healthy.requests if r.status == 200)
    assert sequences == [1] * 8
    # and the failing ones are owed, each event under one webhook-id, retried on the schedule
    failing.wait_for(11, timeout=60)  # ten first attempts and at least one retry
    ids_per_order: dict[str, set[str]] = {}
    for request in failing.requests:
        ids_per_order.setdefault(request.data["data"]["id"], set()).add(request.webhook_id)
    assert len(ids_per_order) == 10 and all(len(ids) == 1 for ids in ids_per_order.values())
    for sub, expected in ((broken, (500, "")), (refused, (None, "refused"))):

        def recorded(sub=sub):  # every first attempt's outcome written (a batch records after it sends)
            rows = hub.sql(
                "SELECT status, last_status_code, last_error FROM integrations_webhookdelivery "
                "WHERE subscription_id = %s",
                (int(sub["id"]),),
            )
            return len(rows) == 10 and all(status == "failed" for status, _, _ in rows) and rows

        rows = wait_until(recorded, 60, f"ten failed deliveries to {sub['url']}")
        for _, code, error in rows:
            assert code == expected[0] and expected[1] in error.lower(), rows

    print(
        f"\n[faults] healthy integration's delivery latency: alone median {statistics.median(alone):.2f} s "
        f"(max {max(alone):.2f}); beside one answering 500 and one refusing connections (10 events each) "
        f"median {statistics.median(busy):.2f} s (max {max(busy):.2f})"
    )
