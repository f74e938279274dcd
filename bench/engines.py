# ruff: noqa: S311 — random picks SKUs, quantities and prices of bench orders (no secrets).
"""
The hold and routing engines end to end: how long an order takes from ingest to routed (or held) when the
engines react on commit, with real gunicorn and a real Celery worker on PostgreSQL and Redis — and whether
two overlapping sweeps leave the same result as one.

1. One organization: a custom-channel integration with its key, a custom-3pl integration managing two
   locations (East, priority 10; West, priority 20) with stock for --products products laid out so every
   outcome is known in advance: a third at East only, a third at both, a third at West only, and a tenth
   that cannot ship (half with on hand equal to the organization's buffer, half with none). One automation
   rule, "total more than 500 → hold for review"; one routing card, "Canada ships from West first".
2. gunicorn and `celery -A config worker -c 2 --prefetch-multiplier 1`; no beat (the latency is the on-commit
   triggers' alone; --with-beat adds it).
3. --orders orders through POST /api/v1/orders at --rate per second from --clients threads (each 201 means
   the order is committed), after a few warm-up orders that count for the checks but not the figures.
4. One query per --poll interval for all outstanding orders until each left new/ready (sent to fulfillment,
   or on hold). The latency is taken from the server's own timestamps: the order's created_at to its first
   shipping request's created_at (routed) or its updated_at (held); the hold engine's step is the RuleRun's
   created_at. The poll only says when everything is done (and gives a client-side upper bound).
5. Checks: each outcome against the prediction from stock, rule and card (locations included); one rule run
   per order; at most one shipping request per order and location, covering each line exactly; Σ committed
   per level = Σ open shipping-request lines; nothing committed beyond on hand − buffer.
6. Overlapping sweeps: the worker stopped and the on-commit triggers disconnected in this process, --sweep-
   orders more orders are ingested in one transaction through orders.services.ingest_order; then two threads
   (one connection each) run hold.run_now() and routing.run_now() at once, and again; the result must equal
   one sweep's: every order processed once, outcomes as predicted, no duplicate requests, stock consistent.

Prints the figures and checks, writes bench/results/engines.json, stops everything it started.

    .venv/bin/python bench/engines.py [--orders 500] [--rate 20] [--clients 4] [--sweep-orders 200] [--with-beat]
"""

import argparse
import contextlib
import json
import os
import queue
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path

import httpx
from _harness import (
    RESULTS_DIR,
    ROOT,
    Started,
    add_common_arguments,
    cpu_percentages,
    cpu_snapshot,
    django_env,
    loadavg,
    percentile,
    run_meta,
    server_log_problems,
    setup_django,
    spawn,
    start_gunicorn,
    start_services,
    start_worker,
    stop_pid,
    tail,
    tree_cpu_seconds,
    worker_log_problems,
)
from _harness import main as harness_main

RESULTS = RESULTS_DIR / "engines.json"
ORDERS = "/api/v1/orders"
SHIPPING_CODE = "std"  # the channel's code, mapped to the hub method "standard"
REVIEW = "review"  # the hold reason of the bench's rule
RULE_LIMIT = Decimal("500")  # the rule holds orders whose total is more than this
TARGET_P95_S = 2.0
CPU_GROUPS = ("client", "gunicorn", "worker", "postgres", "redis", "other")
OUTCOMES = ("routed", "held_review", "held_unroutable")


# --- fixture ------------------------------------------------------------------------------------------


@dataclass
class Fixture:
    """The organization the bench created and what the predictions need to know about its stock."""

    org_id: int
    channel_id: int
    channel_key: str
    east: int  # location ids
    west: int
    names: dict[int, str]
    where: dict[str, frozenset[int]]  # sku → the locations that can ship it (none: the SKU is short)
    stocked: list[str]
    short: list[str]
    buffer: int
    tag: str


def create_fixture(product_count: int, on_hand: int, buffer: int) -> Fixture:
    """The organization, its integrations, locations, stock, buffer, automation rule and routing card."""
    from automations.services import engine_settings
    from django.db import transaction

    from automations import rules
    from automations.models import AutomationRule, RoutingRule, RoutingRuleLocation
    from integrations import configuration, lifecycle
    from integrations.models import Connector
    from inventory import services as inventory
    from inventory.choices import LocationKind
    from inventory.models import InventoryLevel, Location, Product
    from orders.models import ShippingMethod, ShippingMethodMapping
    from organizations.models import Organization
    from tokens import issuing as key_services
    from tokens.choices import KeyKind

    suffix = secrets.token_hex(4)
    org = Organization.objects.create(name=f"Bench engines {suffix}", slug=f"bench-engines-{suffix}")
    connector = Connector.objects.filter(organization=None)
    channel = configuration.create_integration(org, connector.get(key="custom-channel"), "Bench shop")
    tpl = configuration.create_integration(org, connector.get(key="custom-3pl"), "Bench 3PL")
    channel, tpl = lifecycle.handshake(channel), lifecycle.handshake(tpl)
    issued = key_services.issue_key(kind=KeyKind.INTEGRATION, name="Bench shop key", integration=channel)
    if "orders:write" not in issued.key.grants:
        raise SystemExit("The channel key lacks orders:write: the connector's recommended grants changed")
    method = ShippingMethod.objects.create(organization=org, code="standard", name="Standard")
    ShippingMethodMapping.objects.create(integration=channel, external_code=SHIPPING_CODE, method=method)

    def location(name, priority):
        return Location.objects.create(
            organization=org, name=name, kind=LocationKind.THREE_PL, managed_by=tpl, priority=priority
        )

    east, west = location("East", 10), location("West", 20)
    products = Product.objects.bulk_create(
        Product(organization=org, sku=f"ENG-{i:04d}", name=f"Bench product {i}", price=Decimal("20.00"))
        for i in range(product_count)
    )
    short_count = max(2, product_count // 10)
    stocked, short = products[: product_count - short_count], products[product_count - short_count :]
    third = len(stocked) // 3
    where: dict[str, frozenset[int]] = {}
    levels = []
    for index, product in enumerate(stocked):
        at = (east,) if index < third else (east, west) if index < 2 * third else (west,)
        where[product.sku] = frozenset(loc.pk for loc in at)
        levels += [InventoryLevel(product=product, location=loc, on_hand=on_hand) for loc in at]
    for index, product in enumerate(short):
        # Half the short SKUs have exactly the buffer on hand: routable 0, so only the buffer keeps them back.
        where[product.sku] = frozenset()
        levels.append(InventoryLevel(product=product, location=east, on_hand=buffer if index % 2 else 0))
        levels.append(InventoryLevel(product=product, location=west, on_hand=0))
    with transaction.atomic():
        InventoryLevel.objects.bulk_create(levels)
        inventory.mark_changed(org, [p.pk for p in products])
    if buffer:
        inventory.set_default_buffer(org, quantity=buffer)

    settings = engine_settings(org)
    if not all(settings.enabled(e) for e in ("hold", "routing")) or settings.default_hold_minutes:
        raise SystemExit("New organizations no longer start with hold and routing on and no default hold")
    conditions = [{"field": "total", "operator": "gt", "value": str(RULE_LIMIT)}]
    actions = [{"type": "hold", "reason": REVIEW}]
    AutomationRule.objects.create(
        organization=org,
        name=f"Total more than {RULE_LIMIT}: hold for review",
        conditions=rules.validate_conditions(conditions),
        actions=rules.validate_actions(actions, org),
    )
    card = RoutingRule.objects.create(
        organization=org,
        name="Canada ships from West first",
        conditions=rules.validate_conditions([{"field": "country", "operator": "eq", "value": "CA"}]),
        allow_split=True,
        position=10,
    )
    RoutingRuleLocation.objects.bulk_create(
        [
            RoutingRuleLocation(rule=card, location=west, position=0),
            RoutingRuleLocation(rule=card, location=east, position=1),
        ]
    )
    return Fixture(
        org_id=org.pk,
        channel_id=channel.pk,
        channel_key=issued.plaintext,
        east=east.pk,
        west=west.pk,
        names={east.pk: east.name, west.pk: west.name},
        where=where,
        stocked=[p.sku for p in stocked],
        short=[p.sku for p in short],
        buffer=buffer,
        tag=suffix,
    )


# --- orders and what should become of them ------------------------------------------------------------


@dataclass
class Spec:
    """One order the bench sends, and what stock, rule and card say must become of it."""

    external_id: str
    lines: list[tuple[str, int, Decimal]]  # sku, quantity, unit price
    country: str
    total: Decimal
    outcome: str = ""
    locations: frozenset[int] = frozenset()

    def body(self) -> dict:
        return {
            "external_id": self.external_id,
            "number": f"#{self.external_id}",
            "currency": "USD",
            "customer": {"name": "Bench Customer", "email": "bench@example.test"},
            "shipping_address": {
                "name": "Bench Customer",
                "line1": "1 Bench Street",
                "city": "Springfield",
                "postal_code": "12345",
                "country": self.country,
            },
            "shipping_method": SHIPPING_CODE,
            "lines": [{"sku": s, "quantity": q, "unit_price": str(p)} for s, q, p in self.lines],
        }


def predict(spec: Spec, fixture: Fixture) -> tuple[str, frozenset[int]]:
    """
    (outcome, locations) by the rules the engines implement: the hold rule first; then the card (Canada:
    West, East; else East, West by priority), one location that has every line, else a greedy split.
    """
    if spec.total > RULE_LIMIT:
        return "held_review", frozenset()
    where = [fixture.where[sku] for sku, _, _ in spec.lines]
    if any(not at for at in where):
        return "held_unroutable", frozenset()
    order = (fixture.west, fixture.east) if spec.country == "CA" else (fixture.east, fixture.west)
    for loc in order:
        if all(loc in at for at in where):
            return "routed", frozenset({loc})
    # Split: the first location takes every line it has, the second the rest (stock is ample by design).
    return "routed", frozenset(order[0] if order[0] in at else order[1] for at in where)


def make_specs(fixture: Fixture, count: int, prefix: str, rng: random.Random, args) -> list[Spec]:
    """`count` orders: 1–3 lines of stocked SKUs; a share made big (held), short (unroutable), Canadian."""
    specs = []
    for n in range(count):
        skus = rng.sample(fixture.stocked, rng.randint(1, 3))
        lines = [(sku, rng.randint(1, 3), Decimal(rng.randint(500, 4000)) / 100) for sku in skus]
        if rng.random() < args.short_share:
            lines[-1] = (rng.choice(fixture.short), lines[-1][1], lines[-1][2])
        if rng.random() < args.big_share:
            lines[0] = (lines[0][0], 2, Decimal("300.00"))  # 600 on its own: over the rule's 500
        country = "CA" if rng.random() < args.canada_share else "US"
        spec = Spec(f"{prefix}-{n:05d}", lines, country, sum((q * p for _, q, p in lines), Decimal(0)))
        spec.outcome, spec.locations = predict(spec, fixture)
        specs.append(spec)
    return specs


# --- the worker (and beat) ----------------------------------------------------------------------------


@dataclass
class Celery:
    """The worker (and beat) this run started."""

    worker_pid: int | None = None
    worker_name: str = ""
    worker_command: str = ""
    worker_log: Path | None = None
    beat_pid: int | None = None


def start_beat(stack, env, folder: Path, celery: Celery) -> None:
    argv = ["-A", "config", "beat", "-l", "warning", "--pidfile", str(folder / "beat.pid")]
    argv += ["-s", str(folder / "beat-schedule")]
    log = folder / "beat.log"
    with log.open("wb") as out:
        proc = spawn(
            [sys.executable, "-m", "celery", *argv],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    celery.beat_pid = proc.pid
    stack.callback(stop_pid, proc.pid, signal.SIGTERM, "celery beat")
    time.sleep(2)
    if proc.poll() is not None:
        raise SystemExit(f"celery beat exited with {proc.returncode}:\n{tail(log)}")
    print(f"  celery -A config beat (database scheduler, pid {proc.pid})")


def tasks_run(celery: Celery) -> dict[str, int]:
    """Tasks the worker has run so far, by name (its own tally)."""
    from config.celery import app

    stats = app.control.inspect(destination=[celery.worker_name], timeout=2.0).stats() or {}
    totals = stats.get(celery.worker_name, {}).get("total", {})
    return {task.rsplit(".", 1)[-1]: n for task, n in sorted(totals.items())}


def wait_idle(celery: Celery, timeout: float) -> bool:
    """Until the broker's queue is empty and the worker holds no task (twice in a row)."""
    import redis
    from django.conf import settings

    from config.celery import app

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        inspect = app.control.inspect(destination=[celery.worker_name], timeout=1.0)
        busy = [*((inspect.active() or {}).values()), *((inspect.reserved() or {}).values())]
        quiet = quiet + 1 if client.llen("celery") + client.llen("deliveries") == 0 and not any(busy) else 0
        if quiet >= 2:
            return True
        time.sleep(0.2)
    return False


# --- (3)+(4): post at a steady rate, poll until every order is decided ---------------------------------


@dataclass
class Posted:
    acked: dict[str, float] = field(default_factory=dict)  # external id → wall time the 201 arrived
    ids: dict[str, int] = field(default_factory=dict)  # external id → order id
    late: list[float] = field(default_factory=list)  # seconds each request started after its slot
    errors: list[str] = field(default_factory=list)


def post_orders(
    base: str, key: str, specs: list[Spec], rate: float, clients: int, on_id
) -> tuple[Posted, float]:
    """Send `specs` at `rate` per second from `clients` threads; (what came back, seconds from first to last)."""
    posted, lock = Posted(), threading.Lock()
    slots = iter(range(len(specs)))
    began = time.perf_counter() + 0.05

    def work():
        with httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=30,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        ) as http:
            while True:
                with lock:
                    index = next(slots, None)
                if index is None:
                    return
                spec, due = specs[index], began + index / rate
                time.sleep(max(0.0, due - time.perf_counter()))
                late = time.perf_counter() - due
                try:
                    response = http.post(ORDERS, content=json.dumps(spec.body()).encode())
                except httpx.HTTPError as error:
                    problem = f"{spec.external_id}: {type(error).__name__}: {error}"
                else:
                    problem = (
                        None
                        if response.status_code == 201
                        else (f"{spec.external_id}: HTTP {response.status_code} {response.text[:200]}")
                    )
                acked = time.time()
                with lock:
                    posted.late.append(late)
                    if problem:
                        posted.errors.append(problem)
                    else:
                        order_id = int(response.json()["id"])
                        posted.acked[spec.external_id], posted.ids[spec.external_id] = acked, order_id
                if not problem:
                    on_id(order_id, acked)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return posted, time.perf_counter() - began


class Poller(threading.Thread):
    """One query per interval for every outstanding order: records when each was first seen decided."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.inbox = interval, queue.SimpleQueue()
        self.outstanding: set[int] = set()
        self.seen: dict[int, float] = {}  # order id → wall time a poll first saw it decided
        self.polls = 0
        self.stop = threading.Event()

    def add(self, order_id: int, _acked: float) -> None:
        self.inbox.put(order_id)

    def run(self):
        from django.db import connection

        from orders.choices import OrderStatus
        from orders.models import Order

        try:
            while not self.stop.is_set():
                while not self.inbox.empty():
                    self.outstanding.add(self.inbox.get())
                if self.outstanding:
                    decided = list(
                        Order.objects.filter(pk__in=self.outstanding)
                        .exclude(status__in=(OrderStatus.NEW, OrderStatus.READY))
                        .values_list("pk", flat=True)
                    )
                    self.polls += 1
                    now = time.time()
                    for order_id in decided:
                        self.seen[order_id] = now
                    self.outstanding.difference_update(decided)
                time.sleep(self.interval)
        finally:
            connection.close()

    def wait_all(self, timeout: float) -> bool:
        """After the last post: until nothing is outstanding, or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.inbox.empty() and not self.outstanding:
                time.sleep(self.interval * 2)  # a last id may be in flight between get() and add()
                if self.inbox.empty() and not self.outstanding:
                    return True
            time.sleep(self.interval)
        return False


# --- what the database says happened -------------------------------------------------------------------


def outcomes(fixture: Fixture, specs: list[Spec]) -> dict[str, dict]:
    """Per external id: status, outcome, locations, server timestamps, rule runs and request count."""
    from django.db.models import Count, Min

    from automations.choices import RuleTrigger
    from automations.models import RuleRun
    from orders.choices import OrderStatus
    from orders.models import Order, ShippingRequest
    from orders.services import UNROUTABLE_REASON

    wanted = [s.external_id for s in specs]
    orders = Order.objects.filter(source_id=fixture.channel_id, external_id__in=wanted)
    rows = {
        r["pk"]: r
        for r in orders.values(
            "pk", "external_id", "status", "hold_reason", "created_at", "updated_at", "total"
        )
    }
    requests = defaultdict(list)
    first_request = {}
    for order_id, location_id, created_at in ShippingRequest.objects.filter(order__in=orders).values_list(
        "order_id", "location_id", "created_at"
    ):
        requests[order_id].append(location_id)
        first_request[order_id] = min(first_request.get(order_id, created_at), created_at)
    runs = {
        r["order_id"]: r
        for r in RuleRun.objects.filter(order__in=orders, trigger=RuleTrigger.ORDER_CREATED, dry_run=False)
        .values("order_id")
        .annotate(n=Count("pk"), first=Min("created_at"))
    }
    found = {}
    for order_id, row in rows.items():
        reasons = row["hold_reason"].split("; ") if row["hold_reason"] else []
        if row["status"] == OrderStatus.SENT_TO_FULFILLMENT:
            outcome, decided = "routed", first_request.get(order_id)
        elif row["status"] == OrderStatus.ON_HOLD and REVIEW in reasons:
            outcome, decided = "held_review", row["updated_at"]
        elif row["status"] == OrderStatus.ON_HOLD and UNROUTABLE_REASON in reasons:
            outcome, decided = "held_unroutable", row["updated_at"]
        else:
            outcome, decided = f"{row['status']}: {row['hold_reason']}".rstrip(": "), None
        run = runs.get(order_id, {})
        found[row["external_id"]] = {
            "id": order_id,
            "status": row["status"],
            "outcome": outcome,
            "total": row["total"],
            "locations": requests.get(order_id, []),
            "created_at": row["created_at"],
            "hold_engine_at": run.get("first"),
            "decided_at": decided,
            "rule_runs": run.get("n", 0),
        }
    return found


def compare(specs: list[Spec], found: dict[str, dict], names: dict[int, str]) -> dict:
    """Actual against predicted: counts of each, and each order that differs (with why)."""
    predicted, actual, mismatches = Counter(), Counter(), []
    for spec in specs:
        row = found.get(spec.external_id)
        predicted[spec.outcome] += 1
        if row is None:
            mismatches.append(f"{spec.external_id}: not in the database")
            continue
        actual[row["outcome"]] += 1
        where = frozenset(row["locations"])
        problems = []
        if row["outcome"] != spec.outcome:
            problems.append(f"{row['outcome']}, predicted {spec.outcome}")
        if row["total"] != spec.total:
            problems.append(f"total {row['total']}, sent {spec.total}")
        if where != spec.locations:
            problems.append(
                f"routed to {sorted(names[i] for i in row['locations'])}, predicted "
                f"{sorted(names[i] for i in spec.locations)}"
            )
        if len(row["locations"]) != len(where):
            problems.append(f"{len(row['locations'])} shipping requests for {len(where)} locations")
        if row["rule_runs"] != 1:
            problems.append(f"{row['rule_runs']} order.created rule runs, not 1")
        if problems:
            mismatches.append(f"{spec.external_id}: " + "; ".join(problems))
    return {
        "predicted": {k: predicted[k] for k in OUTCOMES},
        "actual": {
            **{k: actual[k] for k in OUTCOMES},
            **{k: v for k, v in actual.items() if k not in OUTCOMES},
        },
        "split": sum(1 for s in specs if len(s.locations) > 1),
        "mismatches": len(mismatches),
        "mismatch_samples": mismatches[:15],
        "ok": not mismatches,
    }


def stock_checks(fixture: Fixture) -> dict:
    """Org-wide: duplicate requests, lines routed ≠ ordered, Σ committed vs open request lines, buffer."""
    from django.db.models import Count, Sum

    from inventory.models import InventoryBuffer, InventoryLevel
    from orders.models import OrderLine, ShippingRequest, ShippingRequestLine
    from orders.services import OPEN_REQUEST

    org = fixture.org_id
    duplicates = (
        ShippingRequest.objects.filter(organization_id=org)
        .values("order_id", "location_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    )
    routed = dict(
        ShippingRequestLine.objects.filter(request__organization_id=org)
        .values("order_line_id")
        .annotate(q=Sum("quantity"))
        .values_list("order_line_id", "q")
    )
    ordered = dict(
        OrderLine.objects.filter(order__shipping_requests__organization_id=org)
        .distinct()
        .values_list("pk", "quantity")
    )
    lines_off = sum(1 for pk, qty in ordered.items() if routed.get(pk, 0) != qty)
    open_lines = {
        (r["product_id"], r["request__location_id"]): r["q"]
        for r in ShippingRequestLine.objects.filter(
            request__organization_id=org, request__status__in=OPEN_REQUEST
        )
        .values("product_id", "request__location_id")
        .annotate(q=Sum("quantity"))
    }
    levels = list(
        InventoryLevel.objects.filter(location__organization_id=org).values_list(
            "product_id", "location_id", "on_hand", "committed"
        )
    )
    buffer = InventoryBuffer.objects.filter(
        organization_id=org, location=None, product=None, channel=None
    ).first()
    committed = {(p, loc): c for p, loc, _, c in levels}
    unequal = sorted(
        key for key in set(committed) | set(open_lines) if committed.get(key, 0) != open_lines.get(key, 0)
    )
    over = [
        (p, loc, on_hand, c)
        for p, loc, on_hand, c in levels
        if c > on_hand - (buffer.held_back(on_hand) if buffer else 0)
    ]
    return {
        "duplicate_requests": duplicates,
        "order_lines_not_routed_exactly": lines_off,
        "levels": len(levels),
        "committed_units": sum(committed.values()),
        "open_request_units": sum(open_lines.values()),
        "levels_committed_ne_open_lines": len(unequal),
        "levels_over_on_hand_less_buffer": len(over),
        "over_samples": [list(x) for x in over[:5]],
        "ok": not (duplicates or lines_off or unequal or over),
    }


def seconds(later, earlier) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


def spread(values: list[float]) -> dict:
    values = sorted(v for v in values if v is not None)
    return {
        "n": len(values),
        "p50_s": round(percentile(values, 0.50), 3),
        "p95_s": round(percentile(values, 0.95), 3),
        "p99_s": round(percentile(values, 0.99), 3),
        "max_s": round(values[-1], 3) if values else float("nan"),
    }


def latency(specs: list[Spec], found: dict, posted: Posted, seen: dict[int, float]) -> dict:
    """Server-side ingest → decided (overall and per outcome, and the hold engine's step); client-side bound."""
    rows = [found[s.external_id] for s in specs if s.external_id in found]
    by_outcome = defaultdict(list)
    for row in rows:
        by_outcome[row["outcome"]].append(seconds(row["decided_at"], row["created_at"]))
    client = [
        seen[posted.ids[s.external_id]] - posted.acked[s.external_id]
        for s in specs
        if s.external_id in posted.ids and posted.ids[s.external_id] in seen
    ]
    return {
        "ingest_to_decided": spread([seconds(r["decided_at"], r["created_at"]) for r in rows]),
        "by_outcome": {k: spread(v) for k, v in sorted(by_outcome.items())},
        "ingest_to_hold_engine": spread([seconds(r["hold_engine_at"], r["created_at"]) for r in rows]),
        "hold_engine_to_routed": spread(
            [seconds(r["decided_at"], r["hold_engine_at"]) for r in rows if r["outcome"] == "routed"]
        ),
        "client_201_to_seen_decided": spread(client),
    }


# --- (0) in-process: what each engine step costs ------------------------------------------------------


def _step(work) -> tuple[object, dict]:
    """(result, {wall ms, CPU ms of this process, queries}) of one call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return result, {"ms": wall * 1000, "cpu_ms": cpu * 1000, "queries": len(captured.captured_queries)}


def in_process(fixture: Fixture, specs: list[Spec]) -> dict:
    """
    Each order's steps one after the other in this process, triggers off: ingest, the hold engine's
    process_order, the routing engine's route_order_by_id, the inventory engine's process_changes (which
    retries the routing of orders held for the products that moved). Median and mean of each step.
    """
    from automations.choices import RuleTrigger
    from automations.engines import hold, inventory, routing
    from integrations.models import Integration
    from orders import services as order_services
    from orders.choices import OrderStatus

    channel = Integration.objects.get(pk=fixture.channel_id)
    steps = defaultdict(list)
    with triggers_off():
        inventory.process_changes(fixture.org_id)  # the setup's stock and buffer marks: not an order's cost
        for spec in specs:
            (order, _), cost = _step(partial(order_services.ingest_order, channel, spec.body()))
            steps["ingest_order"].append(cost)
            _, cost = _step(partial(hold.process_order, order.pk, trigger=RuleTrigger.ORDER_CREATED))
            steps["hold.process_order"].append(cost)
            order.refresh_from_db(fields=["status"])
            if order.status == OrderStatus.READY:
                _, cost = _step(partial(routing.route_order_by_id, order.pk))
                steps["routing.route_order_by_id"].append(cost)
            _, cost = _step(partial(inventory.process_changes, fixture.org_id))
            steps["inventory.process_changes"].append(cost)
    found = outcomes(fixture, specs)
    return {
        "orders": len(specs),
        "steps": {
            name: {
                "n": len(costs),
                **{
                    f"{stat}_{key}": round(fn([c[key] for c in costs]), 2)
                    for key in ("ms", "cpu_ms", "queries")
                    for stat, fn in (("median", statistics.median), ("mean", statistics.fmean))
                },
            }
            for name, costs in steps.items()
        },
        "check": compare(specs, found, fixture.names),
    }


# --- (6) overlapping sweeps ---------------------------------------------------------------------------


@contextlib.contextmanager
def triggers_off():
    """Disconnect the engines' on-commit triggers in this process, so only the sweeps move the orders."""
    from automations import receivers
    from inventory import signals as inventory_signals
    from orders import signals as order_signals

    pairs = [
        (order_signals.order_received, receivers.order_received),
        (order_signals.order_ready, receivers.order_ready),
        (inventory_signals.availability_changed, receivers.availability_changed),
    ]
    for sig, receiver in pairs:
        if not sig.disconnect(receiver):
            raise SystemExit(f"{receiver.__name__} was not connected: the engines' triggers changed")
    try:
        yield
    finally:
        for sig, receiver in pairs:
            sig.connect(receiver)


def _sweep_pair(org_id: int) -> tuple[list[dict], float]:
    """Two threads, one connection each, released together: hold.run_now() then routing.run_now()."""
    from django.db import connection

    from automations.engines import hold, routing

    barrier, results = threading.Barrier(2), [None, None]

    def one(index):
        try:
            barrier.wait()
            results[index] = {"hold": hold.run_now(org_id), "routing": routing.run_now(org_id)}
        except Exception as error:  # reported as the thread's result: the check fails with the reason
            results[index] = {"error": f"{type(error).__name__}: {error}"}
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - began


def overlapping_sweeps(fixture: Fixture, specs: list[Spec]) -> dict:
    """Ingest `specs` with no triggers, then two overlapping sweeps, twice; compare with one sweep's result."""
    from django.db import transaction

    from automations.engines import hold, routing
    from integrations.models import Integration
    from orders import services as order_services
    from orders.choices import OrderStatus

    channel = Integration.objects.get(pk=fixture.channel_id)
    with triggers_off():
        began = time.perf_counter()
        with transaction.atomic():
            for spec in specs:
                order_services.ingest_order(channel, spec.body())
        ingest_s = time.perf_counter() - began
        before = Counter(row["status"] for row in outcomes(fixture, specs).values())
        if before != Counter({OrderStatus.NEW: len(specs)}):
            raise SystemExit(f"The sweep's orders are not all new after ingest: {dict(before)}")
        rounds = []
        for _ in range(2):
            results, took = _sweep_pair(fixture.org_id)
            rounds.append({"seconds": round(took, 3), "threads": results})
    found = outcomes(fixture, specs)
    check = compare(specs, found, fixture.names)
    every = [t for r in rounds for t in r["threads"]]
    processed = sum(t.get("hold", {}).get("lost_messages", 0) for t in every)
    routed = sum(t.get("routing", {}).get("routed", 0) for t in every)
    errors = [t["error"] for t in every if "error" in t]
    predicted_routed = check["predicted"]["routed"]
    same = check["ok"] and processed == len(specs) and routed == predicted_routed and not errors
    return {
        "orders": len(specs),
        "ingest_s": round(ingest_s, 3),
        "grace": {
            "hold_new_order_s": hold.GRACE.total_seconds(),
            "routing_lost_ready_s": routing.LOST_MESSAGE_AFTER.total_seconds(),
            "used": "run_now(organization): the sweeps without grace periods (beat's sweep waits them out)",
        },
        "rounds": rounds,
        "hold_processed": processed,
        "routing_routed": routed,
        "errors": errors,
        "check": check,
        "same_as_one_sweep": same,
    }


# --- report -------------------------------------------------------------------------------------------


def met(value, target) -> str:
    return "met" if value == value and value < target else "NOT met"


def print_report(report: dict) -> None:
    meta, run, sweeps = report["meta"], report["run"], report["sweeps"]
    print()
    print(
        f"Engines end to end — commit {meta['commit']}, {meta['cpus']} cores, PostgreSQL {meta['postgres']}, "
        f"Redis {meta['redis']}"
    )
    print(f"Server: {meta['server']}; worker: {meta['worker_command']}")
    print(f"Beat: {meta['beat']}")
    print(
        f"Org: {meta['products']} products (East only / both / West only / short), buffer {meta['buffer']}, "
        f"rule “total > {RULE_LIMIT} → hold for review”, card “Canada ships from West first”"
    )
    print()
    if steps := report["in_process"]:
        print(f"(0) in-process, one order at a time, triggers off ({steps['orders']} orders):")
        print(f"  {'step':<28} {'n':>4} {'ms p50':>8} {'ms mean':>8} {'CPU ms':>8} {'queries':>8}")
        for name, st in steps["steps"].items():
            print(
                f"  {name:<28} {st['n']:>4} {st['median_ms']:>8.1f} {st['mean_ms']:>8.1f} "
                f"{st['mean_cpu_ms']:>8.1f} {st['median_queries']:>8g}"
            )
        print_outcome_check("  outcomes", steps["check"])
        print()
    posted = run["posting"]
    print(
        f"(3) {posted['orders']} orders (+{meta['warmup_orders']} warm-up) at {meta['rate']:g}/s from "
        f"{meta['clients']} clients: {posted['acked']} × 201 in {posted['seconds']} s "
        f"({posted['rate_achieved']}/s), {posted['errors']} errors, start lag p99 {posted['lag_p99_ms']} ms"
    )
    print(
        f"(4) all decided {run['all_decided_after_last_201_s']} s after the last 201 "
        f"({run['polls']} polls, one query each); decided/s over the run: {run['decided_per_s']}"
    )
    if run["stragglers"]:
        print(f"    TIMED OUT: {len(run['stragglers'])} orders still undecided, e.g.:")
        for line in run["stragglers"][:10]:
            print(f"      {line}")
    lat = run["latency"]
    print()
    print("Latency, server clocks (order created_at → first shipping request / hold):")
    head = f"  {'':<34} {'n':>5} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7}"
    print(head)

    def row(label, s):
        print(
            f"  {label:<34} {s['n']:>5} {s['p50_s']:>7.3f} {s['p95_s']:>7.3f} {s['p99_s']:>7.3f} {s['max_s']:>7.3f}"
        )

    row("ingest → routed or held", lat["ingest_to_decided"])
    for name, s in lat["by_outcome"].items():
        row(f"  {name}", s)
    row("ingest → hold engine ran (RuleRun)", lat["ingest_to_hold_engine"])
    row("hold engine → routed", lat["hold_engine_to_routed"])
    row("client: 201 → poll saw it decided", lat["client_201_to_seen_decided"])
    p95 = lat["ingest_to_decided"]["p95_s"]
    print(f"  target p95 < {TARGET_P95_S:g} s: {met(p95, TARGET_P95_S)} ({p95} s)")
    print()
    cpu = run["cpu_pct"]
    print(
        f"CPU from the first post to the last decision, % of one core ({meta['cpus']} cores = {100 * meta['cpus']}%):"
    )
    print("  " + " ".join(f"{g:>9}" for g in CPU_GROUPS))
    print("  " + " ".join(f"{cpu.get(g, 0):>9}" for g in CPU_GROUPS))
    print(f"  worker CPU per order: {run['worker_cpu_ms_per_order']} ms; tasks run: {run['tasks']}")
    print()
    print_outcome_check("(5) outcomes", run["outcomes"])
    print_stock_check("    stock", run["stock"])
    print()
    print(
        f"(6) overlapping sweeps: {sweeps['orders']} orders ingested in one transaction ({sweeps['ingest_s']} s) "
        "with the worker stopped and the triggers disconnected;"
    )
    g = sweeps["grace"]
    print(
        f"    the beat sweeps skip new orders younger than {g['hold_new_order_s']:g} s (hold) and ready ones "
        f"untouched for less than {g['routing_lost_ready_s']:g} s (routing): used {g['used']}"
    )
    for number, r in enumerate(sweeps["rounds"], start=1):
        parts = []
        for t in r["threads"]:
            if "error" in t:
                parts.append(f"error {t['error']}")
                continue
            h, rt = t["hold"], t["routing"]
            parts.append(
                f"hold processed {h.get('lost_messages', 0)} (busy {h.get('busy', 0)}, already "
                f"{h.get('already_processed', 0)}), routing routed {rt.get('routed', 0)} "
                f"(unchanged {rt.get('unchanged', 0)}, unroutable {rt.get('unroutable', 0)})"
            )
        print(f"    round {number} ({r['seconds']} s): " + " | ".join(parts))
    print_outcome_check("    outcomes", sweeps["check"])
    print_stock_check("    stock", report["final_stock"])
    print(
        f"    same as one sweep: {'yes' if sweeps['same_as_one_sweep'] else 'NO'} — each order processed once by "
        f"the hold engine ({sweeps['hold_processed']} of {sweeps['orders']}), routed once "
        f"({sweeps['routing_routed']} of {sweeps['check']['predicted']['routed']} predicted)"
    )
    if meta["worker_errors_logged"] or meta["server_errors_logged"]:
        print(
            f"\nErrors logged: worker {meta['worker_errors_logged']}, gunicorn {meta['server_errors_logged']}"
        )


def print_outcome_check(label: str, check: dict) -> None:
    p, a = check["predicted"], check["actual"]
    print(
        f"{label}: routed {a['routed']} ({check['split']} predicted split), held for review "
        f"{a['held_review']}, held unroutable {a['held_unroutable']}; predicted {p['routed']} / "
        f"{p['held_review']} / {p['held_unroutable']}: "
        + ("every order as predicted" if check["ok"] else f"{check['mismatches']} MISMATCHES")
    )
    extra = {k: v for k, v in a.items() if k not in OUTCOMES}
    if extra:
        print(f"      other states: {extra}")
    for line in check["mismatch_samples"]:
        print(f"      {line}")


def print_stock_check(label: str, check: dict) -> None:
    print(
        f"{label}: {check['duplicate_requests']} orders with two requests at one location; "
        f"{check['order_lines_not_routed_exactly']} routed lines not covered exactly; Σ committed "
        f"{check['committed_units']} vs open request lines {check['open_request_units']} "
        f"({check['levels_committed_ne_open_lines']} levels differ); "
        f"{check['levels_over_on_hand_less_buffer']} levels committed beyond on hand − buffer: "
        + ("OK" if check["ok"] else "FAILED")
    )


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--orders", type=int, default=500, help="orders posted and measured (500)")
    parser.add_argument("--rate", type=float, default=20, help="orders per second, steady (20)")
    parser.add_argument("--clients", type=int, default=4, help="posting threads, one connection each (4)")
    parser.add_argument(
        "--warmup-orders", type=int, default=20, help="orders posted first, not measured (20)"
    )
    parser.add_argument(
        "--sweep-orders", type=int, default=200, help="orders for the overlapping sweeps (200)"
    )
    parser.add_argument("--products", type=int, default=200, help="products; a tenth cannot ship (200)")
    parser.add_argument("--on-hand", type=int, default=5000, help="on hand of each stocked level (5000)")
    parser.add_argument("--buffer", type=int, default=2, help="the organization's buffer, units (2)")
    parser.add_argument("--big-share", type=float, default=0.15, help="share of orders over 500 (0.15)")
    parser.add_argument("--short-share", type=float, default=0.10, help="share with a short SKU (0.10)")
    parser.add_argument("--canada-share", type=float, default=0.25, help="share shipped to CA (0.25)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between polls (0.05)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait after the last 201 (120)")
    parser.add_argument("--concurrency", type=int, default=2, help="celery worker processes, -c (2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker (4)")
    parser.add_argument(
        "--with-beat",
        action="store_true",
        help="run celery beat too (not needed: commits trigger the engines)",
    )
    parser.add_argument(
        "--inproc-orders", type=int, default=30, help="orders whose engine steps are timed in-process (30)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the orders (1)")
    add_common_arguments(
        parser, RESULTS, leaves="keeps one more organization with its integrations, stock, rules and orders"
    )
    args = parser.parse_args(argv)
    if min(args.orders, args.clients, args.sweep_orders, args.concurrency) < 1 or args.rate <= 0:
        parser.error("--orders, --clients, --sweep-orders, --concurrency and --rate must be positive")
    if args.products < 20:
        parser.error("--products must be at least 20 (three stocked groups and the short ones)")
    if args.on_hand <= args.buffer or args.buffer < 0:
        parser.error("--on-hand must exceed --buffer, and --buffer cannot be negative")
    if any(not 0 <= s <= 1 for s in (args.big_share, args.short_share, args.canada_share)):
        parser.error("the shares are fractions between 0 and 1")
    if args.poll <= 0 or args.timeout <= 0:
        parser.error("--poll and --timeout must be positive")
    return args


def measure(base, fixture, specs, warmup, args, started, celery) -> dict:
    """(3)–(5): warm-up, then the measured orders at a steady rate; figures and checks."""
    from django.db import connections

    poller = Poller(args.poll)
    poller.start()
    try:
        if warmup:
            post_orders(base, fixture.channel_key, warmup, args.rate, args.clients, poller.add)
            if not poller.wait_all(args.timeout):
                raise SystemExit("The warm-up orders were not all decided: see the worker log")
        wait_idle(celery, 60)
        tasks_before = tasks_run(celery)
        cpu_before = {**cpu_snapshot(started), "worker": tree_cpu_seconds(celery.worker_pid)}
        began = time.perf_counter()
        posted, post_s = post_orders(base, fixture.channel_key, specs, args.rate, args.clients, poller.add)
        last_201 = time.perf_counter()
        done = poller.wait_all(args.timeout)
        elapsed = time.perf_counter() - began
        cpu_after = {**cpu_snapshot(started), "worker": tree_cpu_seconds(celery.worker_pid)}
        after_last = time.perf_counter() - last_201
    finally:
        poller.stop.set()
        poller.join(timeout=10)
    wait_idle(celery, 60)  # inventory runs and retries the routing triggered: counted in the tasks
    tasks_after = tasks_run(celery)
    found = outcomes(fixture, [*warmup, *specs])
    stragglers = [
        f"{s.external_id} (order {row['id']}): {row['status']} {row['outcome']}"
        for s in specs
        if (row := found.get(s.external_id)) and row["decided_at"] is None
    ]
    measured = [found[s.external_id] for s in specs if s.external_id in found]
    decided = [r["decided_at"] for r in measured if r["decided_at"] is not None]
    created = [r["created_at"] for r in measured]
    span = seconds(max(decided), min(created)) if decided else None
    cpu = cpu_percentages(cpu_before, cpu_after, elapsed)
    worker_s = cpu_after["worker"] - cpu_before["worker"]
    lags = sorted(posted.late)
    report = {
        "posting": {
            "orders": len(specs),
            "acked": len(posted.acked),
            "errors": len(posted.errors),
            "error_samples": posted.errors[:5],
            "seconds": round(post_s, 2),
            "rate_achieved": round(len(posted.acked) / post_s, 1) if post_s else 0.0,
            "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
        },
        "all_decided": done and not stragglers,
        "all_decided_after_last_201_s": round(after_last, 2),
        "polls": poller.polls,
        "stragglers": stragglers,
        "decided_per_s": round(len(decided) / span, 1) if span else None,
        "latency": latency(specs, found, posted, poller.seen),
        "cpu_pct": cpu,
        "worker_cpu_s": round(worker_s, 2),
        "worker_cpu_ms_per_order": round(worker_s / len(specs) * 1000, 2),
        "tasks": {
            k: v - tasks_before.get(k, 0) for k, v in tasks_after.items() if v != tasks_before.get(k, 0)
        },
        "outcomes": compare([*warmup, *specs], found, fixture.names),
        "stock": stock_checks(fixture),
    }
    connections.close_all()
    return report


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    run_began = time.monotonic()
    started, celery = Started(), Celery()
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    database_url, redis_url = start_services(stack, started, args.reuse_env)
    env = django_env(database_url, redis_url, folder / "var")

    print(
        f"Migrating; creating an organization with a channel, a 3PL, two locations, {args.products} products…"
    )
    setup_django(env)
    from django.db import connections

    fixture = create_fixture(args.products, args.on_hand, args.buffer)
    rng = random.Random(args.seed)
    warmup = make_specs(fixture, args.warmup_orders, f"warm-{fixture.tag}", rng, args)
    specs = make_specs(fixture, args.orders, f"run-{fixture.tag}", rng, args)
    sweep_specs = make_specs(fixture, args.sweep_orders, f"sweep-{fixture.tag}", rng, args)
    inproc_specs = make_specs(fixture, args.inproc_orders, f"inproc-{fixture.tag}", rng, args)
    print(
        f"(0) in-process, triggers off: each engine step of {args.inproc_orders} orders, one after the other…"
    )
    steps = in_process(fixture, inproc_specs) if inproc_specs else None
    connections.close_all()

    base, server = start_gunicorn(stack, started, env, args.workers, args.threads, folder)
    worker = start_worker(stack, env, folder, args.concurrency, prefix="bench-engines")
    celery.worker_pid, celery.worker_name, celery.worker_log = worker.pid, worker.name, worker.log
    celery.worker_command = worker.command
    if args.with_beat:
        start_beat(stack, env, folder, celery)
    loadavg_before = loadavg()

    print(f"(3)+(4) {args.warmup_orders} warm-up orders, then {args.orders} at {args.rate:g}/s; polling…")
    measured = measure(base, fixture, specs, warmup, args, started, celery)
    lat = measured["latency"]["ingest_to_decided"]
    print(f"  ingest → routed or held: p50 {lat['p50_s']} s, p95 {lat['p95_s']} s, max {lat['max_s']} s")

    print(
        f"(6) stopping the worker{' and beat' if celery.beat_pid else ''}; {args.sweep_orders} orders, sweeps…"
    )
    stop_pid(celery.worker_pid, signal.SIGTERM, "celery worker")
    if celery.beat_pid:
        stop_pid(celery.beat_pid, signal.SIGTERM, "celery beat")
    sweeps = overlapping_sweeps(fixture, sweep_specs)
    print(f"  same as one sweep: {'yes' if sweeps['same_as_one_sweep'] else 'NO'}")
    final_stock = stock_checks(fixture)
    server_problems = server_log_problems(folder)
    worker_problems = worker_log_problems(celery.worker_log)
    connections.close_all()
    return {
        "meta": {
            **run_meta("engines.py", started, args.reuse_env, server),
            "worker_command": celery.worker_command,
            "beat": "running (--with-beat)"
            if args.with_beat
            else "not running: the figures are the on-commit triggers' alone (beat's sweep is the safety net)",
            "loadavg_before": loadavg_before,
            "loadavg_after": loadavg(),
            "run_s": round(time.monotonic() - run_began, 1),
            "orders": args.orders,
            "warmup_orders": args.warmup_orders,
            "rate": args.rate,
            "clients": args.clients,
            "poll_s": args.poll,
            "products": args.products,
            "on_hand": args.on_hand,
            "buffer": args.buffer,
            "shares": {"big": args.big_share, "short": args.short_share, "canada": args.canada_share},
            "seed": args.seed,
            "target_p95_s": TARGET_P95_S,
            "server_errors_logged": len(server_problems),
            "worker_errors_logged": len(worker_problems),
            "worker_error_lines": worker_problems[-10:],
        },
        "in_process": steps,
        "run": measured,
        "sweeps": sweeps,
        "final_stock": final_stock,
    }


def main(argv=None) -> int:
    return harness_main(parse_args(argv), run, print_report)


if __name__ == "__main__":
    sys.exit(main())
