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
import random
import secrets
import sys
import threading
import time
from dataclasses import asdict, fields
from pathlib import Path

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
    loadavg,
    postgres_server,
    redis_server,
    run_meta,
    server_log_problems,
    start_gunicorn,
    tail,
    worker_log_problems,
)
from _load_clients import Config, Ledger, Run, Tally, manage, seed
from _load_receiver import serve_receiver, start_receiver
from _load_reconcile import db_rows, drain, reconcile, recovery_after, resumption, timeline, verdict
from _load_traffic import Chaos, post_orders, push_stock, run_3pl, run_chaos

RESULTS = RESULTS_DIR / "load.json"


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
    env = hub_env(postgres.url(), redis.port, folder, config)
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
        drained = drain(run, postgres.url(), receiver, config.drain_timeout)
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

    reconciliation = reconcile(run, postgres.url(), receiver)
    created = {
        event_id: float(at)
        for event_id, at in db_rows(
            postgres.url(),
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
        "timeline_5s": timeline(postgres.url(), run.t0, receiver.records),
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
