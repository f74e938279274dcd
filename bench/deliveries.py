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
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _deliveries_phases import drain, latency, receiver_capacity, throughput
from _deliveries_profile import in_process, py_spy_profile
from _deliveries_receiver import EVENT_TYPE, load_receiver, serve_receiver, start_receiver
from _deliveries_work import CPU_GROUPS, Pids, create_fixture, wait_idle
from _harness import (
    RESULTS_DIR,
    Started,
    add_common_arguments,
    django_env,
    loadavg,
    run_meta,
    setup_django,
    start_services,
    start_worker,
    worker_log_problems,
)
from _harness import main as harness_main

RESULTS = RESULTS_DIR / "deliveries.json"
TARGETS = {"deliveries_per_s": 200, "p50_s": 1.0, "p99_s": 5.0, "drain_s": 60}


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
