# ruff: noqa: S311 — random picks SKUs, quantities, counts and client behaviours of bench traffic (no secrets).
"""
bench/load.py's traffic and chaos: the order posters, the 3PLs shipping, the stock pushers, and the worker
kills, the Redis outage and the PostgreSQL restart on their schedule.
"""

import contextlib
import itertools
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
from _harness import HarnessError, PostgresCluster, RedisServer, Supervised
from _load_clients import RETRY_TIMEOUT, GaveUp, Run, api_client, order_body


def post_orders(run: Run, next_index, index_lock: threading.Lock, seed: int) -> None:
    """One poster thread: takes the next order on the schedule, posts it until acknowledged."""
    config, ledger, tally = run.config, run.ledger, run.tally
    rng = random.Random(seed)
    clients = [api_client(run.base, ch["key"], config.request_timeout) for ch in run.fixture["channels"]]
    skus = [f"LOAD-O-{i:03d}" for i in range(config.order_skus)]
    try:
        while not run.stop.is_set():
            with index_lock:
                index = next(next_index)
            if index >= config.orders:
                return
            due = run.t0 + index / config.rate
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            channel_index = index % len(clients)
            channel, client = run.fixture["channels"][channel_index], clients[channel_index]
            external_id = f"{run.tag}-{index:06d}"
            lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(skus, rng.randint(1, 3))]
            body = order_body(external_id, lines, rng)
            key = str(uuid.uuid4())
            roll = rng.random()
            mode = (
                "retry"
                if roll < config.retry_share
                else "resend"
                if roll < config.retry_share + config.resend_share
                else "plain"
            )
            try:
                answer = tally.call(
                    client,
                    "POST",
                    "/orders",
                    "POST /orders",
                    json_body=body,
                    key=key,
                    give_up_after=config.give_up_after,
                    first_timeout=RETRY_TIMEOUT if mode == "retry" else None,
                )
            except GaveUp:
                with ledger.lock:
                    ledger.orders_unacknowledged.append(external_id)
                continue
            if answer.status_code not in (200, 201):
                with ledger.lock:
                    ledger.mismatches.append(f"order {external_id}: {answer.status_code} {answer.text[:200]}")
                continue
            order_id = answer.json()["id"]
            with ledger.lock:
                ledger.orders[external_id] = {
                    "channel": channel["tag"],
                    "id": order_id,
                    "lines": sorted(lines),
                    "status": answer.status_code,
                    "mode": mode,
                    "replayed": answer.headers.get("idempotent-replayed") == "true",
                }
            again = None
            with contextlib.suppress(GaveUp):
                if mode == "retry":  # the same key once more: the first answer replayed
                    again = tally.call(
                        client,
                        "POST",
                        "/orders",
                        "POST /orders (same key again)",
                        json_body=body,
                        key=key,
                        give_up_after=config.give_up_after,
                    )
                elif mode == "resend":  # no key: the upsert by external_id answers 200 with the same order
                    again = tally.call(
                        client,
                        "POST",
                        "/orders",
                        "POST /orders (resent without key)",
                        json_body=body,
                        give_up_after=config.give_up_after,
                    )
            if again is not None:
                expected = answer.status_code if mode == "retry" else 200
                same = again.status_code == expected and again.json().get("id") == order_id
                if not same:
                    with ledger.lock:
                        ledger.mismatches.append(
                            f"order {external_id} {mode}: first {answer.status_code} id {order_id}, "
                            f"then {again.status_code} {again.text[:200]}"
                        )
    finally:
        for client in clients:
            client.close()


def ship(run: Run, tpl: dict, client: httpx.Client, request: dict, rng: random.Random) -> None:
    config, ledger, tally = run.config, run.ledger, run.tally
    request_id = request["id"]
    if request["status"] == "pending":
        answer = tally.call(
            client,
            "POST",
            f"/shipping-requests/{request_id}/acknowledge",
            "POST /shipping-requests/{id}/acknowledge",
            key=f"ack-{request_id}",
            give_up_after=config.give_up_after,
        )
        if answer.status_code != 200:
            with ledger.lock:
                ledger.mismatches.append(
                    f"acknowledge {request_id}: {answer.status_code} {answer.text[:200]}"
                )
            return
    lines = [
        {"sku": line["sku"], "quantity": line["quantity"] - line.get("fulfilled_quantity", 0)}
        for line in request["lines"]
    ]
    lines = [line for line in lines if line["quantity"] > 0]
    external_id = f"{tpl['tag']}-F{request_id}"
    body = {
        "shipping_request": request_id,
        "external_id": external_id,
        "carrier": "LoadPost",
        "tracking_number": f"LP{request_id:0>12}",
        "tracking_url": f"https://tracking.example.test/LP{request_id}",
        "lines": lines,
        "shipped_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    answer = tally.call(
        client,
        "POST",
        "/fulfillments",
        "POST /fulfillments",
        json_body=body,
        key=f"ship-{request_id}",
        give_up_after=config.give_up_after,
    )
    if answer.status_code not in (200, 201):
        with ledger.lock:
            ledger.mismatches.append(f"fulfillment {external_id}: {answer.status_code} {answer.text[:200]}")
        return
    fulfillment_id = answer.json()["id"]
    with ledger.lock:
        ledger.fulfillments[(tpl["tag"], external_id)] = {
            "id": fulfillment_id,
            "request": request_id,
            "order": str(request["order"]["id"]),
            "location": int(request["location"]),
            "lines": sorted((line["sku"], line["quantity"]) for line in lines),
            "status": answer.status_code,
        }
        ledger.shipped_requests.add(request_id)
    if rng.random() < config.refulfill_share:
        # Sent again under a new key (a restarted 3PL that lost its keys): the first fulfillment comes back.
        with contextlib.suppress(GaveUp):
            again = tally.call(
                client,
                "POST",
                "/fulfillments",
                "POST /fulfillments (resent, new key)",
                json_body=body,
                key=str(uuid.uuid4()),
                give_up_after=config.give_up_after,
            )
            if again.status_code != 200 or again.json().get("id") != fulfillment_id:
                with ledger.lock:
                    ledger.mismatches.append(
                        f"fulfillment {external_id} resent: {again.status_code} {again.text[:200]}"
                    )


def run_3pl(run: Run, tpl: dict, part: int, parts: int, seed: int) -> None:
    """One 3PL thread: ships the open requests whose id falls to it (id mod parts), polling until stopped."""
    config, ledger, tally = run.config, run.ledger, run.tally
    rng = random.Random(seed)
    with api_client(run.base, tpl["key"], config.request_timeout) as client:
        while not run.stop.is_set():
            work = []
            for status in ("pending", "acknowledged"):
                try:
                    answer = tally.call(
                        client,
                        "GET",
                        "/shipping-requests",
                        "GET /shipping-requests",
                        params={"status": status, "limit": 200},
                        give_up_after=config.give_up_after,
                    )
                except GaveUp:
                    continue
                if answer.status_code != 200:
                    with ledger.lock:
                        ledger.mismatches.append(
                            f"shipping requests: {answer.status_code} {answer.text[:200]}"
                        )
                    continue
                with ledger.lock:
                    work += [
                        r
                        for r in answer.json()["results"]
                        if int(r["id"]) % parts == part and r["id"] not in ledger.shipped_requests
                    ]
            for request in work:
                if run.stop.is_set():
                    return
                with contextlib.suppress(GaveUp):
                    ship(run, tpl, client, request, rng)
            if not work:
                run.stop.wait(config.poll_every)


def push_stock(run: Run, tpl: dict, seed: int) -> None:
    """One pusher per location: absolute counts of a few push SKUs, every push_every s, until traffic ends."""
    config, ledger, tally = run.config, run.ledger, run.tally
    rng = random.Random(seed)
    skus = [f"LOAD-P-{i:03d}" for i in range(config.push_skus)]
    location = tpl["location"]
    with api_client(run.base, tpl["key"], config.request_timeout) as client:
        while not run.traffic_done.is_set():
            items = [
                {"sku": sku, "on_hand": rng.randint(0, 1000)} for sku in rng.sample(skus, config.push_items)
            ]
            try:
                answer = tally.call(
                    client,
                    "POST",
                    "/inventory",
                    "POST /inventory",
                    json_body={"location": location, "items": items},
                    key=str(uuid.uuid4()),
                    give_up_after=config.give_up_after,
                )
            except GaveUp:
                with ledger.lock:
                    ledger.stock_ambiguous.update((item["sku"], location) for item in items)
                continue
            with ledger.lock:
                if answer.status_code == 200 and not answer.json()["errors"]:
                    ledger.stock.update({(item["sku"], location): item["on_hand"] for item in items})
                    ledger.pushes += 1
                else:
                    ledger.mismatches.append(f"stock push: {answer.status_code} {answer.text[:200]}")
            run.traffic_done.wait(config.push_every)


# --- chaos ------------------------------------------------------------------------------------------------


@dataclass
class Chaos:
    """The processes chaos acts on, and what it did when (time.time())."""

    worker: Supervised
    beat: Supervised
    redis: RedisServer
    postgres: PostgresCluster
    gunicorn_pid: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    timeline: list[dict] = field(default_factory=list)
    unplanned: Counter = field(default_factory=Counter)  # exits nobody asked for, by process

    def note(self, what: str, **extra) -> None:
        self.timeline.append({"at": time.time(), "what": what, **extra})
        print(f"  [{time.strftime('%H:%M:%S')}] {what} {extra if extra else ''}".rstrip())

    def kill_worker(self) -> None:
        with self.lock:
            self.worker.restart()
        self.note("worker SIGKILLed and started again", pid=self.worker.pid)

    def supervise(self, stop: threading.Event) -> None:
        """What systemd would do: start again a worker or beat that exited on its own."""
        while not stop.wait(1.0):
            with self.lock:
                for name, proc in (("worker", self.worker), ("beat", self.beat)):
                    if not proc.alive():
                        self.unplanned[name] += 1
                        code = proc.proc.returncode if proc.proc else None
                        proc.start()
                        self.note(f"{name} had exited ({code}): started again", pid=proc.pid)


def run_chaos(run: Run, chaos: Chaos) -> list[threading.Thread]:
    config = run.config

    def at(offset: float) -> bool:
        """Wait until `offset` s into the traffic; False if the run stops first."""
        return not run.stop.wait(max(0.0, run.t0 + offset - time.time()))

    def killer():
        if config.kill_every <= 0:
            return
        for n in itertools.count(1):
            if not at(n * config.kill_every) or run.traffic_done.is_set():
                return
            chaos.kill_worker()

    def redis_outage():
        if config.redis_at < 0 or not at(config.redis_at):
            return
        chaos.redis.stop()
        chaos.note("Redis stopped")
        time.sleep(config.redis_down)
        try:
            chaos.redis.start(timeout=30)
        except HarnessError:
            chaos.note("Redis did not start again")
            return
        chaos.note("Redis back", pid=chaos.redis.proc.pid)

    def postgres_restart():
        if config.pg_at < 0 or not at(config.pg_at):
            return
        chaos.note("PostgreSQL restarting")
        chaos.postgres.restart()
        chaos.note("PostgreSQL back", pid=chaos.postgres.pid)

    threads = [
        run.guarded("chaos-kill", killer),
        run.guarded("chaos-redis", redis_outage),
        run.guarded("chaos-postgres", postgres_restart),
    ]
    for thread in threads:
        thread.start()
    return threads
