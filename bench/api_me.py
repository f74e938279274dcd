"""
What an authenticated `GET /api/v1/me` costs under gunicorn, against requests that touch neither auth nor
the database (a static-file 404, an API 404, the root redirect) and the 401 of /me without a key.

Starts a throwaway PostgreSQL and Redis (or, with --reuse-env, uses DATABASE_URL and REDIS_URL), migrates,
creates an organization, a custom-channel integration and its key through the services, then loads each
endpoint with N keep-alive httpx clients for a fixed time. In-process it also times
tokens.authentication.authenticate() and lists the queries of one /me. Prints a table, writes
bench/results/api_me.json, and stops everything it started (also on Ctrl-C).

    .venv/bin/python bench/api_me.py [--seconds 10] [--concurrency 8] [--workers 2] [--threads 4]
"""

import argparse
import contextlib
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from _harness import (
    CPU_GROUPS,
    RATE_LIMIT,
    RESULTS_DIR,
    Started,
    add_common_arguments,
    django_env,
    httpx_clients,
    load_figures,
    loadavg,
    quiet_logging,
    run_load,
    run_meta,
    server_log_problems,
    setup_django,
    sql_verb,
    start_gunicorn,
    start_services,
)
from _harness import main as harness_main

RESULTS = RESULTS_DIR / "api_me.json"


@dataclass(frozen=True)
class Endpoint:
    """One request the load phase repeats, and the status it must answer."""

    name: str
    path: str
    status: int
    authenticated: bool = False
    note: str = ""


ME = Endpoint("me", "/api/v1/me", 200, authenticated=True, note="bearer key: auth, limiter, request log")
BASELINES = [
    Endpoint("static_404", "/static/does-not-exist.css", 404, note="whitenoise miss, Django HTML 404"),
    Endpoint("api_404", "/api/v1/does-not-exist", 404, note="API catch-all, JSON 404"),
    Endpoint("redirect", "/", 302, note="RedirectView to /admin/"),
]
ME_NOKEY = Endpoint("me_nokey", "/api/v1/me", 401, note="no key: DRF refuses before any query")


# --- in-process measurements ------------------------------------------------------------------------


def create_key() -> str:
    """An organization, a custom-channel integration and an integration key, through the services."""
    from integrations import configuration
    from integrations.models import Connector
    from organizations.models import Organization
    from tokens import issuing
    from tokens.choices import KeyKind

    suffix = secrets.token_hex(4)
    org = Organization.objects.create(name=f"Bench {suffix}", slug=f"bench-{suffix}")
    connector = Connector.objects.get(organization=None, key="custom-channel")
    integration = configuration.create_integration(org, connector, "Bench shop")
    issued = issuing.issue_key(kind=KeyKind.INTEGRATION, name="Bench key", integration=integration)
    return issued.plaintext


def in_process(plaintext: str, endpoints: list[Endpoint], auth_calls: int, request_calls: int) -> dict:
    """authenticate() µs/call, and per endpoint: its queries and µs/request through Django's test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tokens.authentication import authenticate

    authenticate(plaintext, "127.0.0.1")  # first use writes last_used_at
    with CaptureQueriesContext(connection) as captured:
        authenticate(plaintext, "127.0.0.1")
    # captured_queries slices the live log, which every request start clears: copy it at once.
    auth_queries = [sql_verb(q["sql"]) for q in captured.captured_queries]
    started = time.perf_counter()
    for _ in range(auth_calls):
        authenticate(plaintext, "127.0.0.1")
    auth_us = (time.perf_counter() - started) / auth_calls * 1e6

    client = Client(HTTP_HOST="127.0.0.1")
    results = {}
    with quiet_logging():
        for endpoint in endpoints:
            headers = {"Authorization": f"Bearer {plaintext}"} if endpoint.authenticated else {}
            for _ in range(20):  # warm caches (url resolver, templates)
                response = client.get(endpoint.path, headers=headers)
            if response.status_code != endpoint.status:
                raise SystemExit(f"{endpoint.path} answered {response.status_code}, not {endpoint.status}")
            with CaptureQueriesContext(connection) as captured:
                client.get(endpoint.path, headers=headers)
            queries = [{"verb": sql_verb(q["sql"]), "sql": q["sql"]} for q in captured.captured_queries]
            started = time.perf_counter()
            for _ in range(request_calls):
                client.get(endpoint.path, headers=headers)
            elapsed = time.perf_counter() - started
            results[endpoint.name] = {
                "us_per_request": round(elapsed / request_calls * 1e6, 1),
                "queries": queries,
            }
    return {
        "authenticate_us_per_call": round(auth_us, 1),
        "authenticate_calls": auth_calls,
        "authenticate_queries": auth_queries,
        "request_calls": request_calls,
        "endpoints": results,
    }


# --- load ---------------------------------------------------------------------------------------------


def load(base, endpoint, plaintext, concurrency, warmup, seconds, started, redis_url) -> dict:
    """`concurrency` threads, one httpx connection each, for warmup + seconds; figures of the last `seconds`."""
    headers = {"Authorization": f"Bearer {plaintext}"} if endpoint.authenticated else {}

    def get(client, index) -> str | None:
        status = client.get(endpoint.path).status_code
        return None if status == endpoint.status else f"HTTP {status}"

    clients = httpx_clients(base, concurrency, headers)
    redis_client = redis.Redis.from_url(redis_url)
    try:
        result = run_load(
            clients,
            get,
            warmup,
            seconds,
            started,
            probe=lambda: redis_client.info("stats")["total_commands_processed"],
        )
    finally:
        for client in clients:
            client.close()
        redis_client.close()
    done = result["answers"] + result["errors"]
    return {
        "path": endpoint.path,
        "status": endpoint.status,
        "note": endpoint.note,
        **load_figures(result),
        # Minus the INFO call that closes the window; includes other users of a --reuse-env Redis.
        "redis_cmds_per_request": round((result["probe_delta"] - 1) / done, 2) if done else None,
    }


# --- report -------------------------------------------------------------------------------------------


def print_report(report: dict) -> None:
    """The figures as plain-text tables."""
    meta, load_results, inproc = report["meta"], report["load"], report["in_process"]
    me_rps = load_results["me"]["rps"]
    print()
    print(f"Server: {meta['server']}")
    print(
        f"Load: {meta['concurrency']} httpx keep-alive clients (threads), {meta['warmup_s']} s warm-up + "
        f"{meta['seconds']} s measured per endpoint; load average before {meta['loadavg_before']}, "
        f"after {meta['loadavg_after']}"
    )
    print()
    head = f"{'endpoint':<11} {'request':<36} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    head += f" {'me÷this':>7} {'queries':>7} {'redis/req':>9}"
    print(head)
    print("-" * len(head))
    for name, row in load_results.items():
        ratio = f"{me_rps / row['rps']:.2f}" if row["rps"] else "-"
        queries = len(inproc["endpoints"][name]["queries"])
        request = f"GET {row['path']} → {row['status']}"
        print(
            f"{name:<11} {request:<36} {row['rps']:>8.1f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{row['errors']:>6} {ratio:>7} {queries:>7} {row['redis_cmds_per_request']!s:>9}"
        )
        for sample in row["error_samples"]:
            print(f"{'':<11}   error: {sample}")
    print()
    print(f"CPU during each measured window, % of one core ({meta['cpus']} cores = {100 * meta['cpus']}%):")
    groups = CPU_GROUPS
    head = f"{'endpoint':<11} " + " ".join(f"{g:>9}" for g in groups) + f" {'gunicorn ms/req':>16}"
    print(head)
    print("-" * len(head))
    for name, row in load_results.items():
        per_request = row["cpu_pct"]["gunicorn"] / 100 / row["rps"] * 1000 if row["rps"] else float("nan")
        cells = " ".join(f"{row['cpu_pct'][g]:>9}" for g in groups)
        print(f"{name:<11} {cells} {per_request:>16.2f}")
    summary = report["summary"]
    print()
    print(
        f"Fastest request without auth or DB: {summary['fastest_baseline']} "
        f"({summary['fastest_baseline_rps']} req/s); /me throughput = {summary['me_over_fastest']:.2f} of it, "
        f"{summary['me_over_static_404']:.2f} of the static 404."
    )
    print()
    print(f"In-process (Django test client, one thread, {inproc['request_calls']} requests each):")
    for name, row in inproc["endpoints"].items():
        print(f"  {name:<11} {row['us_per_request']:>8.1f} µs/request   {len(row['queries'])} queries")
    print(
        f"  tokens.authentication.authenticate(): {inproc['authenticate_us_per_call']:.1f} µs/call over "
        f"{inproc['authenticate_calls']} calls ({', '.join(inproc['authenticate_queries'])})"
    )
    print()
    me_queries = inproc["endpoints"]["me"]["queries"]
    print(f"Queries of one authenticated GET /api/v1/me: {len(me_queries)}")
    for index, query in enumerate(me_queries, 1):
        sql = " ".join(query["sql"].split())
        print(f"  {index}. {query['verb']:<6} {sql[:150]}{'…' if len(sql) > 150 else ''}")


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per endpoint (10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per endpoint (2)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent keep-alive clients (8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker (4)")
    parser.add_argument("--auth-calls", type=int, default=2000, help="in-process authenticate() calls (2000)")
    parser.add_argument(
        "--request-calls", type=int, default=500, help="in-process requests per endpoint (500)"
    )
    parser.add_argument("--no-401", action="store_true", help="skip the /me-without-key reference")
    add_common_arguments(parser, RESULTS, leaves="gets one more org, integration and key")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    """Start the services, measure, and return the report (the stack stops what was started)."""
    started = Started()
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    database_url, redis_url = start_services(stack, started, args.reuse_env)
    env = django_env(database_url, redis_url, folder / "var")

    print("Migrating and creating an organization, a custom-channel integration and its key…")
    setup_django(env)
    plaintext = create_key()

    endpoints = [ME, *BASELINES] + ([] if args.no_401 else [ME_NOKEY])
    print("Measuring in-process (authenticate(), queries, test-client requests)…")
    inproc = in_process(plaintext, endpoints, args.auth_calls, args.request_calls)
    from django.db import connections

    connections.close_all()  # the server gets the database to itself

    base, server = start_gunicorn(stack, started, env, args.workers, args.threads, folder)
    loadavg_before = loadavg()
    results = {}
    for endpoint in endpoints:
        print(f"Loading {endpoint.name}: GET {endpoint.path} ({args.warmup:g} + {args.seconds:g} s)…")
        results[endpoint.name] = load(
            base, endpoint, plaintext, args.concurrency, args.warmup, args.seconds, started, redis_url
        )
        row = results[endpoint.name]
        print(
            f"  {row['rps']:.1f} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, {row['errors']} errors"
        )

    problems = server_log_problems(folder)

    baselines = {e.name: results[e.name]["rps"] for e in BASELINES}
    fastest = max(baselines, key=baselines.get)
    me_rps = results["me"]["rps"]
    return {
        "meta": {
            **run_meta("api_me.py", started, args.reuse_env, server),
            "loadavg_before": loadavg_before,
            "loadavg_after": loadavg(),
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "seconds": args.seconds,
            "api_rate_limit": RATE_LIMIT,
            "server_errors_logged": len(problems),
        },
        "summary": {
            "me_rps": me_rps,
            "fastest_baseline": fastest,
            "fastest_baseline_rps": baselines[fastest],
            "me_over_fastest": round(me_rps / baselines[fastest], 3) if baselines[fastest] else None,
            "me_over_static_404": round(me_rps / baselines["static_404"], 3)
            if baselines["static_404"]
            else None,
        },
        "load": results,
        "in_process": inproc,
    }


def main(argv=None) -> int:
    return harness_main(parse_args(argv), run, print_report)


if __name__ == "__main__":
    sys.exit(main())
