"""
What bench/deliveries.py's phases share: CPU and work counters per process group, the fixture (an
organization, integrations subscribed to the receiver), emitting a batch of events through the outbox, and
reading back the deliveries they made.
"""

import secrets
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from _deliveries_receiver import EVENT_TYPE, Receiver
from _harness import (
    Started,
    machine_busy_seconds,
    percentile,
    tree_cpu_seconds,
)

PHASES = ("throughput", "latency", "drain", "inproc", "profile")
CPU_GROUPS = ("bench", "workers", "receiver", "postgres", "redis", "other")
POLL = 0.2  # seconds between the database polls that wait for deliveries to finish


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
