"""
PostgreSQL restarted under traffic: while it is down the API answers 503 `service_unavailable` in its error
shape with a Retry-After (never a 500 page, never a hang) and the admin a plain 503 page; once it is back
the same gunicorn processes serve again (CONN_HEALTH_CHECKS), and the worker and beat carry on by
themselves. Clients that retry with the same Idempotency-Key lose no order and make none twice.
"""

import re
import threading
import time
import uuid
from pathlib import Path

import httpx

from harness.hub import order_body

from .conftest import Receiver
from .test_redis_down import by_event, wait_for_events, wait_for_rows

ORDERS = 12


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def admin_session(hub) -> httpx.Client:
    """An httpx client logged in to the admin as the organization's admin."""
    client = httpx.Client(base_url=hub.url, timeout=15)
    login = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    answer = client.post(
        "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": token,
            "username": hub.admin[0],
            "password": hub.admin[1],
            "next": "/admin/",
        },
    )
    assert answer.status_code == 302, answer.text[:500]
    assert client.get("/admin/").status_code == 200
    return client


def test_postgres_restart_answers_503_then_recovers_without_restarts(hub, receivers):
    receiver = Receiver()
    receiver.secret = hub.subscribe("Restarted", receivers.start(receiver), ["order.created"])["secret"]
    admin = admin_session(hub)
    gunicorn = hub.procs["gunicorn"]
    web_processes = {gunicorn.pid, *children(gunicorn.pid)}
    worker, beat = hub.procs["worker"], hub.procs["beat"]

    # given a channel pushing orders one after another, each retried with its own Idempotency-Key until done
    results: dict[int, list] = {}
    keys = {n: str(uuid.uuid4()) for n in range(ORDERS)}
    failures = []

    def push_all():
        try:
            for n in range(ORDERS):
                body = order_body(f"PG-{n}", [{"sku": "F-TEE", "quantity": 1, "unit_price": "1.00"}])
                results[n] = hub.post_until_done("Restarted", "/orders", body, keys[n], deadline=120)
                time.sleep(0.3)
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)

    pusher = threading.Thread(target=push_all, name="pusher")
    pusher.start()
    while len(results) < 3 and pusher.is_alive():
        time.sleep(0.1)

    # when PostgreSQL stops (fast: sessions cut off mid-request) and stays down a few seconds
    hub.postgres.stop()
    down = time.monotonic()
    outage = []
    with hub.api("Restarted") as api:
        while time.monotonic() - down < 4:
            began = time.monotonic()
            answer = api.get("/orders")
            outage.append((answer, time.monotonic() - began))
            time.sleep(0.2)
    page = admin.get("/admin/")
    hub.postgres.start()
    up = time.monotonic()

    # then the API answered 503 in its error shape, with Retry-After, promptly
    for answer, _ in outage:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        error = answer.json()["error"]
        assert error["code"] == "service_unavailable" and error["message"] and error["details"] == {}
        assert int(answer.headers["Retry-After"]) > 0
    # and the admin a plain 503 page
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "Service unavailable" in page.text and "Traceback" not in page.text
    assert int(page.headers["Retry-After"]) > 0

    # and once it is back, every order was taken exactly once
    pusher.join(timeout=150)
    assert not pusher.is_alive() and not failures, failures
    seen_503 = [a for n in results for a in results[n] if a[0] == 503]
    for attempts in results.values():
        assert attempts[-1][0] in (200, 201), attempts
        for attempt in attempts[:-1]:
            assert attempt[0] in (409, 503) or isinstance(attempt[0], str), attempt
            if attempt[0] == 503:
                assert attempt[1]["error"]["code"] == "service_unavailable" and "retry-after" in attempt[3]
    ids = {results[n][-1][1]["id"] for n in results}
    assert len(ids) == ORDERS
    for n in range(ORDERS):
        assert hub.sql("SELECT count(*) FROM orders_order WHERE external_id = %s", (f"PG-{n}",)) == [(1,)]

    # served by the same gunicorn processes; the admin session works again
    assert gunicorn.alive() and {gunicorn.pid, *children(gunicorn.pid)} == web_processes
    assert admin.get("/admin/").status_code == 200

    # and the worker and beat, never restarted, route every order and deliver each order.created once
    assert hub.procs["worker"] is worker and worker.alive() and hub.procs["beat"] is beat and beat.alive()
    rows = wait_for_rows(
        hub,
        "SELECT order_id FROM orders_shippingrequest WHERE order_id = ANY(%s)",
        None,
        params=([int(i) for i in ids],),
        count=ORDERS,
    )
    assert sorted(r for (r,) in rows) == sorted(int(i) for i in ids)  # routed once each
    caught_up = wait_for_events(receiver, {("order.created", i) for i in ids}, 60)
    assert all(len(webhook_ids) == 1 for webhook_ids in by_event(receiver).values())

    latencies = sorted(t for _, t in outage)
    print(
        f"\n[faults] PostgreSQL restart: {len(outage)} API answers during the outage, all 503, "
        f"{latencies[0] * 1000:.0f}-{latencies[-1] * 1000:.0f} ms; {len(seen_503)} order POSTs answered 503 "
        f"and were retried; deliveries caught up {time.monotonic() - up:.1f} s after the restart "
        f"(last webhook {caught_up:.1f} s into the wait)"
    )
