# ruff: noqa: S603 — the receiver, the loaders, the workers and py-spy are started from fixed argument lists.
"""
The webhook delivery engine (integrations/webhooks/) end to end, with real Celery workers on Redis and
PostgreSQL, against a local receiver on 127.0.0.1 (issue 5's figures):

1. the receiver's own raw capacity: a raw asyncio HTTP/1.1 server in its own process, loaded directly by
   as many processes as the engine has workers, each with WEBHOOK_CONCURRENCY threads over one pooled
   httpx client (the engine's shape) → requests/s; the requests it recorded against the 200s answered;
2. throughput: N events (5000) emitted with emit_many in one transaction; from the commit until every
   delivery is `succeeded` → deliveries/s (target ≥ 200/s on 2 cores);
3. latency: one event per transaction at R events/s (100) for S seconds (30); receiver arrival − commit
   → p50, p99, max (targets < 1 s and < 5 s); every event arrived exactly once, sequences unique;
4. backlog drain: the receiver answers 503 while B events (10,000) are emitted and their attempts fail;
   then it recovers, every owed delivery is made due at once (UPDATE next_attempt_at = now, standing for
   "the backoff has elapsed" or an operator replay) and the workers are rung → seconds until all B are
   `succeeded` (target < 60 s).

The events are integration.status_changed about the receiving integration itself (no renderer: the
payload goes out as emitted), the cheapest event to emit in volume. In-process it also lists the SQL of
one outbox dispatch and of one delivery batch, and profiles a batch (cProfile of deliver_due); with
--py-spy it repeats (2) with py-spy sampling the workers and lists where their time goes.

Starts a throwaway PostgreSQL and Redis (or, with --reuse-env, uses DATABASE_URL and REDIS_URL), migrates,
creates an organization and one integration with a key and a subscription per phase, starts the receiver
and `celery -A config worker -c 2 --prefetch-multiplier 1 -l warning`, prints the figures, writes
bench/results/deliveries.json, and stops everything it started (also on Ctrl-C).

    .venv/bin/python bench/deliveries.py [--events 5000] [--rate 100] [--seconds 30] [--backlog 10000]
"""

import argparse
import asyncio
import contextlib
import cProfile
import json
import pstats
import re
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
from datetime import timedelta
from pathlib import Path

import httpx
from _harness import (
    RESULTS_DIR,
    ROOT,
    Started,
    add_common_arguments,
    django_env,
    free_port,
    loadavg,
    machine_busy_seconds,
    percentile,
    run_meta,
    setup_django,
    spawn,
    sql_verb,
    start_services,
    start_worker,
    stop_pid,
    tail,
    tree_cpu_seconds,
    verb_counts,
    worker_log_problems,
)
from _harness import main as harness_main

RESULTS = RESULTS_DIR / "deliveries.json"
EVENT_TYPE = "integration.status_changed"
PHASES = ("throughput", "latency", "drain", "inproc", "profile")
CPU_GROUPS = ("bench", "workers", "receiver", "postgres", "redis", "other")
TARGETS = {"deliveries_per_s": 200, "p50_s": 1.0, "p99_s": 5.0, "drain_s": 60}
POLL = 0.2  # seconds between the database polls that wait for deliveries to finish


# --- the receiver (its own process: `deliveries.py --serve-receiver PORT`) -----------------------------

OK_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
UNAVAILABLE_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\nunavailable"
)


class ReceiverState:
    """What the receiver answers (200 or 503) and every webhook request it got: (arrival, id, status, tag)."""

    def __init__(self):
        self.status = 200
        self.records: list[tuple[float, str, int, str]] = []


class ReceiverProtocol(asyncio.Protocol):
    """
    Minimal HTTP/1.1 with keep-alive: Content-Length bodies (what httpx sends), no pipelining needed.
    POST /hook/<tag> records (time.time() on arrival, webhook-id, status answered, tag) and answers 200 or
    503; /__control/… reads the records and switches the answer.
    """

    def __init__(self, state: ReceiverState):
        self.state = state
        self.buffer = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            arrived = time.time()
            method, target = lines[0].split(" ", 2)[:2]
            self.transport.write(self.answer(method, target, headers, body, arrived))
            if headers.get("connection", "").lower() == "close":
                self.transport.close()
                return

    def answer(self, method, target, headers, body, arrived) -> bytes:
        state = self.state
        if target.startswith("/hook/"):
            state.records.append((arrived, headers.get("webhook-id", ""), state.status, target[6:]))
            return OK_ANSWER if state.status == 200 else UNAVAILABLE_ANSWER
        path, _, query = target.partition("?")
        params = dict(part.partition("=")[::2] for part in query.split("&") if part)
        if path == "/__control/records":
            start = int(params.get("from", 0))
            text = "".join(f"{t:.6f}\t{i}\t{s}\t{g}\n" for t, i, s, g in state.records[start:])
            return _plain(200, text)
        if path == "/__control/status" and method == "PUT":
            state.status = int(params["code"])
            return _plain(200, str(state.status))
        if path == "/__control/ping":
            return _plain(200, "ok")
        return _plain(404, "not found")


def _plain(status: int, text: str) -> bytes:
    body = text.encode()
    reason = {200: "OK", 404: "Not Found"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def serve_receiver(port: int) -> int:
    async def serve():
        state = ReceiverState()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: ReceiverProtocol(state), "127.0.0.1", port, backlog=1024, reuse_address=True
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(serve())
    return 0


@dataclass
class Receiver:
    """The bench's handle on the receiver process."""

    base: str
    pid: int
    control: httpx.Client
    seen: int = 0  # records already fetched
    records: list[tuple[float, str, int, str]] = field(default_factory=list)

    def hook(self, tag: str) -> str:
        return f"{self.base}/hook/{tag}"

    def set_status(self, code: int) -> None:
        self.control.put(f"/__control/status?code={code}").raise_for_status()

    def fetch(self) -> list[tuple[float, str, int, str]]:
        """Every record so far (fetched incrementally)."""
        response = self.control.get(f"/__control/records?from={self.seen}")
        response.raise_for_status()
        for line in response.text.splitlines():
            arrived, webhook_id, status, tag = line.split("\t")
            self.records.append((float(arrived), webhook_id, int(status), tag))
        self.seen = len(self.records)
        return self.records

    def of(self, tag: str) -> list[tuple[float, str, int]]:
        return [(t, i, s) for t, i, s, g in self.fetch() if g == tag]


def start_receiver(stack: contextlib.ExitStack, folder: Path) -> Receiver:
    for _attempt in range(3):
        port = free_port()
        log = folder / "receiver.log"
        with log.open("ab") as out:
            proc = spawn(
                [sys.executable, __file__, "--serve-receiver", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        stack.callback(stop_pid, proc.pid, signal.SIGTERM, "receiver")
        base = f"http://127.0.0.1:{port}"
        control = httpx.Client(base_url=base, timeout=30, trust_env=False)
        stack.callback(control.close)
        for _ in range(100):
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if control.get("/__control/ping").status_code == 200:
                    print(f"  receiver (raw asyncio HTTP/1.1) on 127.0.0.1:{port} (pid {proc.pid})")
                    return Receiver(base, proc.pid, control)
            time.sleep(0.05)
        stop_pid(proc.pid, signal.SIGTERM, "receiver")
    raise SystemExit(f"The receiver did not start:\n{tail(folder / 'receiver.log')}")


# --- (1) the receiver's raw capacity: loader processes (`deliveries.py --load-receiver SPEC`) ----------


def load_receiver(spec: dict) -> int:
    """Threads over one pooled httpx client (outbound.client()'s limits) POST until the end; print JSON."""
    concurrency = spec["threads"]
    client = httpx.Client(
        follow_redirects=False,
        timeout=httpx.Timeout(15.0, connect=5.0),
        limits=httpx.Limits(
            max_connections=max(concurrency * 2, 10),
            max_keepalive_connections=max(concurrency * 2, 10),
            keepalive_expiry=30,
        ),
        headers={"user-agent": "Switchyard-Webhooks/1.0"},
        trust_env=False,
    )
    body = json.dumps(
        {
            "id": "evt_" + "0" * 24,
            "type": EVENT_TYPE,
            "created_at": "2025-01-01T00:00:00.000000Z",
            "sequence": 1,
            "data": {"id": "1", "name": "Bench", "status": "connected", "previous": "connecting", "seq": 0},
        },
        separators=(",", ":"),
    ).encode()
    measure_from = spec["start_at"] + spec["warmup"]
    until = measure_from + spec["seconds"]
    results = [{"ok": 0, "errors": 0, "latencies": [], "samples": []} for _ in range(concurrency)]

    def worker(index: int) -> None:
        tally, n = results[index], 0
        while (began := time.time()) < until:
            n += 1
            headers = {
                "content-type": "application/json",
                "webhook-id": f"{spec['prefix']}-{index}-{n}",
                "webhook-timestamp": str(int(began)),
                "webhook-signature": "v1,bench",
            }
            try:
                response = client.post(spec["url"], content=body, headers=headers)
                ok = response.status_code == 200
                problem = None if ok else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            if ok:
                tally["ok"] += 1
                if began >= measure_from:
                    tally["latencies"].append(time.time() - began)
            else:
                tally["errors"] += 1
                if len(tally["samples"]) < 3:
                    tally["samples"].append(problem)

    time.sleep(max(0.0, spec["start_at"] - time.time()))
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.time()))
    cpu_before = time.process_time()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu_before
    client.close()
    print(
        json.dumps(
            {
                "ok_all": sum(r["ok"] for r in results),
                "errors": sum(r["errors"] for r in results),
                "samples": [s for r in results for s in r["samples"]][:3],
                "latencies": [round(lat, 6) for r in results for lat in r["latencies"]],
                "cpu_s": cpu,
            }
        )
    )
    return 0


def receiver_capacity(receiver: Receiver, args, started: Started, pids) -> dict:
    """`--workers` loader processes × WEBHOOK_CONCURRENCY threads, warm-up then a measured window."""
    from django.conf import settings

    threads = settings.WEBHOOK_CONCURRENCY
    start_at = time.time() + 1.5  # every loader has imported httpx by then
    procs = []
    for index in range(args.workers):
        spec = {
            "url": receiver.hook("capacity"),
            "threads": threads,
            "start_at": start_at,
            "warmup": args.warmup,
            "seconds": args.capacity_seconds,
            "prefix": f"cap{index}",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--load-receiver", json.dumps(spec)],
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
        )
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    before = cpu_snapshot(started, pids)
    time.sleep(args.capacity_seconds)
    after = cpu_snapshot(started, pids)
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        if proc.returncode:
            raise SystemExit(f"A receiver loader exited with {proc.returncode}")
        outputs.append(json.loads(out))
    loader_cpu = sum(o["cpu_s"] for o in outputs)
    after["bench"] += loader_cpu  # the loaders are the bench's clients here
    latencies = sorted(lat for o in outputs for lat in o["latencies"])
    records = receiver.of("capacity")
    ids = Counter(i for _, i, _ in records)
    ok_all = sum(o["ok_all"] for o in outputs)
    return {
        "how": f"{args.workers} processes × {threads} threads, one pooled httpx client each "
        "(outbound.client()'s limits), POSTing a 200-byte JSON body with webhook-* headers",
        "processes": args.workers,
        "threads_per_process": threads,
        "seconds": args.capacity_seconds,
        "warmup_s": args.warmup,
        "requests": len(latencies),
        "rps": round(len(latencies) / args.capacity_seconds, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "errors": sum(o["errors"] for o in outputs),
        "error_samples": [s for o in outputs for s in o["samples"]][:3],
        "cpu_pct": cpu_percentages(before, after, args.capacity_seconds),
        # The receiver's CPU per request, and the rate that would fill one core at that cost.
        "receiver_ms_per_request": round((after["receiver"] - before["receiver"]) / len(latencies) * 1000, 4)
        if latencies
        else None,
        "receiver_one_core_rps": round(len(latencies) / (after["receiver"] - before["receiver"]))
        if latencies and after["receiver"] > before["receiver"]
        else None,
        "check": {
            "answers_200_all": ok_all,
            "recorded": len(records),
            "duplicates": sum(n - 1 for n in ids.values() if n > 1),
            "ok": len(records) == ok_all and all(n == 1 for n in ids.values()),
        },
    }


# --- CPU accounting ------------------------------------------------------------------------------------


@dataclass
class Pids:
    receiver: int | None = None
    workers: int | None = None
    worker_name: str | None = None


def work_counters(pids: Pids) -> dict[str, int]:
    """Tasks the worker has run so far, by name (its own tally), and PostgreSQL sessions opened so far."""
    from django.db import connection

    from config.celery import app

    counts = {}
    if pids.worker_name:
        stats = app.control.inspect(destination=[pids.worker_name], timeout=2.0).stats() or {}
        for task, n in stats.get(pids.worker_name, {}).get("total", {}).items():
            counts[task.rsplit(".", 1)[-1]] = n
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        counts["pg_sessions"] = cursor.fetchone()[0]
    return counts


def queued_messages() -> int:
    """Messages waiting in the broker's Celery queues (settings.CELERY_TASK_QUEUES, and their priority lists)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return sum(
        client.llen(key)
        for queue in settings.CELERY_TASK_QUEUES
        for key in client.scan_iter(f"{queue.name}*")
        if client.type(key) == b"list"
    )


def wait_idle(pids: Pids, timeout: float) -> dict:
    """Until the queue is empty and the worker runs and holds nothing (ETA doorbells aside): a clean start."""
    from config.celery import app

    queued, began = queued_messages(), time.time()

    def idle():
        if queued_messages():
            return False
        inspect = app.control.inspect(destination=[pids.worker_name], timeout=2.0)
        busy = [*((inspect.active() or {}).values()), *((inspect.reserved() or {}).values())]
        return not any(busy)

    idle_now, at = wait_until(idle, timeout, "the worker to go idle")
    return {"queued_at_end": queued, "idle_after_s": round(at - began, 2), "idle": idle_now}


def work_delta(before: dict, after: dict) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def cpu_snapshot(started: Started, pids: Pids) -> dict[str, float]:
    """CPU seconds so far of this process, the workers (with their children), the receiver, the services."""
    return {
        "bench": time.process_time(),
        "workers": tree_cpu_seconds(pids.workers),
        "receiver": tree_cpu_seconds(pids.receiver),
        "postgres": tree_cpu_seconds(started.postgres_pid),
        "redis": tree_cpu_seconds(started.redis_pid),
        "machine": machine_busy_seconds(),
    }


def cpu_percentages(before: dict, after: dict, seconds: float) -> dict[str, int]:
    """Per group in % of one core; `other`: the rest of the machine meanwhile."""
    used = {name: (after[name] - before[name]) / seconds * 100 for name in before}
    machine = used.pop("machine")
    return {**{k: round(v) for k, v in used.items()}, "other": round(machine - sum(used.values()))}


def cpu_seconds(before: dict, after: dict) -> dict[str, float]:
    used = {name: after[name] - before[name] for name in before}
    used["other"] = used.pop("machine") - sum(used.values())
    return {k: round(v, 2) for k, v in used.items()}


# --- fixture -------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One phase's integration and its subscription (to integration.status_changed, at the receiver)."""

    integration_id: int
    subscription_id: int
    status: str


@dataclass
class Fixture:
    org_id: int
    targets: dict[str, Target]


def create_fixture(receiver: Receiver) -> Fixture:
    """An organization; per phase a custom-channel integration, its key and a subscription to /hook/<phase>."""
    from integrations import configuration
    from integrations.models import Connector
    from integrations.webhooks import subscriptions
    from organizations.models import Organization
    from tokens import issuing as key_services
    from tokens.choices import KeyKind

    suffix = secrets.token_hex(4)
    org = Organization.objects.create(name=f"Bench deliveries {suffix}", slug=f"bench-deliveries-{suffix}")
    connector = Connector.objects.get(organization=None, key="custom-channel")
    targets = {}
    for phase in PHASES:
        integration = configuration.create_integration(org, connector, f"Bench receiver {phase}")
        issued = key_services.issue_key(
            kind=KeyKind.INTEGRATION, name=f"Bench {phase} key", integration=integration
        )
        subscription, _secret = subscriptions.subscribe(
            integration, receiver.hook(phase), [EVENT_TYPE], issued.key
        )
        targets[phase] = Target(integration.pk, subscription.pk, integration.status)
    return Fixture(org.pk, targets)


def event_payload(fixture: Fixture, phase: str, seq: int) -> dict:
    """integration.status_changed's shape (lifecycle.transition), plus what the bench reads back."""
    target = fixture.targets[phase]
    return {
        "id": str(target.integration_id),
        "name": f"Bench receiver {phase}",
        "status": "connected",
        "previous": "connected",
        "reason": "bench",
        "bench": phase,
        "seq": seq,
        "sent_at": time.time(),  # before the commit
    }


def emit_batch(fixture: Fixture, phase: str, count: int) -> tuple[list[int], float]:
    """`count` events in one transaction (emit_many); (outbox ids, time.time() at the commit)."""
    from django.db import transaction

    from integrations.models import Integration
    from integrations.webhooks import outbox

    integration = Integration.objects.get(pk=fixture.targets[phase].integration_id)
    stamp = []
    with transaction.atomic():
        transaction.on_commit(lambda: stamp.append(time.time()))  # first: before the dispatch is enqueued
        rows = outbox.emit_many(
            fixture.org_id,
            [
                (EVENT_TYPE, "integration", integration.pk, event_payload(fixture, phase, seq))
                for seq in range(count)
            ],
            integration=integration,
        )
    return [row.pk for row in rows], stamp[0]


# --- waiting and reading back --------------------------------------------------------------------------


def owned(fixture: Fixture, phase: str, outbox_ids: list[int]):
    """The deliveries of this phase's events (an extra event about the integration itself is not one)."""
    from integrations.models import WebhookDelivery

    return WebhookDelivery.objects.filter(
        integration_id=fixture.targets[phase].integration_id,
        outbox_event_id__gte=min(outbox_ids),
        outbox_event_id__lte=max(outbox_ids),
    )


def wait_until(predicate, timeout: float, what: str) -> tuple[bool, float]:
    """Poll `predicate()` every POLL seconds; (met, time.time() when seen met or given up)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True, time.time()
        if time.monotonic() > deadline:
            print(f"  gave up waiting for {what} after {timeout:g} s", file=sys.stderr)
            return False, time.time()
        time.sleep(POLL)


def wait_succeeded(fixture, phase, outbox_ids, timeout) -> tuple[bool, float]:
    from integrations.choices import DeliveryStatus

    deliveries = owned(fixture, phase, outbox_ids).filter(status=DeliveryStatus.SUCCEEDED)
    return wait_until(lambda: deliveries.count() >= len(outbox_ids), timeout, f"{phase} deliveries")


def delivery_rows(fixture, phase, outbox_ids) -> list[dict]:
    return list(
        owned(fixture, phase, outbox_ids).values(
            "pk",
            "outbox_event_id",
            "event_id",
            "sequence",
            "status",
            "attempts",
            "created_at",
            "succeeded_at",
        )
    )


def extra_deliveries(fixture, phase, outbox_ids) -> list[dict]:
    """Deliveries to this phase's subscription of events the bench did not emit (e.g. a status change)."""
    from integrations.models import WebhookDelivery, WebhookSubscription

    rows = WebhookDelivery.objects.filter(subscription_id=fixture.targets[phase].subscription_id).exclude(
        outbox_event_id__gte=min(outbox_ids), outbox_event_id__lte=max(outbox_ids)
    )
    subscription = WebhookSubscription.objects.get(pk=fixture.targets[phase].subscription_id)
    return [
        {
            "event_id": row.event_id,
            "event_type": row.event_type,
            "status": row.status,
            "data": (row.outbox_event.payload if row.outbox_event_id else None),
            "subscription_active": subscription.active,
        }
        for row in rows.select_related("outbox_event")
    ]


def arrival_check(rows: list[dict], records: list[tuple[float, str, int]], extra_ids: set[str]) -> dict:
    """Every delivery's webhook-id answered 200 exactly once; nothing else arrived; sequences unique."""
    ok_arrivals: dict[str, list[float]] = defaultdict(list)
    for arrived, webhook_id, status in records:
        if status == 200:
            ok_arrivals[webhook_id].append(arrived)
    ids = {row["event_id"] for row in rows}
    sequences = [row["sequence"] for row in rows]
    per_event = Counter(row["outbox_event_id"] for row in rows)
    missing = sum(1 for i in ids if not ok_arrivals.get(i))
    duplicates = sum(len(v) - 1 for i, v in ok_arrivals.items() if i in ids and len(v) > 1)
    unknown = sum(len(v) for i, v in ok_arrivals.items() if i not in ids and i not in extra_ids)
    distinct = len(set(sequences))
    contiguous = bool(sequences) and max(sequences) - min(sequences) + 1 == len(sequences)
    return {
        "deliveries": len(rows),
        "one_delivery_per_event": all(n == 1 for n in per_event.values()),
        "arrived_200": sum(1 for i in ids if ok_arrivals.get(i)),
        "missing": missing,
        "duplicates": duplicates,
        "unknown_ids": unknown,
        "sequences_unique": distinct == len(sequences),
        "sequences_contiguous": contiguous,
        "ok": (
            missing == 0
            and duplicates == 0
            and unknown == 0
            and distinct == len(sequences)
            and all(n == 1 for n in per_event.values())
        ),
    }, ok_arrivals


def batch_stats(rows: list[dict]) -> dict:
    """Delivery batches as the attempts show them (one record_outcomes per batch shares its started_at)."""
    from integrations.models import WebhookAttempt

    attempts = WebhookAttempt.objects.filter(delivery_id__in=[row["pk"] for row in rows])
    sizes = Counter(attempts.values_list("started_at", flat=True))
    count = len(sizes)
    return {
        "attempts": sum(sizes.values()),
        "batches": count,
        "mean_batch": round(sum(sizes.values()) / count, 1) if count else None,
        "max_batch": max(sizes.values()) if sizes else None,
    }


def seconds_list(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "p50_s": round(percentile(values, 0.50), 3),
        "p99_s": round(percentile(values, 0.99), 3),
        "max_s": round(values[-1], 3) if values else None,
        "mean_s": round(statistics.fmean(values), 3) if values else None,
    }


# --- (2) throughput ------------------------------------------------------------------------------------


def throughput(fixture, receiver, args, started, pids, phase="throughput", count=None) -> dict:
    from integrations.models import OutboxEvent

    count = count or args.events
    work_before = work_counters(pids)
    before, window_from = cpu_snapshot(started, pids), time.time()
    outbox_ids, committed = emit_batch(fixture, phase, count)
    done, seen = wait_succeeded(fixture, phase, outbox_ids, args.timeout)
    after = cpu_snapshot(started, pids)
    work = work_delta(work_before, work_counters(pids))
    rows = delivery_rows(fixture, phase, outbox_ids)
    records = receiver.of(phase)  # first: a delivery that has arrived has its row by now
    extras = extra_deliveries(fixture, phase, outbox_ids)
    check, arrivals = arrival_check(rows, records, {e["event_id"] for e in extras})
    succeeded = [r["succeeded_at"].timestamp() for r in rows if r["succeeded_at"]]
    ids = {r["event_id"] for r in rows}
    firsts = sorted(min(v) for i, v in arrivals.items() if i in ids)
    dispatched = OutboxEvent.objects.filter(pk__in=outbox_ids).values_list("dispatched_at", flat=True)
    last_dispatch = max((d.timestamp() for d in dispatched if d), default=None)
    elapsed = (max(succeeded) - committed) if len(succeeded) == count else None
    return {
        "events": count,
        "done": done,
        "succeeded": len(succeeded),
        "seconds": round(elapsed, 3) if elapsed else None,
        "deliveries_per_s": round(count / elapsed, 1) if elapsed else None,
        "seen_done_s": round(seen - committed, 3),  # when the bench's poll saw it (≤ POLL later)
        "last_dispatched_s": round(last_dispatch - committed, 3) if last_dispatch else None,
        "last_delivery_created_s": round(max(r["created_at"].timestamp() for r in rows) - committed, 3)
        if rows
        else None,
        "first_arrival_s": round(firsts[0] - committed, 3) if firsts else None,
        "last_arrival_s": round(firsts[-1] - committed, 3) if firsts else None,
        "arrivals_per_s": round(len(firsts) / (firsts[-1] - firsts[0]), 1) if len(firsts) > 1 else None,
        "cpu_pct": cpu_percentages(before, after, seen - window_from),
        "cpu_s": cpu_seconds(before, after),
        "work": work,
        **batch_stats(rows),
        "check": check,
        "extra_deliveries": extras,
    }


# --- (3) latency at a steady rate ----------------------------------------------------------------------


def latency(fixture, receiver, args, started, pids) -> dict:
    from django.db import transaction

    from integrations.models import Integration
    from integrations.webhooks import outbox

    phase = "latency"
    integration = Integration.objects.get(pk=fixture.targets[phase].integration_id)
    total = round(args.rate * args.seconds)
    commit_at: dict[int, float] = {}
    late = []
    work_before = work_counters(pids)
    before, window_from = cpu_snapshot(started, pids), time.time()
    began = time.perf_counter()
    for seq in range(total):
        due = began + seq / args.rate
        if (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        elif -wait > 0.010:
            late.append(-wait)  # behind schedule by more than 10 ms (the loop catches up, never skips)
        stamp = []
        with transaction.atomic():
            transaction.on_commit(lambda stamp=stamp: stamp.append(time.time()))
            row = outbox.emit(
                fixture.org_id,
                EVENT_TYPE,
                "integration",
                integration.pk,
                event_payload(fixture, phase, seq),
                integration=integration,
            )
        commit_at[row.pk] = stamp[0]
    emitted_s = time.perf_counter() - began
    outbox_ids = sorted(commit_at)
    done, seen = wait_succeeded(fixture, phase, outbox_ids, args.timeout)
    after = cpu_snapshot(started, pids)
    work = work_delta(work_before, work_counters(pids))
    rows = delivery_rows(fixture, phase, outbox_ids)
    records = receiver.of(phase)  # first: a delivery that has arrived has its row by now
    extras = extra_deliveries(fixture, phase, outbox_ids)
    check, arrivals = arrival_check(rows, records, {e["event_id"] for e in extras})
    to_arrival, to_created, created_to_arrival = [], [], []
    for row in rows:
        committed = commit_at[row["outbox_event_id"]]
        created = row["created_at"].timestamp()
        to_created.append(created - committed)
        if times := arrivals.get(row["event_id"]):
            to_arrival.append(min(times) - committed)
            created_to_arrival.append(min(times) - created)
    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "events": total,
        "emitted_in_s": round(emitted_s, 2),
        "achieved_rate": round(total / emitted_s, 1),
        "emits_late": len(late),
        "max_late_ms": round(max(late) * 1000, 1) if late else 0.0,
        "done": done,
        "succeeded": sum(1 for r in rows if r["status"] == "succeeded"),
        "commit_to_arrival": seconds_list(to_arrival),
        "commit_to_delivery_row": seconds_list(to_created),
        "delivery_row_to_arrival": seconds_list(created_to_arrival),
        "cpu_pct": cpu_percentages(before, after, seen - window_from),
        "work": work,
        **batch_stats(rows),
        "check": check,
        "extra_deliveries": extras,
    }


# --- (4) backlog drain ---------------------------------------------------------------------------------


def drain(fixture, receiver, args, started, pids) -> dict:
    from django.db.models import Q
    from django.db.models.functions import Now
    from django.utils import timezone

    from integrations.choices import DeliveryStatus
    from integrations.webhooks import delivery, doorbells

    phase, count = "drain", args.backlog
    receiver.set_status(503)
    work_before = work_counters(pids)
    before_fail = cpu_snapshot(started, pids)
    outbox_ids, committed = emit_batch(fixture, phase, count)
    deliveries = owned(fixture, phase, outbox_ids)

    # Outage: every delivery made and tried (first attempts fail, 5 s later the second ones too); wait
    # until nothing is leased or due within a minute (the third attempt is 5 min away): a still state.
    failed_once, failed_once_at = wait_until(
        lambda: deliveries.filter(status=DeliveryStatus.FAILED, attempts__gte=1).count() >= count,
        args.timeout,
        "the first attempts to fail",
    )

    sweeps = []

    def still():
        # What beat's sweep_deliveries_task does every 5 s (beat is not run): ring for whatever is due.
        if not sweeps or time.monotonic() - sweeps[-1] >= 5:
            sweeps.append(time.monotonic())
            delivery.sweep()
        now = timezone.now()
        busy = deliveries.filter(status__in=delivery.OWED).filter(
            Q(locked_until__gt=now) | Q(next_attempt_at__lte=now + timedelta(seconds=60))
        )
        return not busy.exists()

    quiet, quiet_at = wait_until(still, args.timeout, "the failing deliveries to settle")
    fail_cpu = cpu_seconds(before_fail, cpu_snapshot(started, pids))
    fail_work = work_delta(work_before, work_counters(pids))
    outage = {
        "first_attempts_failed_s": round(failed_once_at - committed, 2) if failed_once else None,
        "failures_per_s": round(count / (failed_once_at - committed), 1) if failed_once else None,
        "settled_s": round(quiet_at - committed, 2),
        "settled": quiet,
        "sweeps_in_process": len(sweeps),
        "attempts_by_count": dict(sorted(Counter(deliveries.values_list("attempts", flat=True)).items())),
        "answered_503": sum(1 for _, _, s in receiver.of(phase) if s == 503),
        "cpu_s": fail_cpu,
        "work": fail_work,
    }

    # Recovery: the receiver answers 200 again; whatever is still leased finishes first (its outcome would
    # otherwise push it 5 min out after our update); then everything owed is due now, and the workers rung.
    receiver.set_status(200)
    from integrations.models import WebhookDelivery

    wait_until(
        lambda: not deliveries.filter(locked_until__gt=timezone.now()).exists(), args.timeout, "leases"
    )
    already = deliveries.filter(status=DeliveryStatus.SUCCEEDED).count()
    work_before = work_counters(pids)
    before = cpu_snapshot(started, pids)
    started_at = time.time()
    made_due = WebhookDelivery.objects.filter(
        integration_id=fixture.targets[phase].integration_id, status__in=delivery.OWED
    ).update(next_attempt_at=Now())
    doorbells.ring(made_due)
    done, seen = wait_succeeded(fixture, phase, outbox_ids, args.timeout)
    after = cpu_snapshot(started, pids)
    work = work_delta(work_before, work_counters(pids))
    rows = delivery_rows(fixture, phase, outbox_ids)
    records = receiver.of(phase)  # first: a delivery that has arrived has its row by now
    extras = extra_deliveries(fixture, phase, outbox_ids)
    check, arrivals = arrival_check(rows, records, {e["event_id"] for e in extras})
    succeeded = [r["succeeded_at"].timestamp() for r in rows if r["succeeded_at"]]
    elapsed = max(succeeded) - started_at if len(succeeded) == count else None
    ids = {r["event_id"] for r in rows}
    recovered = [min(v) for i, v in arrivals.items() if i in ids]
    return {
        "events": count,
        "outage": outage,
        "already_succeeded_before_update": already,
        "made_due": made_due,
        "how": "UPDATE next_attempt_at = now() of every owed delivery (the backoff has elapsed / an operator "
        "replay), then integrations.webhooks.doorbells.ring(N) in the bench process; no beat",
        "done": done,
        "succeeded": len(succeeded),
        "seconds": round(elapsed, 3) if elapsed else None,
        "deliveries_per_s": round((count - already) / elapsed, 1) if elapsed else None,
        "seen_done_s": round(seen - started_at, 3),
        "last_arrival_s": round(max(recovered) - started_at, 3) if recovered else None,
        "cpu_pct": cpu_percentages(before, after, seen - started_at),
        "cpu_s": cpu_seconds(before, after),
        "work": work,
        "check": check,
        "extra_deliveries": extras,
    }


# --- in-process: the SQL of a dispatch and of a delivery batch; a profile of one batch ------------------


def _frame_name(key) -> str:
    filename, line, name = key
    path = Path(filename)
    with contextlib.suppress(ValueError):
        path = path.relative_to(ROOT)
    text = str(path)
    if "site-packages/" in text:
        text = text.split("site-packages/", 1)[1]
    return f"{text}:{line}({name})" if line else name


def _queries(captured) -> list[dict]:
    return [{"verb": sql_verb(q["sql"]), "sql": q["sql"]} for q in captured.captured_queries]


def _shape(sql: str) -> str:
    """The statement with its literals blanked: consecutive statements of one shape are listed once."""
    return re.sub(r"\b\d+(\.\d+)?\b", "?", re.sub(r"'[^']*'", "?", sql))


def _query_summary(queries: list[dict], seconds: float) -> dict:
    grouped: list[dict] = []
    for q in queries:
        shape = _shape(q["sql"])
        if grouped and grouped[-1]["shape"] == shape:
            grouped[-1]["times"] += 1
        else:
            sql = " ".join(q["sql"][:400].split())
            grouped.append(
                {"verb": q["verb"], "times": 1, "chars": len(q["sql"]), "sql": sql, "shape": shape}
            )
    for row in grouped:
        del row["shape"]
    return {
        "ms": round(seconds * 1000, 1),
        "count": len(queries),
        "by_verb": verb_counts(queries),
        "queries": grouped,  # consecutive statements of the same shape once, with how many times
    }


def in_process(fixture: Fixture) -> dict:
    """Two batches emitted and dispatched in-process; the SQL of the dispatch and of a delivery batch."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from config.celery import app
    from integrations.webhooks import delivery, outbox

    batch = settings.WEBHOOK_BATCH_SIZE
    emit_batch(fixture, "inproc", 2 * batch)
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        dispatched, made = outbox.dispatch_outbox()
        dispatch_s = time.perf_counter() - began
    results = {
        "dispatch": {
            "events": dispatched,
            "deliveries": made,
            **_query_summary(_queries(captured), dispatch_s),
        }
    }
    delivery.deliver_due()  # warms the pool's connections and the thread pool
    profile = cProfile.Profile()
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        profile.enable()
        sent = delivery.deliver_due()
        profile.disable()
        deliver_s = time.perf_counter() - began
    results["deliver_batch"] = {"deliveries": sent, **_query_summary(_queries(captured), deliver_s)}
    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda item: item[1][3], reverse=True)  # cumulative
    results["profile"] = {
        "note": "cProfile of one deliver_due() in the bench process: the calling thread only (the POSTs run "
        "on the pool's threads, so they show as the wait in executor.map)",
        "seconds": round(deliver_s, 4),
        "top_cumulative": [
            {
                "function": _frame_name(key),
                "calls": nc,
                "tottime_ms": round(tt * 1000, 2),
                "cumtime_ms": round(ct * 1000, 2),
            }
            for key, (_cc, nc, tt, ct, _callers) in rows[:25]
        ],
        "top_own": [
            {"function": _frame_name(key), "calls": nc, "tottime_ms": round(tt * 1000, 2)}
            for key, (_cc, nc, tt, _ct, _callers) in sorted(
                stats.stats.items(), key=lambda item: item[1][2], reverse=True
            )[:15]
        ],
    }
    if sent != batch or made != 2 * batch:
        raise SystemExit(
            f"In-process: {made} deliveries made of {2 * batch}, a batch of {sent} sent of {batch}"
        )
    results["purged_messages"] = app.control.purge()  # the doorbells these rang: the workers are not up yet
    return results


# --- the workers ---------------------------------------------------------------------------------------


# --- py-spy: where the workers' time goes --------------------------------------------------------------


def py_spy_profile(binary: str, fixture, receiver, args, started, pids, folder: Path) -> dict:
    """Phase (2) again on its own integration, with py-spy sampling the worker processes."""
    out = folder / "py-spy.txt"
    argv = [binary, "record", "--pid", str(pids.workers), "--subprocesses", "--format", "raw"]
    argv += ["--rate", "100", "--nonblocking", "--full-filenames", "--output", str(out)]
    log = folder / "py-spy.log"
    with log.open("wb") as sink:
        proc = spawn(argv, stdout=sink, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # attached
    try:
        figures = throughput(fixture, receiver, args, started, pids, phase="profile")
    finally:
        stop_pid(proc.pid, signal.SIGINT, "py-spy")
    if not out.exists():
        return {"error": f"py-spy wrote nothing: {tail(log, 5)}", "throughput": figures}
    return {
        "throughput_while_sampled": {k: figures[k] for k in ("events", "seconds", "deliveries_per_s")},
        **stack_summary(out.read_text(errors="replace")),
    }


FUNC = re.compile(r"^(?P<name>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Where a sample is, by the innermost engine or library frame on its stack (first match wins).
BUCKETS = (
    ("HTTP send (post_signed: httpx, sockets, signing)", ("core/outbound.py",)),
    ("record_outcomes (attempts, delivery updates, counters)", ("record_outcomes",)),
    ("claim (SELECT … FOR UPDATE SKIP LOCKED, UPDATE, SELECT)", ("claim (",)),
    ("dispatch_outbox (outbox → deliveries)", ("dispatch_outbox",)),
    ("ring / publish to the broker", ("ring (", "enqueue (")),
    ("sweep", ("sweep (",)),
    ("other engine code", ("integrations/",)),
    ("celery / kombu (task machinery, broker)", ("celery/", "kombu/", "billiard/")),
)


def stack_summary(raw: str) -> dict:
    """Collapsed stacks → samples by engine step (BUCKETS), by function inclusive, and by leaf function."""
    total = 0
    own, inclusive, buckets = Counter(), Counter(), Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        names, ours = [], set()
        for frame in frames:
            match = FUNC.match(frame)
            name = f"{match['name']} ({_short(match['file'])})" if match else frame
            names.append(name)
            if match and _is_project(match["file"]):
                ours.add(name)
        if names:
            own[names[-1]] += n
        for name in ours:  # inclusive: the project's own functions (the rest is the same root chain)
            inclusive[name] += n
        for bucket, needles in BUCKETS:
            if any(needle in frame for frame in frames for needle in needles):
                buckets[bucket] += n
                break
        else:
            buckets["idle / elsewhere (worker main loop, threads waiting)"] += n

    def share(counter, top):
        return [
            {"function": k, "samples": v, "pct": round(100 * v / total, 1)}
            for k, v in counter.most_common(top)
        ]

    return {
        "samples": total,
        "by_step": share(buckets, 20),
        "inclusive": share(inclusive, 30),
        "own": share(own, 20),
    }


def _is_project(path: str) -> bool:
    """A file of this checkout (py-spy runs with --full-filenames), not of the venv."""
    return path.startswith(f"{ROOT}/") and "/.venv/" not in path and "site-packages/" not in path


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(ROOT))
    return path


# --- report --------------------------------------------------------------------------------------------


def met(value, target, below: bool) -> str:
    if value is None:
        return "NO (not done)"
    return "yes" if (value < target if below else value >= target) else "NO"


def print_report(report: dict) -> None:
    meta, cap, thr, lat, dr = (report[k] for k in ("meta", "capacity", "throughput", "latency", "drain"))
    print()
    print(
        f"Workers: {meta['workers_command']}; WEBHOOK_BATCH_SIZE {meta['batch_size']}, "
        f"WEBHOOK_CONCURRENCY {meta['concurrency']}, lease {meta['lease_s']} s"
    )
    print(
        f"Receiver: raw asyncio HTTP/1.1 (keep-alive) in its own process; PostgreSQL {meta['postgres']} "
        f"(fsync off), Redis {meta['redis']}"
    )
    print(
        f"Events: {EVENT_TYPE} about the receiving integration (status `{meta['integration_status']}`), "
        "payload sent as emitted (no renderer)"
    )
    print(
        f"Machine: {meta['cpus']} cores; load average before {meta['loadavg_before']}, after "
        f"{meta['loadavg_after']}; run {meta['run_s']:.0f} s"
    )
    print()
    head = f"{'':<52} {'figure':>22} {'target':>10} {'met':>5}"
    print(head)
    print("-" * len(head))
    print(
        f"{'(1) receiver raw capacity, ' + str(cap['processes']) + '×' + str(cap['threads_per_process']) + ' httpx':<52} "
        f"{cap['rps']:>16.0f} req/s {'':>10} {'':>5}"
    )
    print(
        f"{'(2) throughput, ' + str(thr['events']) + ' events in 1 tx':<52} "
        f"{(thr['deliveries_per_s'] or 0):>16.1f} del/s {'≥ 200/s':>10} "
        f"{met(thr['deliveries_per_s'], TARGETS['deliveries_per_s'], False):>5}"
    )
    c2a = lat["commit_to_arrival"]
    print(
        f"{'(3) commit → arrival at ' + str(lat['rate']) + '/s for ' + str(lat['seconds']) + ' s, p50':<52} "
        f"{c2a['p50_s']:>20.3f} s {'< 1 s':>10} {met(c2a['p50_s'], TARGETS['p50_s'], True):>5}"
    )
    print(
        f"{'    p99':<52} {c2a['p99_s']:>20.3f} s {'< 5 s':>10} {met(c2a['p99_s'], TARGETS['p99_s'], True):>5}"
    )
    print(f"{'    max':<52} {(c2a['max_s'] or 0):>20.3f} s")
    print(
        f"{'(4) backlog drain, ' + str(dr['events']) + ' owed deliveries':<52} "
        f"{(dr['seconds'] or float('nan')):>20.1f} s {'< 60 s':>10} "
        f"{met(dr['seconds'], TARGETS['drain_s'], True):>5}"
    )
    print()
    print(
        f"(1) {cap['how']}: {cap['requests']} requests in {cap['seconds']:g} s (after {cap['warmup_s']:g} s "
        f"warm-up), p50 {cap['p50_ms']} ms, p99 {cap['p99_ms']} ms, {cap['errors']} errors; receiver recorded "
        f"{cap['check']['recorded']} for {cap['check']['answers_200_all']} answers 200, "
        f"{cap['check']['duplicates']} duplicates: {'OK' if cap['check']['ok'] else 'MISMATCH'}"
    )
    print(
        f"    the receiver spent {cap['receiver_ms_per_request']} ms CPU per request: one core would answer "
        f"~{cap['receiver_one_core_rps']} requests/s; the row above is what the httpx clients could send"
    )
    print(
        f"(2) from the commit: last outbox row dispatched {thr['last_dispatched_s']} s, last delivery row "
        f"{thr['last_delivery_created_s']} s, first arrival {thr['first_arrival_s']} s, last arrival "
        f"{thr['last_arrival_s']} s, last succeeded {thr['seconds']} s (poll saw it at {thr['seen_done_s']} s); "
        f"{thr['batches']} batches, mean {thr['mean_batch']}, max {thr['max_batch']}"
    )
    print_check("   ", thr)
    print(
        f"(3) {lat['events']} events, one per transaction, emitted in {lat['emitted_in_s']} s "
        f"({lat['achieved_rate']}/s; {lat['emits_late']} emits over 10 ms late, the latest by {lat['max_late_ms']} ms)"
    )
    for label, key in (
        ("commit → arrival", "commit_to_arrival"),
        ("commit → delivery row", "commit_to_delivery_row"),
        ("delivery row → arrival", "delivery_row_to_arrival"),
    ):
        row = lat[key]
        print(
            f"    {label:<24} p50 {row['p50_s']:.3f} s, p99 {row['p99_s']:.3f} s, max {row['max_s']} s, "
            f"mean {row['mean_s']} s"
        )
    print(f"    {lat['batches']} batches, mean {lat['mean_batch']}, max {lat['max_batch']}")
    print_check("   ", lat)
    out = dr["outage"]
    print(
        f"(4) outage (receiver 503): all {dr['events']} first attempts failed {out['first_attempts_failed_s']} s "
        f"after the commit ({out['failures_per_s']}/s), settled (nothing leased or due within 60 s) at "
        f"{out['settled_s']} s; attempts per delivery {out['attempts_by_count']}, {out['answered_503']} answered 503"
    )
    print(
        f"    recovery: {dr['how']}; {dr['made_due']} made due ({dr['already_succeeded_before_update']} had "
        f"succeeded before the update); all succeeded {dr['seconds']} s later ({dr['deliveries_per_s']}/s), "
        f"last arrival {dr['last_arrival_s']} s"
    )
    print_check("   ", dr)
    print()
    print(f"CPU, % of one core ({meta['cpus']} cores = {100 * meta['cpus']}%), over each measured window:")
    head = f"{'':<24} " + " ".join(f"{g:>9}" for g in CPU_GROUPS)
    print(head)
    rows = [("(1) receiver capacity", cap), ("(2) throughput", thr), ("(3) latency", lat), ("(4) drain", dr)]
    for name, row in rows:
        print(f"{name:<24} " + " ".join(f"{row['cpu_pct'][g]:>9}" for g in CPU_GROUPS))
    print("  bench: this process (emitting and polling); in (1), the loader processes instead")
    print("Tasks the worker ran, and PostgreSQL sessions opened (pg_stat_database.sessions), per phase:")
    for name, work in (
        ("(2) throughput", thr["work"]),
        ("(3) latency", lat["work"]),
        ("(4) outage", dr["outage"]["work"]),
        ("(4) drain", dr["work"]),
    ):
        tasks = sum(v for k, v in work.items() if k != "pg_sessions")
        listed = ", ".join(f"{k} {v}" for k, v in work.items() if k != "pg_sessions")
        sessions = work.get("pg_sessions", 0)
        per_task = f" ({sessions / tasks:.1f} per task)" if tasks else ""
        print(f"  {name:<22} {listed or 'no tasks'}; {sessions} sessions{per_task}")
    for name, row in (("(2)", thr), ("(3)", lat), ("(4)", dr)):
        after = row["after"]
        print(
            f"  after {name} was done: {after['queued_at_end']} messages still queued (doorbells that find "
            f"nothing left); the worker was idle {after['idle_after_s']} s later"
        )
    if thr["deliveries_per_s"]:
        per = {
            g: thr["cpu_s"][g] / thr["events"] * 1000 for g in ("workers", "postgres", "redis", "receiver")
        }
        print("CPU ms per delivery in (2): " + ", ".join(f"{g} {v:.2f}" for g, v in per.items()))
    print()
    inproc = report["in_process"]
    for title, key in (
        ("one outbox dispatch", "dispatch"),
        ("one delivery batch (deliver_due)", "deliver_batch"),
    ):
        row = inproc[key]
        verbs = ", ".join(f"{v} {n}" for v, n in row["by_verb"].items())
        size = f"{row.get('events', row.get('deliveries'))} " + (
            "events" if key == "dispatch" else "deliveries"
        )
        print(f"SQL of {title} ({size}), in-process: {row['count']} queries ({verbs}); {row['ms']} ms")
        for index, query in enumerate(row["queries"][:30], 1):
            sql, times = query["sql"], f"×{query['times']}" if query["times"] > 1 else ""
            print(f"  {index:>3}. {query['verb']:<7}{times:>5} {sql[:105]}{'…' if len(sql) > 105 else ''}")
        if len(row["queries"]) > 30:
            print(f"  … {len(row['queries']) - 30} more")
    prof = inproc["profile"]
    print(
        f"cProfile of one deliver_due() in-process ({prof['seconds'] * 1000:.0f} ms; calling thread only), "
        "top by cumulative:"
    )
    for row in prof["top_cumulative"][:18]:
        print(f"  {row['cumtime_ms']:>9.1f} ms {row['calls']:>6}×  {row['function']}")
    spy = report.get("py_spy")
    if spy and "by_step" in spy:
        t = spy["throughput_while_sampled"]
        print()
        print(
            f"py-spy of the workers during (2) repeated ({t['events']} events, {t['deliveries_per_s']}/s while "
            f"sampled), {spy['samples']} samples of non-idle threads:"
        )
        for row in spy["by_step"]:
            print(f"  {row['pct']:>5.1f}%  {row['function']}")
        print("  inclusive, the project's functions:")
        for row in spy["inclusive"][:25]:
            print(f"  {row['pct']:>5.1f}%  {row['function']}")
        print("  own (leaf), top:")
        for row in spy["own"][:15]:
            print(f"  {row['pct']:>5.1f}%  {row['function']}")
    elif spy:
        print(f"py-spy: {spy.get('error')}")
    if meta["worker_errors_logged"]:
        print(f"\nThe worker logged {meta['worker_errors_logged']} error lines (see above).")


def print_check(indent: str, row: dict) -> None:
    c = row["check"]
    print(
        f"{indent} check: {c['deliveries']} deliveries, one per event: {c['one_delivery_per_event']}; "
        f"arrived with 200 {c['arrived_200']}, missing {c['missing']}, duplicates {c['duplicates']}, "
        f"unknown ids {c['unknown_ids']}; sequences unique {c['sequences_unique']}, contiguous "
        f"{c['sequences_contiguous']}: {'OK' if c['ok'] else 'MISMATCH'}"
    )
    for extra in row["extra_deliveries"]:
        print(
            f"{indent} also delivered (not the bench's): {extra['event_type']} {extra['status']} {extra['data']}"
        )


# --- main ----------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--events", type=int, default=5000, help="events of the throughput run, one tx (5000)"
    )
    parser.add_argument("--rate", type=float, default=100, help="events/s of the latency run (100)")
    parser.add_argument("--seconds", type=float, default=30, help="seconds of the latency run (30)")
    parser.add_argument("--backlog", type=int, default=10_000, help="events of the drain run (10000)")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes, -c (2)")
    parser.add_argument("--capacity-seconds", type=float, default=10, help="measured seconds of (1) (10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds of (1) (2)")
    parser.add_argument(
        "--timeout", type=float, default=600, help="give up waiting for a phase after (600 s)"
    )
    parser.add_argument(
        "--py-spy",
        nargs="?",
        const="py-spy",
        default=None,
        metavar="PATH",
        help="repeat (2) with py-spy (this binary, or py-spy on PATH) sampling the workers, and list where "
        "their time goes",
    )
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load-receiver", help=argparse.SUPPRESS)
    add_common_arguments(
        parser,
        RESULTS,
        leaves="keeps one more organization with its integrations, keys, subscriptions, events and deliveries",
    )
    args = parser.parse_args(argv)
    if min(args.events, args.backlog, args.workers) < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--events, --backlog, --workers, --rate and --seconds must be positive")
    if args.py_spy is not None:
        binary = shutil.which(args.py_spy)
        if binary is None:
            parser.error(f"py-spy not found: {args.py_spy}")
        args.py_spy = binary
    return args


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    run_began = time.monotonic()
    started, pids = Started(), Pids()
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    database_url, redis_url = start_services(stack, started, args.reuse_env)
    env = {**django_env(database_url, redis_url, folder / "var"), "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}
    receiver = start_receiver(stack, folder)
    pids.receiver = receiver.pid

    print("Migrating; creating an organization, and per phase an integration with a key and a subscription…")
    setup_django(env)
    from django.conf import settings
    from django.db import connections

    fixture = create_fixture(receiver)

    print("In-process: the SQL of an outbox dispatch and of a delivery batch, cProfile of a batch…")
    queries = in_process(fixture)
    connections.close_all()

    print(
        f"(1) receiver capacity: {args.workers} loaders × {settings.WEBHOOK_CONCURRENCY} threads, "
        f"{args.warmup:g} + {args.capacity_seconds:g} s…"
    )
    capacity = receiver_capacity(receiver, args, started, pids)
    print(f"  {capacity['rps']:.0f} requests/s, p50 {capacity['p50_ms']} ms, p99 {capacity['p99_ms']} ms")

    worker = start_worker(stack, env, folder, args.workers)
    pids.workers, pids.worker_name = worker.pid, worker.name
    workers_command, worker_log = worker.command, worker.log
    loadavg_before = loadavg()

    print(f"(2) throughput: {args.events} events in one transaction…")
    thr = throughput(fixture, receiver, args, started, pids)
    thr["after"] = wait_idle(pids, args.timeout)
    print(f"  {thr['deliveries_per_s']} deliveries/s ({thr['seconds']} s from the commit)")

    print(f"(3) latency: {args.rate:g} events/s for {args.seconds:g} s, one per transaction…")
    lat = latency(fixture, receiver, args, started, pids)
    lat["after"] = wait_idle(pids, args.timeout)
    c2a = lat["commit_to_arrival"]
    print(f"  commit → arrival p50 {c2a['p50_s']} s, p99 {c2a['p99_s']} s, max {c2a['max_s']} s")

    print(f"(4) drain: receiver 503 while {args.backlog} events are emitted and fail, then 200…")
    dr = drain(fixture, receiver, args, started, pids)
    dr["after"] = wait_idle(pids, args.timeout)
    print(f"  {dr['seconds']} s to deliver the {dr['made_due']} owed ({dr['deliveries_per_s']}/s)")

    spy = None
    if args.py_spy:
        print(f"py-spy: (2) again, {args.events} events, sampling the workers…")
        spy = py_spy_profile(args.py_spy, fixture, receiver, args, started, pids, folder)
    problems = worker_log_problems(worker_log)
    loadavg_after = loadavg()
    connections.close_all()

    return {
        "meta": {
            **run_meta("deliveries.py", started, args.reuse_env, "celery worker + raw asyncio receiver"),
            "workers_command": workers_command,
            "loadavg_before": loadavg_before,
            "loadavg_after": loadavg_after,
            "run_s": round(time.monotonic() - run_began, 1),
            "event_type": EVENT_TYPE,
            "integration_status": fixture.targets["throughput"].status,
            "batch_size": settings.WEBHOOK_BATCH_SIZE,
            "concurrency": settings.WEBHOOK_CONCURRENCY,
            "lease_s": settings.WEBHOOK_DELIVERY_LEASE,
            "timeout_s": settings.WEBHOOK_TIMEOUT,
            "workers": args.workers,
            "beat": "not run: commits ring the workers, and (4) rings them in-process",
            "targets": TARGETS,
            "worker_errors_logged": len(problems),
            "worker_error_lines": problems[-10:],
        },
        "capacity": capacity,
        "throughput": thr,
        "latency": lat,
        "drain": dr,
        "in_process": queries,
        "py_spy": spy,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.serve_receiver:
        return serve_receiver(args.serve_receiver)
    if args.load_receiver:
        return load_receiver(json.loads(args.load_receiver))
    return harness_main(args, run, print_report)


if __name__ == "__main__":
    sys.exit(main())
