"""
What an authenticated `GET /api/v1/me` costs under gunicorn, against requests that touch neither auth nor
the database (a static-file 404, an API 404, the root redirect) and the 401 of /me without a key.

Starts a throwaway PostgreSQL and Redis (or, with --reuse-env, uses DATABASE_URL and REDIS_URL), migrates,
creates an organization, a custom-channel integration and its key through the services, then loads each
endpoint with N keep-alive httpx clients for a fixed time. In-process it also times
tokens.services.authenticate() and lists the queries of one /me. Prints a table, writes
bench/results/api_me.json, and stops everything it started (also on Ctrl-C).

    .venv/bin/python bench/api_me.py [--seconds 10] [--concurrency 8] [--workers 2] [--threads 4]
"""

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api_me.json"
RATE_LIMIT = "100000000/min"  # never throttles, but every request still pays the limiter's Redis calls
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


@dataclass
class Started:
    """What this run started (PIDs for CPU accounting), filled in as the services come up."""

    postgres_pid: int | None = None
    redis_pid: int | None = None
    gunicorn_pid: int | None = None
    info: dict = field(default_factory=dict)


# --- processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def stop_pid(pid: int, sig: int, name: str, timeout: float = 30) -> None:
    """Send `sig` to one process we started, wait for it to exit, SIGKILL it after `timeout` seconds."""
    if not is_running(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            return
        time.sleep(0.05)
    print(f"  {name} (pid {pid}) did not stop in {timeout:.0f} s: killing it", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run_command(argv: list, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run of a fixed argument list (no shell), output captured."""
    return subprocess.run(argv, capture_output=True, check=False, **kwargs)  # noqa: S603


def spawn(argv: list, **kwargs) -> subprocess.Popen:
    """A long-running server in its own session, so Ctrl-C in the terminal reaches only us: we stop it."""
    return subprocess.Popen(argv, start_new_session=True, **kwargs)  # noqa: S603


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def pg_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl: Debian's newest /usr/lib/postgresql/<major>/bin, else PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    if pg_ctl := shutil.which("pg_ctl"):
        candidates.append(Path(pg_ctl).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise SystemExit("PostgreSQL server binaries (initdb, pg_ctl) not found")


def start_postgres(stack: contextlib.ExitStack, started: Started) -> str:
    """initdb + pg_ctl start a cluster in a new temp folder on a free port; returns its DATABASE_URL."""
    import psycopg

    bin_dir = pg_bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-pg-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    as_owner = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    initdb = [
        bin_dir / "initdb",
        "-D",
        folder / "data",
        "-A",
        "trust",
        "-U",
        "app",
        "-E",
        "UTF8",
        "--no-sync",
    ]
    if (result := run_command([*as_owner, *initdb, "--locale=C"])).returncode:
        raise SystemExit(f"initdb failed:\n{result.stdout.decode()}{result.stderr.decode()}")
    for _attempt in range(3):  # the free port can be taken between the check and the bind
        port = free_port()
        options = f"-p {port} -k {folder} -h 127.0.0.1 -F"  # -F: no fsync, throwaway data only
        pg_ctl = [bin_dir / "pg_ctl", "-D", folder / "data", "-l", folder / "server.log", "-w", "-t", "30"]
        # A new session: Ctrl-C in the terminal must not reach the server (we stop it ourselves).
        if run_command([*as_owner, *pg_ctl, "-o", options, "start"], start_new_session=True).returncode == 0:
            break
    else:
        raise SystemExit(f"PostgreSQL did not start:\n{tail(folder / 'server.log')}")
    started.postgres_pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    stack.callback(stop_pid, started.postgres_pid, signal.SIGINT, "PostgreSQL")  # SIGINT: fast shutdown
    with psycopg.connect(f"postgresql://app@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")
        started.info["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
    print(f"  PostgreSQL {started.info['postgres']} on 127.0.0.1:{port} (pid {started.postgres_pid})")
    return f"postgres://app@127.0.0.1:{port}/app"


def start_redis(stack: contextlib.ExitStack, started: Started) -> str:
    """redis-server without persistence on a free port; returns its URL."""
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-redis-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found")
    for _attempt in range(3):
        port = free_port()
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)]
        proc = spawn([binary, "--port", str(port), *options, "--logfile", str(folder / "redis.log")])
        stack.callback(stop_pid, proc.pid, signal.SIGTERM, "Redis")
        client = redis.Redis(port=port, socket_timeout=1)
        for _ in range(100):
            if proc.poll() is not None:
                break
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    started.redis_pid = proc.pid
                    started.info["redis"] = client.info("server")["redis_version"]
                    print(f"  Redis {started.info['redis']} on 127.0.0.1:{port} (pid {proc.pid})")
                    return f"redis://127.0.0.1:{port}/0"
            time.sleep(0.05)
        stop_pid(proc.pid, signal.SIGTERM, "Redis")
    raise SystemExit(f"Redis did not start:\n{tail(folder / 'redis.log')}")


def django_env(database_url: str, redis_url: str, var_dir: Path) -> dict[str, str]:
    """The environment of both the in-process Django and gunicorn."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(40),
        "HTTPS_ONLY": "false",
        "DEBUG": "false",
        "API_RATE_LIMIT": RATE_LIMIT,
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(var_dir),  # keep the checkout's var/ out of it
    }


def start_gunicorn(stack, started, env, workers, threads, folder: Path) -> tuple[str, str]:
    """gunicorn (gthread) on a free port in its own session; returns its base URL and the command line."""
    port = free_port()
    args = ["-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    args += ["--worker-class", "gthread", "--threads", str(threads), "--log-level", "warning"]
    log = folder / "gunicorn.log"
    with log.open("wb") as out:  # a file, not a pipe: nobody reads it during the run (4xx log a line each)
        proc = spawn(
            [sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    started.gunicorn_pid = proc.pid
    stack.callback(stop_pid, proc.pid, signal.SIGINT, "gunicorn")  # INT: quick shutdown; the run is over
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/api/v1/does-not-exist", timeout=2).status_code == 404:
                command = "gunicorn " + " ".join(args[2:])
                print(f"  {command} (pid {proc.pid})")
                return base, command
        time.sleep(0.1)
    raise SystemExit(f"gunicorn did not answer in 60 s:\n{tail(log)}")


# --- CPU accounting from /proc ------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of it and its reaped children) of one process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    # utime, stime, cutime, cstime: exited children (PostgreSQL backends, gunicorn workers) count too.
    return int(fields[1]), sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_cpu_seconds(root_pid: int | None) -> float:
    """CPU seconds used so far by a process and all its descendants (e.g. gunicorn and its workers)."""
    if root_pid is None:
        return 0.0
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))):
            stats[int(entry.name)] = stat
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy (not idle, not waiting for I/O) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def cpu_snapshot(started: Started) -> dict[str, float]:
    """CPU seconds so far of this process, of each server we started, and of the whole machine."""
    return {
        "client": time.process_time(),
        "gunicorn": tree_cpu_seconds(started.gunicorn_pid),
        "postgres": tree_cpu_seconds(started.postgres_pid),
        "redis": tree_cpu_seconds(started.redis_pid),
        "machine": machine_busy_seconds(),
    }


def cpu_percentages(before: dict, after: dict, seconds: float) -> dict[str, int]:
    """Per process group, in % of one core; `other` is what the rest of the machine used meanwhile."""
    used = {name: (after[name] - before[name]) / seconds * 100 for name in before}
    machine = used.pop("machine")
    return {**{k: round(v) for k, v in used.items()}, "other": round(machine - sum(used.values()))}


# --- in-process measurements --------------------------------------------------------------------------


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process with the bench environment, then migrate."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def create_key() -> str:
    """An organization, a custom-channel integration and an integration key, through the services."""
    from integrations import services as integration_services
    from integrations.models import Connector
    from organizations.models import Organization
    from tokens import services as key_services
    from tokens.choices import KeyKind

    suffix = secrets.token_hex(4)
    org = Organization.objects.create(name=f"Bench {suffix}", slug=f"bench-{suffix}")
    connector = Connector.objects.get(organization=None, key="custom-channel")
    integration = integration_services.create_integration(org, connector, "Bench shop")
    issued = key_services.issue_key(kind=KeyKind.INTEGRATION, name="Bench key", integration=integration)
    return issued.plaintext


@contextlib.contextmanager
def quiet_logging():
    """Send the root log handlers to /dev/null (4xx log a WARNING each): the cost is paid, the screen kept."""
    import logging

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    with open(os.devnull, "w") as sink:
        previous = [h.setStream(sink) for h in handlers]
        try:
            yield
        finally:
            for handler, stream in zip(handlers, previous, strict=True):
                handler.setStream(stream)


def sql_verb(sql: str) -> str:
    match = re.match(r"\s*(\w+)", sql)
    return match.group(1).upper() if match else "?"


def in_process(plaintext: str, endpoints: list[Endpoint], auth_calls: int, request_calls: int) -> dict:
    """authenticate() µs/call, and per endpoint: its queries and µs/request through Django's test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tokens import services as key_services

    key_services.authenticate(plaintext, "127.0.0.1")  # first use writes last_used_at
    with CaptureQueriesContext(connection) as captured:
        key_services.authenticate(plaintext, "127.0.0.1")
    # captured_queries slices the live log, which every request start clears: copy it at once.
    auth_queries = [sql_verb(q["sql"]) for q in captured.captured_queries]
    started = time.perf_counter()
    for _ in range(auth_calls):
        key_services.authenticate(plaintext, "127.0.0.1")
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


@dataclass
class ClientTally:
    """One load thread's results for the measured window."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    last_end: float = 0.0
    error_samples: list[str] = field(default_factory=list)


def _client_loop(client, endpoint, measure_from, until, stop, tally: ClientTally) -> None:
    """Repeat one request on one keep-alive connection; record those started inside the window."""
    while not stop.is_set():
        began = time.perf_counter()
        if began >= until:
            return
        try:
            status = client.get(endpoint.path).status_code
            problem = None if status == endpoint.status else f"HTTP {status}"
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        ended = time.perf_counter()
        if began >= measure_from:
            tally.last_end = ended
            if problem is None:
                tally.latencies.append(ended - began)
            else:
                tally.errors += 1
                if len(tally.error_samples) < 3:
                    tally.error_samples.append(problem)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def load(base, endpoint, plaintext, concurrency, warmup, seconds, started, redis_url) -> dict:
    """`concurrency` threads, one httpx connection each, for warmup + seconds; figures of the last `seconds`."""
    headers = {"Authorization": f"Bearer {plaintext}"} if endpoint.authenticated else {}
    stop = threading.Event()
    tallies = [ClientTally() for _ in range(concurrency)]
    clients = [
        httpx.Client(
            base_url=base,
            headers=headers,
            timeout=30,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        for _ in range(concurrency)
    ]
    now = time.perf_counter()
    measure_from, until = now + warmup, now + warmup + seconds
    threads = [
        threading.Thread(target=_client_loop, args=(c, endpoint, measure_from, until, stop, t), daemon=True)
        for c, t in zip(clients, tallies, strict=True)
    ]
    redis_client = redis.Redis.from_url(redis_url)
    try:
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_before = cpu_snapshot(started)
        redis_before = redis_client.info("stats")["total_commands_processed"]
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
        cpu_after = cpu_snapshot(started)
        redis_after = redis_client.info("stats")["total_commands_processed"]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=35)
        for client in clients:
            client.close()
        redis_client.close()
    last_end = max(t.last_end for t in tallies)
    elapsed = last_end - measure_from if last_end else seconds
    latencies = sorted(lat for t in tallies for lat in t.latencies)
    errors = sum(t.errors for t in tallies)
    done = len(latencies) + errors
    return {
        "path": endpoint.path,
        "status": endpoint.status,
        "note": endpoint.note,
        "requests": len(latencies),
        "errors": errors,
        "error_samples": [s for t in tallies for s in t.error_samples][:3],
        "seconds": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        # In % of one core (100 × os.cpu_count() is the whole machine); `other`: processes not ours.
        "cpu_pct": cpu_percentages(cpu_before, cpu_after, elapsed),
        # Minus the INFO call that closes the window; includes other users of a --reuse-env Redis.
        "redis_cmds_per_request": round((redis_after - redis_before - 1) / done, 2) if done else None,
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
    groups = ("client", "gunicorn", "postgres", "redis", "other")
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
        f"  tokens.services.authenticate(): {inproc['authenticate_us_per_call']:.1f} µs/call over "
        f"{inproc['authenticate_calls']} calls ({', '.join(inproc['authenticate_queries'])})"
    )
    print()
    me_queries = inproc["endpoints"]["me"]["queries"]
    print(f"Queries of one authenticated GET /api/v1/me: {len(me_queries)}")
    for index, query in enumerate(me_queries, 1):
        sql = " ".join(query["sql"].split())
        print(f"  {index}. {query['verb']:<6} {sql[:150]}{'…' if len(sql) > 150 else ''}")


def git_commit() -> str:
    """The checkout's short commit, with +dirty when files differ from it."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    commit = run_command([git, "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).stdout.strip()
    dirty = run_command([git, "status", "--porcelain"], cwd=ROOT, text=True).stdout.strip()
    return commit + ("+dirty" if dirty else "")


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
    parser.add_argument(
        "--reuse-env",
        action="store_true",
        help="use DATABASE_URL and REDIS_URL from the environment instead of starting PostgreSQL and Redis "
        "(the database is migrated and gets one more org, integration and key)",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"JSON results ({RESULTS.relative_to(ROOT)})"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    """Start the services, measure, and return the report (the stack stops what was started)."""
    started = Started()
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    print("Starting services…")
    if args.reuse_env:
        database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
        if not database_url or not redis_url:
            raise SystemExit("--reuse-env needs DATABASE_URL and REDIS_URL in the environment")
        print("  using DATABASE_URL and REDIS_URL from the environment")
    else:
        database_url = start_postgres(stack, started)
        redis_url = start_redis(stack, started)
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
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
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

    server_log = (folder / "gunicorn.log").read_text(errors="replace")
    problems = [line for line in server_log.splitlines() if "ERROR" in line or "Traceback" in line]
    if problems:
        print(f"gunicorn logged {len(problems)} errors; the last lines:\n{tail(folder / 'gunicorn.log')}")

    baselines = {e.name: results[e.name]["rps"] for e in BASELINES}
    fastest = max(baselines, key=baselines.get)
    me_rps = results["me"]["rps"]
    return {
        "meta": {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "command": "python bench/api_me.py " + " ".join(sys.argv[1:]),
            "server": server,
            "services": "from the environment (--reuse-env)" if args.reuse_env else "throwaway, started here",
            "postgres": started.info.get("postgres"),
            "redis": started.info.get("redis"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_before": loadavg_before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
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


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop cleanly when killed, too
    stack = contextlib.ExitStack()
    try:
        report = run(args, stack)
    except KeyboardInterrupt:
        print("\nInterrupted; nothing written.", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        print("Stopping what was started…")
        stack.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print_report(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.resolve().is_relative_to(ROOT) else args.output
    print(f"\nWrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
