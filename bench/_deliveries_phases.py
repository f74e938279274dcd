"""
bench/deliveries.py's measured phases: (1) the receiver's raw capacity, (2) throughput, (3) latency at a
steady rate, (4) backlog drain.
"""

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

from _deliveries_receiver import DELIVERIES, EVENT_TYPE, Receiver
from _deliveries_work import (
    arrival_check,
    batch_stats,
    cpu_percentages,
    cpu_seconds,
    cpu_snapshot,
    delivery_rows,
    emit_batch,
    event_payload,
    extra_deliveries,
    owned,
    seconds_list,
    wait_succeeded,
    wait_until,
    work_counters,
    work_delta,
)
from _harness import (
    Started,
    percentile,
)


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
            subprocess.Popen(  # noqa: S603 - this bench's own loader, a fixed argument list
                [sys.executable, DELIVERIES, "--load-receiver", json.dumps(spec)],
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
