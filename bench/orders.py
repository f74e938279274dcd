# placeholders only, every value travels as a parameter.
"""
Writes through the API under gunicorn on PostgreSQL, each beside a baseline measured in the same run that
writes the same rows straight through psycopg 3 (a direct connection to the same database, no Django):

* single-order POST /api/v1/orders (3 lines): N concurrent clients for a fixed time → orders/s, p50, p99;
  baseline: N threads, one connection each, inserting per order in its own transaction the rows an order
  creates (orders_order + 3 orders_orderline + the integrations_outboxevent row). Afterwards the orders in
  the database must equal the 201 answers (no loss, no duplicates).
* POST /api/v1/inventory with 5000 items (absolute on_hand, every row changed each push), R times: the
  first push inserts the levels, the later ones update them → s per push (median, max), rows/s; baseline:
  one INSERT … ON CONFLICT (product_id, location_id) DO UPDATE of the 5000 inventory_inventorylevel rows in
  one transaction (other psycopg ways are measured too, for reference).
* In-process (django.test.Client + CaptureQueriesContext): the SQL of one order POST and of one 5000-item
  inventory POST, by verb.

Starts a throwaway PostgreSQL and Redis (or, with --reuse-env, uses DATABASE_URL and REDIS_URL), migrates,
creates an organization, a custom-channel integration and a custom-3pl one with their keys (the
connectors' recommended grants), a location the 3PL manages and 5000 products. Prints the figures with
their ratios, writes bench/results/orders.json, and stops everything it started (also on Ctrl-C).

    .venv/bin/python bench/orders.py [--seconds 10] [--concurrency 8] [--pushes 5] [--workers 2] [--threads 4]
"""

import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from _harness import (
    CPU_GROUPS,
    RATE_LIMIT,
    RESULTS_DIR,
    Started,
    add_common_arguments,
    django_env,
    loadavg,
    run_meta,
    server_log_problems,
    setup_django,
    start_gunicorn,
    start_services,
)
from _harness import main as harness_main
from _orders_fixture import INVENTORY, LINES, ORDERS, STOCK_METHODS, create_fixture, in_process
from _orders_load import api_orders, baseline_orders, check_orders, stock_pushes

RESULTS = RESULTS_DIR / "orders.json"


# --- report -------------------------------------------------------------------------------------------


def ratio(numerator, denominator) -> float | None:
    return round(numerator / denominator, 2) if numerator and denominator else None


def fmt_ratio(value) -> str:
    return f"{value:.1f}×" if value is not None else "-"


def print_queries(title: str, row: dict, listing: int) -> None:
    verbs = ", ".join(f"{verb} {count}" for verb, count in row["by_verb"].items())
    print(f"  {title}: {row['count']} queries ({verbs}); {row['ms']:.1f} ms in-process")
    for index, query in enumerate(row["queries"][:listing], 1):
        sql = query["sql"]
        size = f" [{query['chars']:,} chars]" if query["chars"] > 400 else ""
        print(f"    {index:>2}. {query['verb']:<9} {sql[:120]}{'…' if len(sql) > 120 else ''}{size}")
    if len(row["queries"]) > listing:
        print(f"    … {len(row['queries']) - listing} more")


def print_report(report: dict) -> None:
    meta, orders, stock, queries = report["meta"], report["orders"], report["stock"], report["queries"]
    api, base = orders["api"], orders["baseline"]
    print()
    print(f"Server: {meta['server']} on PostgreSQL {meta['postgres']} (fsync off), Redis {meta['redis']}")
    print(
        f"Machine: {meta['cpus']} cores; load average before {meta['loadavg_before']}, after "
        f"{meta['loadavg_after']}. Fixture: {meta['products']} products, {LINES} lines per order."
    )
    print()
    print(
        f"(a) Single-order POST {ORDERS} ({LINES} lines, unique external_id): {meta['concurrency']} clients, "
        f"{meta['warmup_s']:g} s warm-up + {meta['seconds']:g} s measured"
    )
    head = f"{'':<34} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print(head)
    print("-" * len(head))
    print(
        f"{'API (httpx → gunicorn → Django)':<34} {api['rps']:>9.1f} {api['p50_ms']:>8.2f} {api['p99_ms']:>8.2f} "
        f"{api['errors']:>7}"
    )
    print(
        f"{'baseline (psycopg, 1 tx per order)':<34} {base['rps']:>9.1f} {base['p50_ms']:>8.2f} "
        f"{base['p99_ms']:>8.2f} {base['errors']:>7}"
    )
    r = orders["ratios"]
    print(
        f"{'ratio (API cost ÷ baseline cost)':<34} {fmt_ratio(r['throughput']):>9} {fmt_ratio(r['p50']):>8} "
        f"{fmt_ratio(r['p99']):>8}"
    )
    for sample in api["error_samples"]:
        print(f"  API error: {sample}")
    for sample in base["error_samples"]:
        print(f"  baseline error: {sample}")
    check = orders["check"]
    print(
        f"Check: {check['orders']} orders in the database for {check['answers_201']} answers 201 "
        f"(all answers, warm-up included: {api['answers_all']}); {check['lines']} lines, "
        f"{check['order_created_events']} order.created events; statuses {check['statuses']}: "
        f"{'OK' if check['ok'] else 'MISMATCH'}"
    )
    bcheck = base["check"]
    print(
        f"       baseline: {bcheck['orders']} orders for {bcheck['answers_201']} commits, {bcheck['lines']} lines, "
        f"{bcheck['order_created_events']} events: {'OK' if bcheck['ok'] else 'MISMATCH'}"
    )
    print(f"CPU during the measured windows, % of one core ({meta['cpus']} cores = {100 * meta['cpus']}%):")
    head = f"{'':<10} " + " ".join(f"{g:>9}" for g in CPU_GROUPS)
    print(head)
    for name, row in (("API", api), ("baseline", base)):
        print(f"{name:<10} " + " ".join(f"{row['cpu_pct'][g]:>9}" for g in CPU_GROUPS))
    per_order = api["cpu_pct"]["gunicorn"] / 100 / api["rps"] * 1000 if api["rps"] else float("nan")
    pg_api = api["cpu_pct"]["postgres"] / 100 / api["rps"] * 1000 if api["rps"] else float("nan")
    pg_base = base["cpu_pct"]["postgres"] / 100 / base["rps"] * 1000 if base["rps"] else float("nan")
    print(
        f"gunicorn CPU per order {per_order:.2f} ms; PostgreSQL CPU per order: API {pg_api:.2f} ms, "
        f"baseline {pg_base:.2f} ms"
    )
    print()
    sapi, chosen = stock["api"], stock["baseline_method"]
    sbase = stock["baselines"][chosen]
    print(
        f"(b) Stock push POST {INVENTORY}, {sapi['rows']} items, {meta['pushes']} pushes one after the other "
        f"(the 1st inserts the levels, the others update every row)"
    )
    head = f"{'':<34} {'median s':>9} {'max s':>8} {'1st s':>8} {'upd. s':>8} {'rows/s':>8}"
    print(head)
    print("-" * len(head))

    def stock_row(label, row):
        print(
            f"{label:<34} {row['median_s']:>9.3f} {row['max_s']:>8.3f} {row['first_s']:>8.3f} "
            f"{row['update_median_s'] or float('nan'):>8.3f} {row['rows_per_s']:>8}"
        )

    stock_row("API (httpx → gunicorn → Django)", sapi)
    stock_row(f"baseline (psycopg, {chosen})", sbase)
    r = stock["ratios"]
    print(
        f"{'ratio (API ÷ baseline)':<34} {fmt_ratio(r['median']):>9} {fmt_ratio(r['max']):>8} "
        f"{fmt_ratio(r['first']):>8} {fmt_ratio(r['update_median']):>8}"
    )
    print(f"  baseline: {sbase['how']}, one transaction per push")
    print("  other psycopg ways, for reference (not the ratio's baseline):")
    for method, row in stock["baselines"].items():
        if method != chosen:
            stock_row(f"    {method}", row)
    checks = [sapi["check"], *(row["check"] for row in stock["baselines"].values())]
    print(
        f"Check: the API's location holds {sapi['check']['levels']} levels, {sapi['check']['wrong']} differing "
        f"from the last push; every baseline location likewise: {'OK' if all(c['ok'] for c in checks) else 'MISMATCH'}"
    )
    cpu = sapi["cpu_s_per_push"]
    print(
        "CPU seconds per API push: "
        + ", ".join(f"{g} {cpu[g]:.3f}" for g in CPU_GROUPS)
        + f"; baseline ({chosen}): postgres {sbase['cpu_s_per_push']['postgres']:.3f}, "
        f"client {sbase['cpu_s_per_push']['client']:.3f}"
    )
    print()
    print("(d) SQL in-process (django.test.Client, CaptureQueriesContext), by verb:")
    order = queries["order_post"]
    print_queries("one order POST", order, listing=40)
    print(f"    (mean of {order['calls']} in-process order POSTs: {order['ms_mean_of_calls']:.2f} ms)")
    print_queries(
        f"one {meta['items']}-item inventory POST, first (inserts)", queries["inventory_post_insert"], 20
    )
    print_queries(
        f"one {meta['items']}-item inventory POST, again (updates)", queries["inventory_post_update"], 20
    )


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds of each order load (10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds of each order load (2)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients / threads (8)")
    parser.add_argument("--pushes", type=int, default=5, help="stock pushes, API and each baseline way (5)")
    parser.add_argument(
        "--items",
        type=int,
        default=5000,
        help="items per stock push (5000, docs/connectors/contract.md's maximum)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker (4)")
    parser.add_argument("--order-calls", type=int, default=50, help="in-process order POSTs timed (50)")
    parser.add_argument(
        "--stock-baseline",
        choices=list(STOCK_METHODS),
        default="copy",
        help="the psycopg way the stock push's ratio divides by (copy); all are measured",
    )
    add_common_arguments(
        parser,
        RESULTS,
        leaves="keeps one more organization with its integrations, keys, products, locations, orders and stock",
    )
    args = parser.parse_args(argv)
    if args.items < 1 or args.pushes < 1 or args.concurrency < 1:
        parser.error("--items, --pushes and --concurrency must be at least 1")
    return args


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    """Start the services, measure, and return the report (the stack stops what was started)."""
    started = Started()
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    database_url, redis_url = start_services(stack, started, args.reuse_env)
    env = django_env(database_url, redis_url, folder / "var")

    product_count = max(args.items, LINES)
    print(f"Migrating; creating an organization, a channel and a 3PL with keys, {product_count} products…")
    setup_django(env)
    fixture = create_fixture(product_count)

    print("Counting queries in-process (one order POST, two stock pushes)…")
    queries = in_process(fixture, args.items, args.order_calls)
    from django.db import connections

    connections.close_all()  # the server gets the database to itself

    base, server = start_gunicorn(stack, started, env, args.workers, args.threads, folder)
    loadavg_before = loadavg()

    print(f"(a) POST {ORDERS}: {args.concurrency} clients, {args.warmup:g} + {args.seconds:g} s…")
    api = api_orders(base, fixture, args, started)
    print(
        f"  {api['rps']:.1f} orders/s, p50 {api['p50_ms']} ms, p99 {api['p99_ms']} ms, {api['errors']} errors"
    )
    check = check_orders(fixture, f"load-{fixture.tag}", int(api["answers_all"].get("201", 0)))
    print(f"(a) baseline: psycopg, {args.concurrency} threads, {args.warmup:g} + {args.seconds:g} s…")
    baseline = baseline_orders(database_url, fixture, args, started)
    print(f"  {baseline['rps']:.1f} orders/s, p50 {baseline['p50_ms']} ms, p99 {baseline['p99_ms']} ms")
    baseline["check"] = check_orders(fixture, f"base-{fixture.tag}", baseline["committed_all"])

    print(
        f"(b) POST {INVENTORY}: {args.pushes} pushes of {args.items} items, each followed by the psycopg ways'…"
    )
    stock_api, stock_baselines = stock_pushes(base, database_url, fixture, args, started)
    chosen = stock_baselines[args.stock_baseline]
    problems = server_log_problems(folder)

    return {
        "meta": {
            **run_meta("orders.py", started, args.reuse_env, server),
            "loadavg_before": loadavg_before,
            "loadavg_after": loadavg(),
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "seconds": args.seconds,
            "pushes": args.pushes,
            "items": args.items,
            "products": product_count,
            "lines_per_order": LINES,
            "api_rate_limit": RATE_LIMIT,
            "server_errors_logged": len(problems),
        },
        "orders": {
            "api": api,
            "baseline": {
                "how": "per order one transaction: INSERT orders_order … RETURNING id; one 3-row INSERT "
                "orders_orderline; INSERT integrations_outboxevent (order.created); one connection per thread",
                **baseline,
            },
            "ratios": {
                # Each > 1 means the API costs that many times the baseline.
                "throughput": ratio(baseline["rps"], api["rps"]),
                "p50": ratio(api["p50_ms"], baseline["p50_ms"]),
                "p99": ratio(api["p99_ms"], baseline["p99_ms"]),
            },
            "check": check,
        },
        "stock": {
            "api": stock_api,
            "baseline_method": args.stock_baseline,
            "baselines": stock_baselines,
            "ratios": {
                name: ratio(stock_api[key], chosen[key])
                for name, key in (
                    ("median", "median_s"),
                    ("max", "max_s"),
                    ("first", "first_s"),
                    ("update_median", "update_median_s"),
                )
            },
        },
        "queries": queries,
    }


def main(argv=None) -> int:
    return harness_main(parse_args(argv), run, print_report)


if __name__ == "__main__":
    sys.exit(main())
