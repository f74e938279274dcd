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
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from _engines_checks import compare, in_process, latency, outcomes, overlapping_sweeps, seconds, stock_checks
from _engines_fixture import OUTCOMES, RULE_LIMIT, create_fixture, make_specs
from _engines_traffic import Celery, Poller, post_orders, start_beat, tasks_run, wait_idle
from _harness import (
    RESULTS_DIR,
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
    start_gunicorn,
    start_services,
    start_worker,
    stop_pid,
    tree_cpu_seconds,
    worker_log_problems,
)
from _harness import main as harness_main

RESULTS = RESULTS_DIR / "engines.json"
TARGET_P95_S = 2.0
CPU_GROUPS = ("client", "gunicorn", "worker", "postgres", "redis", "other")


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
