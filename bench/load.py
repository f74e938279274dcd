# ruff: noqa: S311 — random picks SKUs, quantities, counts and client behaviours of bench traffic (no secrets).
"""
Load with a ledger: mixed traffic against gunicorn + Celery (worker and beat) on PostgreSQL and Redis while a
worker is SIGKILLed every 30 s, Redis is stopped for a minute and PostgreSQL restarted — then a reconciliation
of what the clients believe they did (their ledger) with the database and with what a webhook receiver got.

1. Starts (bench/_harness.py) a throwaway PostgreSQL and Redis, migrates, and seeds (`manage.py shell`) one
   organization: --channels custom-channel integrations and --tpls custom-3pl ones (handshaken, a key each),
   one location per 3PL (priorities 10, 20, …), --order-skus products stocked at every location with more
   than the run can ship (only fulfillments move them) and --push-skus products only stock pushes move, and
   one webhook subscription per integration to a receiver on 127.0.0.1: order/fulfillment/inventory events
   for channels, shipping_request.created/fulfillment.created/inventory.updated for 3PLs.
2. The receiver is its own process (ThreadingHTTPServer): every delivery is verified with the
   `standardwebhooks` package against its subscription's secret and recorded (arrival, subscription,
   webhook-id, type, object); it answers 200 to every request.
3. gunicorn, a Celery worker and Celery beat (database scheduler) — the worker and beat supervised: a process
   that exits is started again, as systemd would.
4. Traffic, each client with its own ledger entry only once the hub acknowledged (2xx):
   * order posters: --orders at --rate per second, round robin over the channels, each with a new
     Idempotency-Key. Every 5xx, 429, 409 idempotency_in_progress, timeout or connection error is retried
     with the same key and body. A --retry-share first sends with a client timeout so short the answer is
     never read (the server carries on) and then retries with the same key, and afterwards sends the same
     key again (a replay: same order id); a --resend-share sends the same body again without a key
     (the upsert by external_id: 200, same id).
   * 3PLs (--tpl-threads each): poll pending and acknowledged shipping requests, acknowledge, and ship each
     whole with one fulfillment (external id per request, Idempotency-Key per request) — a share re-posted
     with a new key (same external id: the first fulfillment back).
   * stock pushers, one per 3PL location: every --push-every s, absolute counts of --push-items push SKUs.
5. Chaos on a schedule from the traffic's start: the worker's process group SIGKILLed every --kill-every s
   and started again at once; Redis stopped at --redis-at for --redis-down s (no persistence: queued
   messages and cache are gone) and started on the same port; PostgreSQL restarted (pg_ctl restart -m fast)
   at --pg-at.
6. Drain: the 3PLs keep shipping until every order is fulfilled, the outbox is dispatched, no delivery is
   owed, the inventory engine's queue is empty and the receiver holds every delivery the database made.
7. Reconciliation: orders and fulfillments (ledger == database per integration: 0 lost, 0 duplicated, lines
   as sent, the same ids on replays), stock (push SKUs at their last acknowledged count, order SKUs at the
   initial count less the ledger's shipments, nothing left committed), events (one delivery per event and
   matching subscription, all succeeded, every one received with a valid signature, exactly one distinct
   webhook-id per event and subscription; the ledger's orders, fulfillments and the shipping requests seen
   by their subscriptions), and how soon deliveries resumed once Redis was back.

Prints throughput, p50/p99 per endpoint, answers by status, the chaos timeline and the reconciliation; writes
bench/results/load.json. tests/load/ runs a short configuration of the same driver (`Config.short()`).

    .venv/bin/python bench/load.py [--orders 10000] [--rate 20] [--kill-every 30] [--redis-at 120 --redis-down 60]
"""

import argparse
import contextlib
import itertools
import json
import os
import random
import secrets
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from _harness import (
    RATE_LIMIT,
    RESULTS_DIR,
    ROOT,
    Started,
    Supervised,
    celery_argv,
    celery_ping,
    cpu_percentages,
    cpu_snapshot,
    free_port,
    loadavg,
    percentile,
    postgres_server,
    redis_server,
    run_command,
    run_meta,
    server_log_problems,
    spawn,
    start_gunicorn,
    stop_pid,
    tail,
    worker_log_problems,
)

RESULTS = RESULTS_DIR / "load.json"
CHANNEL_EVENTS = ["order.created", "order.updated", "fulfillment.created", "inventory.updated"]
TPL_EVENTS = ["shipping_request.created", "fulfillment.created", "inventory.updated"]
ORDER_STOCK = 1_000_000  # per order SKU and location: more than any run ships
PUSH_INITIAL = 100  # per push SKU and location, until a push changes it
STEADY_GAP = 10.0  # s: the longest pause between deliveries that still counts as a steady flow
RETRY_TIMEOUT = 0.005  # s: the retry share's first attempt gives up on the answer this fast


@dataclass
class Config:
    """One run's shape. The defaults are the full run (issue 7's targets); short() is the suite's."""

    orders: int = 10_000
    rate: float = 20.0  # orders posted per second (the schedule catches up rather than skips)
    channels: int = 3
    tpls: int = 2
    posters: int = 6  # order-posting threads
    tpl_threads: int = 2  # polling/shipping threads per 3PL
    retry_share: float = 0.10
    resend_share: float = 0.05
    refulfill_share: float = 0.05
    order_skus: int = 40
    push_skus: int = 40
    push_every: float = 5.0
    push_items: int = 20
    kill_every: float = 30.0  # 0: never
    redis_at: float = 120.0  # seconds into the traffic; negative: never
    redis_down: float = 60.0
    pg_at: float = 300.0  # negative: never
    lease: int = 15  # WEBHOOK_DELIVERY_LEASE: a killed worker's claimed deliveries are due again after it
    sweep_seconds: int = 0  # >0: the engines' and deliveries' beat sweeps this often (0: as migrated)
    lost_message_seconds: int = 0  # >0: ENGINE_LOST_MESSAGE_SECONDS (0: the settings' default, 30)
    request_timeout: float = 10.0
    give_up_after: float = 600.0  # a client stops retrying one request after this long
    poll_every: float = 1.0  # a 3PL thread's pause when it found nothing to ship
    drain_timeout: float = 2400.0
    gunicorn_workers: int = 2
    gunicorn_threads: int = 4
    worker_concurrency: int = 2
    seed: int = 7

    @classmethod
    def short(cls, **overrides) -> "Config":
        """300 orders in ~25 s: a Redis stop of 10 s, one worker kill, one PostgreSQL restart."""
        values = dict(
            orders=300,
            rate=12.0,
            posters=4,
            push_every=1.0,
            push_items=10,
            kill_every=16.0,
            redis_at=3.0,
            redis_down=10.0,
            pg_at=20.0,
            lease=5,
            sweep_seconds=5,
            lost_message_seconds=10,
            give_up_after=150.0,
            drain_timeout=150.0,
        )
        return cls(**{**values, **overrides})

    @property
    def seconds(self) -> float:
        return self.orders / self.rate


# --- the receiver (its own process: `load.py --serve-receiver PORT`) ------------------------------------


class ReceiverHandler(BaseHTTPRequestHandler):
    """POST /hook/<tag>: verify (standardwebhooks) and record; /__control/…: secrets in, records out."""

    protocol_version = "HTTP/1.1"  # keep-alive: the worker pools its connections
    server: "ReceiverServer"

    def _reply(self, status: int, body: bytes = b"{}", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        arrived = time.time()
        path = urlsplit(self.path).path
        if not path.startswith("/hook/"):
            self._reply(404)
            return
        if len(body) < length:
            # The connection closed mid-body: the sending worker was SIGKILLed. Nobody waits for an answer and
            # the delivery is not done; recorded apart from bad signatures (the body is cut, not forged).
            self.server.record(
                path.removeprefix("/hook/"),
                dict(self.headers.items()),
                body,
                arrived,
                error=f"{TRUNCATED} {len(body)} of {length} bytes",
            )
            self.close_connection = True
            return
        self.server.record(path.removeprefix("/hook/"), dict(self.headers.items()), body, arrived)
        # 200 even to a bad signature: the reconciliation fails on it, retries would only hide it.
        self._reply(200)

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/__control/secrets":
            self.server.set_secrets(json.loads(body))
            self._reply(200)
        else:
            self._reply(404)

    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/__control/ping":
            self._reply(200, b"ok", "text/plain")
        elif parts.path == "/__control/records":
            start = int(parse_qs(parts.query).get("from", ["0"])[0])
            with self.server.lock:
                rows = self.server.records[start:]
            self._reply(200, "".join(json.dumps(row) + "\n" for row in rows).encode(), "text/plain")
        else:
            self._reply(404)

    def log_message(self, format, *args):  # the base class names it `format`
        pass


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int):
        super().__init__(("127.0.0.1", port), ReceiverHandler)
        self.lock = threading.Lock()
        self.webhooks: dict = {}
        self.records: list[list] = []

    def set_secrets(self, secrets_by_tag: dict[str, str]) -> None:
        from standardwebhooks import Webhook

        with self.lock:
            self.webhooks.update({tag: Webhook(secret) for tag, secret in secrets_by_tag.items()})

    def record(self, tag: str, headers: dict, body: bytes, arrived: float, error: str = "") -> None:
        from standardwebhooks import WebhookVerificationError

        lowered = {name.lower(): value for name, value in headers.items()}
        webhook = self.webhooks.get(tag)
        if not error:  # a cut body (`error` given) is not verified: it cannot match
            try:
                if webhook is None:
                    raise WebhookVerificationError(f"no secret for {tag}")
                event = webhook.verify(body, lowered)
            except Exception as exc:  # a bad signature, timestamp or body: recorded, the reconciliation fails
                error = f"{type(exc).__name__}: {exc}"[:200]
        if error:
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
        data = event.get("data") or {}
        row = [
            round(arrived, 6),
            tag,
            lowered.get("webhook-id", ""),
            error,
            event.get("type"),
            str(data.get("id", "")),
            str(data.get("external_id", "") or ""),
            event.get("sequence"),
        ]
        with self.lock:
            self.records.append(row)


TRUNCATED = "truncated:"


def serve_receiver(port: int) -> int:
    server = ReceiverServer(port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.2)
    return 0


RECORD_FIELDS = ("arrived", "tag", "webhook_id", "error", "type", "data_id", "external_id", "sequence")


@dataclass
class Receiver:
    base: str
    control: httpx.Client
    records: list[dict] = field(default_factory=list)

    def hook(self, tag: str) -> str:
        return f"{self.base}/hook/{tag}"

    def set_secrets(self, secrets_by_tag: dict[str, str]) -> None:
        self.control.put("/__control/secrets", json=secrets_by_tag).raise_for_status()

    def fetch(self) -> list[dict]:
        """Every record so far (fetched incrementally)."""
        response = self.control.get(f"/__control/records?from={len(self.records)}")
        response.raise_for_status()
        self.records += [
            dict(zip(RECORD_FIELDS, json.loads(line), strict=True)) for line in response.text.splitlines()
        ]
        return self.records


def start_receiver(stack: contextlib.ExitStack, folder: Path) -> Receiver:
    for _attempt in range(3):
        port = free_port()
        with (folder / "receiver.log").open("ab") as out:
            proc = spawn([sys.executable, __file__, "--serve-receiver", str(port)], stdout=out, stderr=out)
        stack.callback(stop_pid, proc.pid, signal.SIGTERM, "receiver")
        base = f"http://127.0.0.1:{port}"
        control = httpx.Client(base_url=base, timeout=60, trust_env=False)
        stack.callback(control.close)
        for _ in range(200):
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if control.get("/__control/ping").status_code == 200:
                    print(f"  receiver on 127.0.0.1:{port} (pid {proc.pid})")
                    return Receiver(base, control)
            time.sleep(0.05)
        stop_pid(proc.pid, signal.SIGTERM, "receiver")
    raise SystemExit(f"The receiver did not start:\n{tail(folder / 'receiver.log')}")


# --- seeding (in a `manage.py shell`, so this process needs no Django of its own) ----------------------

SEED = """
import json, secrets
from decimal import Decimal
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from integrations import configuration, lifecycle
from integrations.webhooks import subscriptions
from integrations.models import Connector
from inventory import services as inventory
from inventory.choices import LocationKind
from inventory.models import InventoryLevel, Location, Product
from organizations.models import Organization
from tokens import issuing as key_services
from tokens.choices import KeyKind

P = json.loads(PARAMS)
suffix = secrets.token_hex(3)
org = Organization.objects.create(name=f"Load {suffix}", slug=f"load-{suffix}")
connectors = Connector.objects.filter(organization=None)
products = Product.objects.bulk_create(
    [Product(organization=org, sku=f"LOAD-O-{i:03d}", name=f"Ordered {i}", price=Decimal("10.00"))
     for i in range(P["order_skus"])]
    + [Product(organization=org, sku=f"LOAD-P-{i:03d}", name=f"Pushed {i}", price=Decimal("5.00"))
       for i in range(P["push_skus"])]
)
out = {"org": org.pk, "channels": [], "tpls": []}

def integration(kind, name, tag, events):
    made = configuration.create_integration(org, connectors.get(key=kind), name)
    made = lifecycle.handshake(made)
    issued = key_services.issue_key(kind=KeyKind.INTEGRATION, name=f"{name} key", integration=made)
    subscription, secret = subscriptions.subscribe(made, P["receiver"] + "/hook/" + tag, events, issued.key)
    return {"tag": tag, "name": name, "id": made.pk, "key": issued.plaintext,
            "subscription": subscription.pk, "secret": secret}

for i in range(P["channels"]):
    out["channels"].append(integration("custom-channel", f"Channel {i + 1}", f"ch{i + 1}", P["channel_events"]))
levels = []
for j in range(P["tpls"]):
    tpl = integration("custom-3pl", f"3PL {j + 1}", f"tpl{j + 1}", P["tpl_events"])
    location = Location.objects.create(
        organization=org, name=f"DC {j + 1}", kind=LocationKind.THREE_PL,
        managed_by_id=tpl["id"], priority=10 * (j + 1),
    )
    tpl["location"] = location.pk
    out["tpls"].append(tpl)
    for index, product in enumerate(products):
        ordered = product.sku.startswith("LOAD-O-")
        if ordered and index % 3 == 0 and j < P["tpls"] - 1:
            continue  # a third of the order SKUs only at the last location: orders go to every 3PL
        stock = P["order_stock"] if ordered else P["push_initial"]
        levels.append(InventoryLevel(product=product, location=location, on_hand=stock))
with transaction.atomic():
    InventoryLevel.objects.bulk_create(levels)
    inventory.mark_changed(org, [p.pk for p in products])
if P["sweep_seconds"]:
    every, _ = IntervalSchedule.objects.get_or_create(every=P["sweep_seconds"], period="seconds")
    swept = PeriodicTask.objects.filter(
        task__in=[
            "automations.tasks.hold_sweep_task",
            "automations.tasks.routing_sweep_task",
            "automations.tasks.inventory_sweep_task",
            "integrations.tasks.sweep_deliveries_task",
        ]
    ).update(interval=every)
    out["swept_tasks"] = swept
print(json.dumps(out))
"""


def manage(env: dict, *args: str, timeout: float = 600) -> str:
    result = run_command(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**os.environ, **env}, text=True, timeout=timeout
    )
    if result.returncode:
        raise RuntimeError(
            f"manage.py {args[0]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def seed(env: dict, config: Config, receiver: Receiver) -> dict:
    params = {
        "receiver": receiver.base,
        "channels": config.channels,
        "tpls": config.tpls,
        "order_skus": config.order_skus,
        "push_skus": config.push_skus,
        "order_stock": ORDER_STOCK,
        "push_initial": PUSH_INITIAL,
        "channel_events": CHANNEL_EVENTS,
        "tpl_events": TPL_EVENTS,
        "sweep_seconds": config.sweep_seconds,
    }
    code = f"PARAMS = {json.dumps(json.dumps(params))}\n" + SEED
    return json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])


# --- clients: retries with the same key, figures per endpoint ------------------------------------------


class GaveUp(Exception):
    """A client stopped retrying one request (give_up_after): it does not know whether the hub acted."""


def retryable(response: httpx.Response) -> bool:
    if response.status_code >= 500 or response.status_code == 429:
        return True
    if response.status_code == 409:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return response.json()["error"]["code"] == "idempotency_in_progress"
    return False


class Tally:
    """Per endpoint: answers by status (or transport error), latency of answered attempts, retried calls."""

    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes: dict[str, Counter] = defaultdict(Counter)
        self.latencies: dict[str, list[float]] = defaultdict(list)  # 2xx attempts
        self.logical: dict[str, list[float]] = defaultdict(list)  # first attempt → acknowledged
        self.calls: Counter = Counter()
        self.retried: Counter = Counter()
        self.gave_up: Counter = Counter()
        self.ok_times: dict[str, list[float]] = defaultdict(list)  # time.time() of 2xx answers

    def call(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        endpoint: str,
        *,
        give_up_after: float,
        json_body=None,
        params=None,
        key: str | None = None,
        first_timeout: float | None = None,
    ) -> httpx.Response:
        """
        One logical request, retried with the same Idempotency-Key and body on a 5xx, 429, 409
        idempotency_in_progress, timeout or connection error — what a careful client does. `first_timeout`
        makes the first attempt give up on the answer that fast (the hub carries on without a reader).
        """
        headers = {"Idempotency-Key": key} if key else {}
        began, deadline = time.perf_counter(), time.monotonic() + give_up_after
        for attempt in itertools.count(1):
            started = time.perf_counter()
            extra = {}
            if attempt == 1 and first_timeout:  # the request is sent whole; only its answer is not awaited
                extra = {"timeout": httpx.Timeout(5.0, read=first_timeout)}
            try:
                response = client.request(
                    method, path, json=json_body, params=params, headers=headers, **extra
                )
            except httpx.TransportError as exc:
                response, outcome = None, type(exc).__name__
                if extra and isinstance(exc, httpx.ReadTimeout):
                    outcome = "answer not awaited"  # the deliberate first attempt of the retry share
            else:
                outcome = str(response.status_code)
                if response.status_code == 409 and retryable(response):
                    outcome = "409 in_progress"
            took = time.perf_counter() - started
            done = response is not None and not retryable(response)
            with self.lock:
                self.outcomes[endpoint][outcome] += 1
                if response is not None and response.status_code < 300:
                    self.latencies[endpoint].append(took)
                    self.ok_times[endpoint].append(time.time())
                if done:
                    self.calls[endpoint] += 1
                    self.retried[endpoint] += attempt > 1
                    if response.status_code < 300:
                        self.logical[endpoint].append(time.perf_counter() - began)
            if done:
                return response
            if time.monotonic() > deadline:
                with self.lock:
                    self.gave_up[endpoint] += 1
                raise GaveUp(f"{endpoint}: still {outcome} after {attempt} attempts")
            pause = min(0.2 * 2 ** min(attempt, 5), 5.0) * random.uniform(0.5, 1.0)
            if response is not None and response.headers.get("retry-after", "").isdigit():
                pause = min(float(response.headers["retry-after"]), 10.0)
            time.sleep(pause)
        raise AssertionError("unreachable")

    def figures(self, seconds: float) -> dict:
        out = {}
        for endpoint in sorted(set(self.outcomes) | set(self.calls)):
            latencies, logical = sorted(self.latencies[endpoint]), sorted(self.logical[endpoint])
            out[endpoint] = {
                "calls": self.calls[endpoint],
                "per_s": round(self.calls[endpoint] / seconds, 1) if seconds else 0.0,
                "retried_calls": self.retried[endpoint],
                "gave_up": self.gave_up[endpoint],
                "answers": dict(sorted(self.outcomes[endpoint].items())),
                "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
                "with_retries_p50_ms": round(percentile(logical, 0.5) * 1000, 1) if logical else None,
                "with_retries_p99_ms": round(percentile(logical, 0.99) * 1000, 1) if logical else None,
                "with_retries_max_ms": round(logical[-1] * 1000, 1) if logical else None,
            }
        return out


def api_client(base: str, key: str, timeout: float) -> httpx.Client:
    return httpx.Client(
        base_url=base + "/api/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(timeout, connect=5.0),
        trust_env=False,
    )


# --- the ledger -------------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients believe they did: only what the hub acknowledged with a 2xx."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    orders: dict[str, dict] = field(default_factory=dict)  # external_id → channel, id, lines, status
    orders_unacknowledged: list[str] = field(default_factory=list)  # gave up: the hub may or may not have it
    fulfillments: dict[tuple[str, str], dict] = field(default_factory=dict)  # (3PL tag, external_id) → …
    shipped_requests: set[str] = field(default_factory=set)
    stock: dict[tuple[str, int], int] = field(default_factory=dict)  # (sku, location) → last acknowledged
    stock_ambiguous: set[tuple[str, int]] = field(default_factory=set)  # a push the client gave up on
    pushes: int = 0
    mismatches: list[str] = field(default_factory=list)  # answers that contradict the contract


def order_body(external_id: str, lines: list[tuple[str, int]], rng: random.Random) -> dict:
    return {
        "external_id": external_id,
        "number": f"#{external_id}",
        "currency": "USD",
        "customer": {"name": "Load Customer", "email": "load@example.test"},
        "shipping_address": {
            "name": "Load Customer",
            "line1": "1 Load Street",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
        },
        "lines": [{"sku": sku, "quantity": qty, "unit_price": "10.00"} for sku, qty in lines],
    }


@dataclass
class Run:
    """What the traffic threads share."""

    config: Config
    base: str
    fixture: dict
    tally: Tally
    ledger: Ledger
    tag: str
    t0: float = 0.0  # time.time() when the traffic began
    traffic_done: threading.Event = field(default_factory=threading.Event)  # orders posted, pushes stop
    stop: threading.Event = field(default_factory=threading.Event)  # everything stops (drained)
    errors: list[str] = field(default_factory=list)  # a traffic thread's crash

    def guarded(self, name: str, target, *args) -> threading.Thread:
        def body():
            try:
                target(*args)
            except Exception as exc:  # a crashed client thread must show in the report, not vanish
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                raise

        return threading.Thread(target=body, name=name, daemon=True)


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
    redis: object  # _harness.RedisServer
    postgres: object  # _harness.PostgresServer
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
        if not chaos.redis.start(timeout=30):
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


# --- the database's side (psycopg: the drain and the reconciliation) ------------------------------------


def db_rows(database_url: str, sql: str, params=None) -> list[tuple]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def progress(database_url: str, org: int) -> dict:
    """What is still in flight in the hub."""
    (row,) = db_rows(
        database_url,
        """
        SELECT
          (SELECT count(*) FROM orders_order WHERE organization_id = %(org)s AND status <> 'fulfilled'),
          (SELECT count(*) FROM orders_order WHERE organization_id = %(org)s),
          (SELECT count(*) FROM integrations_outboxevent WHERE dispatched_at IS NULL),
          (SELECT count(*) FROM integrations_webhookdelivery WHERE status IN ('pending', 'failed')),
          (SELECT count(*) FROM integrations_webhookdelivery WHERE status = 'succeeded'),
          (SELECT count(*) FROM inventory_availabilitychange),
          (SELECT coalesce(max(id), 0) FROM integrations_outboxevent)
        """,
        {"org": org},
    )
    keys = (
        "open_orders",
        "orders",
        "undispatched",
        "owed",
        "succeeded",
        "availability_changes",
        "last_event",
    )
    return dict(zip(keys, row, strict=True))


def drain(run: Run, database_url: str, receiver: Receiver, timeout: float) -> dict:
    """Until nothing is in flight and the receiver holds every succeeded delivery (stable twice in a row)."""
    began, previous, state = time.monotonic(), None, {}
    while time.monotonic() - began < timeout:
        try:
            state = progress(database_url, run.fixture["org"])
        except Exception as exc:  # PostgreSQL may still be coming back
            state = {"error": str(exc)}
        received = len({r["webhook_id"] for r in receiver.fetch()})
        state["received_ids"] = received
        idle = (
            "error" not in state
            and state["open_orders"] == 0
            and state["undispatched"] == 0
            and state["owed"] == 0
            and state["availability_changes"] == 0
            and received >= state["succeeded"]
        )
        if idle and state == previous:
            return {"drained": True, "seconds": round(time.monotonic() - began, 1), "state": state}
        previous = state if idle else None
        time.sleep(2.0)
    return {"drained": False, "seconds": round(time.monotonic() - began, 1), "state": state}


def compare_sets(expected: set, found: set) -> dict:
    return {
        "expected": len(expected),
        "found": len(found),
        "lost": sorted(expected - found)[:20],
        "lost_count": len(expected - found),
        "unexpected": sorted(found - expected)[:20],
        "unexpected_count": len(found - expected),
    }


def reconcile(run: Run, database_url: str, receiver: Receiver) -> dict:
    ledger, fixture = run.ledger, run.fixture
    org = fixture["org"]
    channel_tag = {ch["id"]: ch["tag"] for ch in fixture["channels"]}
    tpl_tag = {tpl["id"]: tpl["tag"] for tpl in fixture["tpls"]}
    sub_tag = {item["subscription"]: item["tag"] for item in [*fixture["channels"], *fixture["tpls"]]}
    unacknowledged = set(ledger.orders_unacknowledged)

    # Orders: (channel, external_id) as the ledger has them, against the database.
    rows = db_rows(
        database_url,
        """
        SELECT o.id, o.source_id, o.external_id, o.status,
               array_agg(l.sku || ':' || l.quantity ORDER BY l.sku)
        FROM orders_order o JOIN orders_orderline l ON l.order_id = o.id
        WHERE o.organization_id = %s GROUP BY o.id
        """,
        (org,),
    )
    db_orders = Counter((channel_tag.get(source), ext) for _, source, ext, _, _ in rows)
    by_key = {
        (channel_tag.get(source), ext): (str(pk), status, lines) for pk, source, ext, status, lines in rows
    }
    expected = {(entry["channel"], ext) for ext, entry in ledger.orders.items()}
    found = {key for key in db_orders if key[1] not in unacknowledged}
    orders = compare_sets(expected, found)
    orders["duplicated"] = sorted(k for k, n in db_orders.items() if n > 1)[:20]
    orders["duplicated_count"] = sum(n - 1 for n in db_orders.values() if n > 1)
    orders["unacknowledged_by_client"] = len(unacknowledged)
    orders["unacknowledged_found"] = sum(1 for k in db_orders if k[1] in unacknowledged)
    wrong = []
    for ext, entry in ledger.orders.items():
        got = by_key.get((entry["channel"], ext))
        if got is None:
            continue
        lines = sorted(tuple(x.rsplit(":", 1)) for x in got[2])
        if got[0] != str(entry["id"]) or [(s, int(q)) for s, q in lines] != [
            tuple(x) for x in entry["lines"]
        ]:
            wrong.append(ext)
    orders["other_id_or_lines"] = wrong[:20]
    orders["other_id_or_lines_count"] = len(wrong)
    orders["by_status"] = dict(Counter(status for _, _, _, status, _ in rows))
    orders["first_answers"] = dict(Counter(str(e["status"]) for e in ledger.orders.values()))
    orders["first_answers_replayed"] = sum(1 for e in ledger.orders.values() if e["replayed"])
    orders["by_mode"] = dict(Counter(e["mode"] for e in ledger.orders.values()))

    # Fulfillments and shipping requests.
    rows = db_rows(
        database_url,
        """
        SELECT f.id, f.integration_id, f.external_id, f.shipping_request_id,
               array_agg(p.sku || ':' || fl.quantity ORDER BY p.sku)
        FROM orders_fulfillment f JOIN orders_fulfillmentline fl ON fl.fulfillment_id = f.id
        JOIN inventory_product p ON p.id = fl.product_id
        WHERE f.organization_id = %s GROUP BY f.id
        """,
        (org,),
    )
    db_fulfillments = Counter((tpl_tag.get(integration), ext) for _, integration, ext, _, _ in rows)
    per_request = Counter(request for _, _, _, request, _ in rows)
    fulfillments = compare_sets(set(ledger.fulfillments), set(db_fulfillments))
    fulfillments["duplicated_count"] = sum(n - 1 for n in db_fulfillments.values() if n > 1)
    fulfillments["requests_shipped_twice"] = sum(1 for n in per_request.values() if n > 1)
    fulfillments["first_answers"] = dict(Counter(str(e["status"]) for e in ledger.fulfillments.values()))
    requests = db_rows(
        database_url,
        """
        SELECT r.id, r.status, r.location_id, r.order_id,
               (SELECT count(*) FROM orders_shippingrequestline l WHERE l.request_id = r.id
                AND l.fulfilled_quantity <> l.quantity)
        FROM orders_shippingrequest r WHERE r.organization_id = %s
        """,
        (org,),
    )
    fulfillments["requests_by_status"] = dict(Counter(status for _, status, _, _, _ in requests))
    fulfillments["request_lines_not_fully_shipped"] = sum(n for *_, n in requests)
    (uncovered,) = db_rows(
        database_url,
        """
        SELECT count(*) FROM orders_orderline ol JOIN orders_order o ON o.id = ol.order_id
        WHERE o.organization_id = %s AND ol.quantity <> coalesce(
            (SELECT sum(rl.quantity) FROM orders_shippingrequestline rl
             JOIN orders_shippingrequest r ON r.id = rl.request_id
             WHERE rl.order_line_id = ol.id AND r.status <> 'canceled'), 0)
        """,
        (org,),
    )
    fulfillments["order_lines_not_requested_exactly"] = uncovered[0]

    # Stock: push SKUs at the last acknowledged count, order SKUs at the start less the ledger's shipments.
    levels = db_rows(
        database_url,
        """
        SELECT p.sku, l.location_id, l.on_hand, l.committed FROM inventory_inventorylevel l
        JOIN inventory_product p ON p.id = l.product_id WHERE p.organization_id = %s
        """,
        (org,),
    )
    shipped: Counter = Counter()
    for entry in ledger.fulfillments.values():
        for sku, quantity in entry["lines"]:
            shipped[(sku, entry["location"])] += quantity
    stock_wrong, ambiguous_skipped, committed = [], 0, 0
    for sku, location, on_hand, held in levels:
        committed += held
        if (sku, location) in ledger.stock_ambiguous:
            ambiguous_skipped += 1
            continue
        if sku.startswith("LOAD-P-"):
            want = ledger.stock.get((sku, location), PUSH_INITIAL)
        else:
            want = ORDER_STOCK - shipped[(sku, location)]
        if on_hand != want:
            stock_wrong.append({"sku": sku, "location": location, "on_hand": on_hand, "ledger": want})
    stock = {
        "levels": len(levels),
        "pushes_acknowledged": ledger.pushes,
        "levels_pushed": len(ledger.stock),
        "wrong": stock_wrong[:20],
        "wrong_count": len(stock_wrong),
        "ambiguous_skipped": ambiguous_skipped,
        "committed_left": committed,
    }

    # Events: the database's deliveries against the receiver's records.
    deliveries = db_rows(
        database_url,
        """
        SELECT d.event_id, d.outbox_event_id, d.subscription_id, d.status, d.event_type, d.attempts,
               extract(epoch FROM e.created_at)
        FROM integrations_webhookdelivery d JOIN integrations_outboxevent e ON e.id = d.outbox_event_id
        """,
    )
    (undispatched,) = db_rows(
        database_url, "SELECT count(*) FROM integrations_outboxevent WHERE dispatched_at IS NULL"
    )
    records = receiver.fetch()
    truncated = [r for r in records if r["error"].startswith(TRUNCATED)]
    bad = [r for r in records if r["error"] and not r["error"].startswith(TRUNCATED)]
    received: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if not record["error"]:  # only a whole, verified request counts as received
            received[record["webhook_id"]].append(record)
    per_pair = Counter((outbox, sub) for _, outbox, sub, *_ in deliveries)
    by_id = {event_id: (outbox, sub, status) for event_id, outbox, sub, status, *_ in deliveries}
    ours = {event_id for event_id, _, sub, *_ in deliveries if sub in sub_tag}
    not_received = sorted(event_id for event_id in ours if event_id not in received)
    wrong_place = sorted(
        event_id
        for event_id in ours
        if event_id in received and any(r["tag"] != sub_tag[by_id[event_id][1]] for r in received[event_id])
    )
    # Distinct webhook-ids per (event, subscription) as the receiver saw them.
    seen_ids_per_pair: dict[tuple, set] = defaultdict(set)
    for webhook_id in received:
        if webhook_id in by_id:
            outbox, sub, _ = by_id[webhook_id]
            seen_ids_per_pair[(outbox, sub)].add(webhook_id)
    events = {
        "outbox_undispatched": undispatched[0],
        "deliveries": len(deliveries),
        "deliveries_by_status": dict(Counter(status for _, _, _, status, *_ in deliveries)),
        "deliveries_by_type": dict(Counter(kind for _, _, _, _, kind, *_ in deliveries)),
        "attempts_over_one": sum(1 for *_, attempts, _ in deliveries if attempts > 1),
        "pairs_with_more_than_one_delivery": sum(1 for n in per_pair.values() if n > 1),
        "received_requests": len(records),
        "received_ids": len(received),
        "received_again": sum(len(v) - 1 for v in received.values()),  # at-least-once: same id, sent again
        "bad_signatures": len(bad),
        "bad_signature_samples": [r["error"] for r in bad][:3],
        "truncated_by_a_killed_sender": len(truncated),
        "not_received": not_received[:20],
        "not_received_count": len(not_received),
        "unknown_ids": sorted(set(received) - set(by_id))[:20],
        "unknown_ids_count": len(set(received) - set(by_id)),
        "at_wrong_subscription": len(wrong_place),
        "pairs_with_several_ids_at_receiver": sum(1 for ids in seen_ids_per_pair.values() if len(ids) > 1),
    }

    # The ledger's view: each order, fulfillment and shipping request told once to whom it concerns.
    def distinct_ids(tag: str, kind: str, attribute: str) -> dict[str, set]:
        out: dict[str, set] = defaultdict(set)
        for record in records:
            if record["tag"] == tag and record["type"] == kind and not record["error"]:
                out[record[attribute]].add(record["webhook_id"])
        return out

    told = {}
    channel_of_order = {str(e["id"]): e["channel"] for e in ledger.orders.values()}
    for channel in fixture["channels"]:
        tag = channel["tag"]
        created = distinct_ids(tag, "order.created", "external_id")
        fulfilled = distinct_ids(tag, "fulfillment.created", "data_id")
        want_orders = {ext for ext, e in ledger.orders.items() if e["channel"] == tag}
        want_fulfillments = {
            str(e["id"]) for e in ledger.fulfillments.values() if channel_of_order.get(e["order"]) == tag
        }
        told[tag] = {
            "order.created": {
                **compare_sets(want_orders, set(created)),
                "several_ids": sum(1 for ids in created.values() if len(ids) > 1),
            },
            "fulfillment.created": {
                **compare_sets(want_fulfillments, set(fulfilled)),
                "several_ids": sum(1 for ids in fulfilled.values() if len(ids) > 1),
            },
        }
    for tpl in fixture["tpls"]:
        tag = tpl["tag"]
        created = distinct_ids(tag, "shipping_request.created", "data_id")
        want = {str(pk) for pk, _, location, _, _ in requests if location == tpl["location"]}
        told[tag] = {
            "shipping_request.created": {
                **compare_sets(want, set(created)),
                "several_ids": sum(1 for ids in created.values() if len(ids) > 1),
            }
        }
    events["told"] = told
    return {"orders": orders, "fulfillments": fulfillments, "stock": stock, "events": events}


def verdict(reconciliation: dict, run: Run) -> dict[str, bool]:
    """The reconciliation's pass/fail checks (issue 7): what tests/load asserts."""
    orders, fulfillments = reconciliation["orders"], reconciliation["fulfillments"]
    stock, events = reconciliation["stock"], reconciliation["events"]
    told = events["told"]
    return {
        "orders: 0 lost": orders["lost_count"] == 0,
        "orders: 0 duplicated": orders["duplicated_count"] == 0 and orders["unexpected_count"] == 0,
        "orders: ids and lines as acknowledged": orders["other_id_or_lines_count"] == 0,
        "orders: all fulfilled": set(orders["by_status"]) == {"fulfilled"},
        "fulfillments: 0 lost": fulfillments["lost_count"] == 0,
        "fulfillments: 0 duplicated": fulfillments["duplicated_count"] == 0
        and fulfillments["unexpected_count"] == 0
        and fulfillments["requests_shipped_twice"] == 0,
        "shipping requests: each order line requested exactly": fulfillments[
            "order_lines_not_requested_exactly"
        ]
        == 0,
        "stock: as last acknowledged": stock["wrong_count"] == 0 and stock["committed_left"] == 0,
        "answers: as the contract says": not run.ledger.mismatches,
        "events: all dispatched and delivered": events["outbox_undispatched"] == 0
        and set(events["deliveries_by_status"]) <= {"succeeded"},
        "events: one delivery per event and subscription": events["pairs_with_more_than_one_delivery"] == 0,
        "events: every delivery received, signed": events["not_received_count"] == 0
        and events["bad_signatures"] == 0
        and events["unknown_ids_count"] == 0
        and events["at_wrong_subscription"] == 0,
        "events: one webhook-id per event and subscription": events["pairs_with_several_ids_at_receiver"] == 0
        and all(check.get("several_ids", 0) == 0 for per_tag in told.values() for check in per_tag.values()),
        "events: every order, fulfillment and request told": all(
            check["lost_count"] == 0 for per_tag in told.values() for check in per_tag.values()
        ),
        "clients: no thread crashed": not run.errors,
    }


# --- timing around the outages ----------------------------------------------------------------------------


def resumption(chaos: Chaos, records: list[dict], deliveries_created: dict[str, float]) -> dict:
    """After Redis came back: the first delivery, a steady flow again, the outage's deliveries all in."""
    marks = {entry["what"]: entry["at"] for entry in chaos.timeline}
    stopped, back = marks.get("Redis stopped"), marks.get("Redis back")
    if stopped is None or back is None:
        return {}
    arrivals = sorted(r["arrived"] for r in records)
    after = [a for a in arrivals if a >= back]
    first = after[0] - back if after else None
    # Steady: from this arrival on, no pause of more than STEADY_GAP s between deliveries for a minute (or
    # until the last delivery). Deliveries come in batches, so "every second" would be too strict a flow.
    steady = None
    for index, start in enumerate(after):
        window = [a for a in after[index:] if a <= start + 60]
        if all(b - a <= STEADY_GAP for a, b in itertools.pairwise(window)):
            steady = round(start - back, 2)
            break
    # Events committed while Redis was down: when the last of them had reached the receiver.
    first_arrival: dict[str, float] = {}
    for record in records:
        first_arrival.setdefault(record["webhook_id"], record["arrived"])
    during = [wid for wid, created in deliveries_created.items() if stopped <= created <= back]
    done = [first_arrival[w] for w in during if w in first_arrival]
    bins = Counter(int((a - stopped) // 5) * 5 for a in arrivals if stopped - 20 <= a <= back + 120)
    return {
        "down_seconds": round(back - stopped, 1),
        "first_delivery_after_s": round(first, 2) if first is not None else None,
        "steady_after_s": steady,
        "outage_events_deliveries": len(during),
        "outage_events_all_delivered_after_s": round(max(done) - back, 1)
        if done and len(done) == len(during)
        else None,
        "arrivals_per_5s_from_stop": {str(k): v for k, v in sorted(bins.items())},
    }


def recovery_after(chaos: Chaos, tally: Tally, what: str, endpoint: str = "POST /orders") -> float | None:
    """Seconds from a chaos mark to the next 2xx of `endpoint`."""
    mark = next((e["at"] for e in chaos.timeline if e["what"] == what), None)
    if mark is None:
        return None
    later = [t for t in tally.ok_times[endpoint] if t >= mark]
    return round(min(later) - mark, 2) if later else None


def timeline(database_url: str, t0: float, records: list[dict], step: int = 5) -> list[list]:
    """
    Per `step` s from the traffic's start: orders received, shipping requests made (routing), outbox events,
    delivery rows made (dispatch) and deliveries received — where the flow stalls when something is down.
    """
    tables = [
        "orders_order",
        "orders_shippingrequest",
        "integrations_outboxevent",
        "integrations_webhookdelivery",
    ]
    counts: dict[int, list[int]] = defaultdict(lambda: [0] * (len(tables) + 1))
    for index, table in enumerate(tables):
        bucket = "floor((extract(epoch FROM created_at) - %s) / %s)::int"
        binned = f"SELECT {bucket}, count(*) FROM {table} GROUP BY 1"  # noqa: S608 - fixed table names
        for slot, count in db_rows(database_url, binned, (t0, step)):
            counts[slot][index] = count
    for record in records:
        counts[int((record["arrived"] - t0) // step)][len(tables)] += 1
    return [[slot * step, *counts[slot]] for slot in sorted(counts)]


# --- the run ------------------------------------------------------------------------------------------------


def hub_env(database_url: str, redis_port: int, folder: Path, config: Config) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",
        "SECRET_KEY": "load-" + secrets.token_urlsafe(40),
        "HTTPS_ONLY": "false",
        "DEBUG": "false",
        "API_RATE_LIMIT": RATE_LIMIT,
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(folder / "var"),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "WEBHOOK_DELIVERY_LEASE": str(config.lease),
        "PYTHONUNBUFFERED": "1",
    } | (
        {"ENGINE_LOST_MESSAGE_SECONDS": str(config.lost_message_seconds)}
        if config.lost_message_seconds
        else {}
    )


def run_scenario(config: Config, stack: contextlib.ExitStack, folder: Path) -> dict:
    """Everything: services, hub, seed, traffic under chaos, drain, reconciliation. Returns the report."""
    started = Started()
    print("Starting services…")
    postgres = postgres_server(stack, started)
    redis = redis_server(stack, started)
    env = hub_env(postgres.url, redis.port, folder, config)
    receiver = start_receiver(stack, folder)
    began = time.monotonic()
    manage(env, "migrate", "--noinput")
    fixture = seed(env, config, receiver)
    receiver.set_secrets({x["tag"]: x["secret"] for x in [*fixture["channels"], *fixture["tpls"]]})
    print(f"  migrated and seeded in {time.monotonic() - began:.1f} s (organization {fixture['org']})")

    base, server_command = start_gunicorn(
        stack, started, env, config.gunicorn_workers, config.gunicorn_threads, folder
    )
    node = f"load-{secrets.token_hex(3)}@%h"
    worker = Supervised(
        "celery worker",
        celery_argv("worker", folder, concurrency=config.worker_concurrency, name=node),
        env,
        folder / "worker.log",
    ).start()
    stack.callback(worker.stop)
    beat = Supervised("celery beat", celery_argv("beat", folder), env, folder / "beat.log").start()
    stack.callback(beat.stop)
    import socket

    if not celery_ping(env["CELERY_BROKER_URL"], node.replace("%h", socket.gethostname()), timeout=90):
        raise RuntimeError(f"The worker did not answer a ping in 90 s:\n{tail(folder / 'worker.log')}")
    print(f"  celery worker -c {config.worker_concurrency} (pid {worker.pid}), beat (pid {beat.pid})")

    tally, ledger = Tally(), Ledger()
    run = Run(config, base, fixture, tally, ledger, tag=f"L{secrets.token_hex(2)}")
    chaos = Chaos(worker, beat, redis, postgres, started.gunicorn_pid)
    supervisor_stop = threading.Event()
    supervisor = threading.Thread(target=chaos.supervise, args=(supervisor_stop,), daemon=True)

    print(
        f"Traffic: {config.orders} orders at {config.rate}/s (~{config.seconds:.0f} s) from {config.posters} "
        f"posters over {config.channels} channels; {config.tpls} 3PLs × {config.tpl_threads} threads; stock "
        f"pushes every {config.push_every} s"
    )
    run.t0 = time.time()
    cpu_before, worker_cpu_before = cpu_snapshot(started), worker.cpu_seconds()
    supervisor.start()
    next_index, index_lock = itertools.count(), threading.Lock()
    rng = random.Random(config.seed)
    posters = [
        run.guarded(f"poster-{i}", post_orders, run, next_index, index_lock, rng.randrange(2**32))
        for i in range(config.posters)
    ]
    shippers = [
        run.guarded(f"3pl-{tpl['tag']}-{k}", run_3pl, run, tpl, k, config.tpl_threads, rng.randrange(2**32))
        for tpl in fixture["tpls"]
        for k in range(config.tpl_threads)
    ]
    pushers = [
        run.guarded(f"push-{tpl['tag']}", push_stock, run, tpl, rng.randrange(2**32))
        for tpl in fixture["tpls"]
    ]
    for thread in [*posters, *shippers, *pushers]:
        thread.start()
    chaos_threads = run_chaos(run, chaos)
    try:
        for thread in posters:
            thread.join()
        traffic_seconds = time.time() - run.t0
        run.traffic_done.set()
        print(
            f"  orders posted in {traffic_seconds:.1f} s; waiting for the chaos to finish and the hub to drain"
        )
        for thread in [*pushers, *chaos_threads]:
            thread.join()
        drained = drain(run, postgres.url, receiver, config.drain_timeout)
        total_seconds = time.time() - run.t0
        cpu = cpu_percentages(cpu_before, cpu_snapshot(started), total_seconds)
        cpu["worker"] = round((worker.cpu_seconds() - worker_cpu_before) / total_seconds * 100)
        cpu["other"] -= cpu["worker"]
    finally:
        run.stop.set()
        supervisor_stop.set()
        for thread in shippers:
            thread.join(timeout=60)
    print(f"  drained: {drained['drained']} after {drained['seconds']} s ({drained['state']})")

    reconciliation = reconcile(run, postgres.url, receiver)
    created = {
        event_id: float(at)
        for event_id, at in db_rows(
            postgres.url,
            "SELECT d.event_id, extract(epoch FROM e.created_at) FROM integrations_webhookdelivery d "
            "JOIN integrations_outboxevent e ON e.id = d.outbox_event_id",
        )
    }
    checks = verdict(reconciliation, run)
    deliveries = len(receiver.records)
    return {
        "meta": {
            **run_meta("load.py", started, False, server_command),
            "worker": " ".join(str(a) for a in worker.argv[2:]),
            "config": asdict(config),
            "loadavg_after": loadavg(),
        },
        "throughput": {
            "traffic_seconds": round(traffic_seconds, 1),
            "drain_seconds": drained["seconds"],
            "orders_acknowledged": len(ledger.orders),
            "orders_per_s": round(len(ledger.orders) / traffic_seconds, 1),
            "fulfillments": len(ledger.fulfillments),
            "fulfillments_per_s": round(len(ledger.fulfillments) / total_seconds, 1),
            "stock_pushes": ledger.pushes,
            "deliveries_received": deliveries,
            "deliveries_per_s": round(deliveries / total_seconds, 1),
            "cpu_pct": cpu,
        },
        "endpoints": tally.figures(traffic_seconds),
        "chaos": {
            "timeline": [
                {**entry, "at_s": round(entry["at"] - run.t0, 1)} | {"at": round(entry["at"], 3)}
                for entry in chaos.timeline
            ],
            "worker_kills": sum(1 for e in chaos.timeline if e["what"].startswith("worker SIGKILLed")),
            "unplanned_exits": dict(chaos.unplanned),
            "worker_starts": worker.starts,
            "beat_starts": beat.starts,
            "redis": resumption(chaos, receiver.records, created),
            "orders_ok_after_redis_back_s": recovery_after(chaos, tally, "Redis back"),
            "orders_ok_after_postgres_back_s": recovery_after(chaos, tally, "PostgreSQL back"),
        },
        "drain": drained,
        # [s from the traffic's start, orders in, requests made, events, deliveries made, deliveries received]
        "timeline_5s": timeline(postgres.url, run.t0, receiver.records),
        "reconciliation": reconciliation,
        "mismatches": ledger.mismatches[:50],
        "mismatch_count": len(ledger.mismatches),
        "client_errors": run.errors,
        "checks": checks,
        "passed": all(checks.values()),
        "logs": {
            "gunicorn_errors": len(server_log_problems(folder)),
            "worker_errors": len(worker_log_problems(folder / "worker.log")),
            "beat_errors": len(worker_log_problems(folder / "beat.log")),
        },
    }


# --- report -------------------------------------------------------------------------------------------------


def print_report(report: dict) -> None:
    t, chaos, rec = report["throughput"], report["chaos"], report["reconciliation"]
    config = report["meta"]["config"]
    print(f"\n== Load with a ledger: {config['orders']} orders at {config['rate']}/s ==")
    print(
        f"traffic {t['traffic_seconds']} s, drain {t['drain_seconds']} s: {t['orders_acknowledged']} orders "
        f"({t['orders_per_s']}/s), {t['fulfillments']} fulfillments, {t['stock_pushes']} stock pushes, "
        f"{t['deliveries_received']} deliveries received ({t['deliveries_per_s']}/s over traffic + drain)"
    )
    print("CPU % of one core: " + ", ".join(f"{k} {v}" for k, v in t["cpu_pct"].items()))
    print(
        f"\n{'endpoint':42} {'calls':>7} {'/s':>6} {'p50 ms':>8} {'p99 ms':>8} {'+retries p99':>12} {'retried':>7}  answers"
    )
    for name, e in report["endpoints"].items():
        answers = " ".join(f"{k}:{v}" for k, v in e["answers"].items())
        print(
            f"{name:42} {e['calls']:>7} {e['per_s']:>6} {e['p50_ms'] or '-':>8} {e['p99_ms'] or '-':>8} "
            f"{e['with_retries_p99_ms'] or '-':>12} {e['retried_calls']:>7}  {answers}"
            + (f"  gave up {e['gave_up']}" if e["gave_up"] else "")
        )
    print(
        f"\nchaos: {chaos['worker_kills']} worker kills, worker started {chaos['worker_starts']}×, beat "
        f"{chaos['beat_starts']}×, unplanned exits {chaos['unplanned_exits'] or 'none'}"
    )
    for entry in chaos["timeline"]:
        if not entry["what"].startswith("worker SIGKILLed"):
            print(f"  {entry['at_s']:>7} s  {entry['what']}")
    redis = chaos["redis"]
    if redis:
        print(
            f"Redis down {redis['down_seconds']} s; after it came back: first delivery {redis['first_delivery_after_s']} s, "
            f"steady {redis['steady_after_s']} s, the {redis['outage_events_deliveries']} deliveries of events "
            f"made during the outage all received after {redis['outage_events_all_delivered_after_s']} s; "
            f"first order acknowledged {chaos['orders_ok_after_redis_back_s']} s"
        )
    print(f"PostgreSQL restart: first order acknowledged {chaos['orders_ok_after_postgres_back_s']} s after")
    rows = report["timeline_5s"]
    marks = [e["at_s"] for e in chaos["timeline"] if not e["what"].startswith("worker")]
    shown = [r for r in rows if len(rows) <= 40 or any(m - 10 <= r[0] <= m + 90 for m in marks)]
    print(
        "per 5 s (around Redis and PostgreSQL): s, orders in, requests made, events, deliveries made, received"
    )
    print("  " + "  ".join("/".join(str(v) for v in row) for row in shown))
    o, f, s, ev = rec["orders"], rec["fulfillments"], rec["stock"], rec["events"]
    print("\nreconciliation")
    print(
        f"  orders: ledger {o['expected']}, database {o['found']}, lost {o['lost_count']}, duplicated "
        f"{o['duplicated_count']}, unexpected {o['unexpected_count']}, other id/lines {o['other_id_or_lines_count']}; "
        f"by status {o['by_status']}; first answers {o['first_answers']} ({o['first_answers_replayed']} replayed); "
        f"client gave up on {o['unacknowledged_by_client']} ({o['unacknowledged_found']} in the database)"
    )
    print(
        f"  fulfillments: ledger {f['expected']}, database {f['found']}, lost {f['lost_count']}, duplicated "
        f"{f['duplicated_count']}, requests shipped twice {f['requests_shipped_twice']}; requests {f['requests_by_status']}"
    )
    print(
        f"  stock: {s['levels']} levels, {s['pushes_acknowledged']} pushes; wrong {s['wrong_count']}, committed left "
        f"{s['committed_left']}, skipped (ambiguous) {s['ambiguous_skipped']}"
    )
    print(
        f"  events: {ev['deliveries']} deliveries {ev['deliveries_by_status']}, undispatched {ev['outbox_undispatched']}, "
        f"received {ev['received_ids']} ids in {ev['received_requests']} requests (again: {ev['received_again']}), "
        f"not received {ev['not_received_count']}, unknown {ev['unknown_ids_count']}, bad signatures "
        f"{ev['bad_signatures']}, cut off by a killed sender {ev.get('truncated_by_a_killed_sender', 0)}, "
        f"pairs with >1 delivery {ev['pairs_with_more_than_one_delivery']}, with >1 id "
        f"{ev['pairs_with_several_ids_at_receiver']}"
    )
    print(f"  by type: {ev['deliveries_by_type']}")
    for tag, per_kind in ev["told"].items():
        print(
            f"  {tag}: "
            + "; ".join(
                f"{kind} {c['found']}/{c['expected']} lost {c['lost_count']} several ids {c['several_ids']}"
                for kind, c in per_kind.items()
            )
        )
    if report["mismatches"]:
        print(f"  answers against the contract ({report['mismatch_count']}): {report['mismatches'][:5]}")
    if report["client_errors"]:
        print(f"  client threads crashed: {report['client_errors']}")
    print(f"  logs: {report['logs']}")
    print("\nchecks")
    for name, ok in report["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print("PASSED" if report["passed"] else "FAILED")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--short", action="store_true", help="the suite's short configuration as the base")
    defaults = Config()
    for item in fields(Config):
        flag = "--" + item.name.replace("_", "-")
        parser.add_argument(
            flag,
            type=type(getattr(defaults, item.name)),
            default=None,
            help=f"(default {getattr(defaults, item.name)})",
        )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"JSON results ({RESULTS.relative_to(ROOT)})"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.serve_receiver:
        return serve_receiver(args.serve_receiver)
    overrides = {f.name: getattr(args, f.name) for f in fields(Config) if getattr(args, f.name) is not None}
    config = Config.short(**overrides) if args.short else Config(**overrides)

    def run(_args, stack):
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="switchyard-load-"))
        print(f"  logs in {folder}")
        return run_scenario(config, stack, folder)

    from _harness import main as harness_main

    status = harness_main(args, run, print_report)
    if status == 0:
        report = json.loads(args.output.read_text())
        return 0 if report["passed"] else 1
    return status


if __name__ == "__main__":
    sys.exit(main())
