# ruff: noqa: S311 — random picks SKUs, quantities, counts and client behaviours of bench traffic (no secrets).
"""
bench/load.py's configuration, the seed of its organization, and what its clients share: the ledger of
what the hub acknowledged, the tally of answers per endpoint, and the retry rules of a careful client.
"""

import contextlib
import itertools
import json
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
from _harness import (
    ROOT,
    percentile,
    run_command,
)
from _load_receiver import Receiver

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
