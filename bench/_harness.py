"""
What the benches share: a throwaway PostgreSQL and Redis (or DATABASE_URL and REDIS_URL with --reuse-env),
Django set up and migrated in-process, gunicorn and Celery workers, and a main() that stops everything it
started (also on Ctrl-C or SIGTERM) and writes the report as JSON. The processes themselves are the
repository's one harness (harness/: free loopback ports, a process group each, stopped by their own PID);
the measuring — CPU per process group, the load loop, percentiles — is bench/_measure.py, re-exported here
for the benches that import it from this module.

Everything started is registered on a contextlib.ExitStack and stopped by its PID, never by name.
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
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for the harness package; appended, so bench/ keeps its place first

from _measure import (  # noqa: E402, F401 - the benches import these from here
    CLOCK_TICKS,
    CPU_GROUPS,
    cpu_percentages,
    cpu_snapshot,
    httpx_clients,
    load_figures,
    machine_busy_seconds,
    percentile,
    run_load,
    tree_cpu_seconds,
)

from harness.hub import BEAT_SCHEDULER, gunicorn_argv  # noqa: E402
from harness.hub import celery_argv as hub_celery_argv  # noqa: E402
from harness.procs import (  # noqa: E402, F401 - the benches import these from here
    PYTHON,
    HarnessError,
    Proc,
    free_port,
    is_running,
    run_command,
    spawn,
    stop_pid,
    tail,
)
from harness.services import PostgresCluster, RedisServer  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
RATE_LIMIT = "100000000/min"  # never throttles, but every request still pays the limiter's Redis calls


@dataclass
class Started:
    """What this run started (servers and PIDs for CPU accounting), filled in as the services come up."""

    postgres: PostgresCluster | None = None
    redis: RedisServer | None = None
    gunicorn_pid: int | None = None
    info: dict = field(default_factory=dict)

    @property
    def postgres_pid(self) -> int | None:
        return self.postgres.pid if self.postgres else None  # a restart gives it a new one

    @property
    def redis_pid(self) -> int | None:
        return self.redis.pid if self.redis else None  # so does a start after a stop


# --- services -----------------------------------------------------------------------------------------


def postgres_server(stack: contextlib.ExitStack, started: Started) -> PostgresCluster:
    """initdb + pg_ctl start a cluster in a new temp folder on a free port, with a database `app`."""
    server = PostgresCluster(prefix="switchyard-bench-pg-")
    stack.callback(server.destroy)
    server.init()
    started.postgres, started.info["postgres"] = server, server.version
    print(f"  PostgreSQL {server.version} on 127.0.0.1:{server.port} (pid {server.pid})")
    return server


def start_postgres(stack: contextlib.ExitStack, started: Started) -> str:
    """initdb + pg_ctl start a cluster in a new temp folder on a free port; returns its DATABASE_URL."""
    return postgres_server(stack, started).url()


def redis_server(stack: contextlib.ExitStack, started: Started) -> RedisServer:
    """redis-server without persistence on a free port."""
    server = RedisServer(prefix="switchyard-bench-redis-")
    stack.callback(server.destroy)
    server.start()
    started.redis, started.info["redis"] = server, server.version
    print(f"  Redis {server.version} on 127.0.0.1:{server.port} (pid {server.pid})")
    return server


def start_redis(stack: contextlib.ExitStack, started: Started) -> str:
    """redis-server without persistence on a free port; returns its URL."""
    return redis_server(stack, started).url(0)


def start_services(stack: contextlib.ExitStack, started: Started, reuse_env: bool) -> tuple[str, str]:
    """PostgreSQL and Redis: throwaway ones, or (reuse_env) those DATABASE_URL and REDIS_URL name."""
    print("Starting services…")
    if reuse_env:
        database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
        if not database_url or not redis_url:
            raise SystemExit("--reuse-env needs DATABASE_URL and REDIS_URL in the environment")
        print("  using DATABASE_URL and REDIS_URL from the environment")
        return database_url, redis_url
    return start_postgres(stack, started), start_redis(stack, started)


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
        "API_ANON_RATE_LIMIT": RATE_LIMIT,  # the /me-without-key reference, all from 127.0.0.1
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(var_dir),  # keep the checkout's var/ out of it
    }


# --- the hub's processes ------------------------------------------------------------------------------


def gunicorn_command(port: int, workers: int, threads: int) -> list[str]:
    """The benches' gunicorn: gthread workers, the repository's config/gunicorn.py, warnings only."""
    options = ["-w", str(workers), "--worker-class", "gthread", "--threads", str(threads)]
    return gunicorn_argv(port, *options, "--log-level", "warning")


def start_gunicorn(stack, started, env, workers, threads, folder: Path) -> tuple[str, str]:
    """gunicorn (gthread) on a free port in its own session; returns its base URL and the command line."""
    port = free_port()
    argv = gunicorn_command(port, workers, threads)
    # A file, not a pipe: nobody reads it during the run (4xx log a line each).
    proc = Proc("gunicorn", argv, env={**os.environ, **env}, log=folder / "gunicorn.log").start()
    started.gunicorn_pid = proc.pid
    stack.callback(proc.stop, signal.SIGINT, 30, group=False)  # INT: quick shutdown; the run is over
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SystemExit(f"gunicorn exited with {proc.popen.returncode}:\n{proc.tail(15)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/api/v1/does-not-exist", timeout=2).status_code == 404:
                command = "gunicorn " + " ".join(argv[3:])  # after `python -m gunicorn`
                print(f"  {command} (pid {proc.pid})")
                return base, command
        time.sleep(0.1)
    raise SystemExit(f"gunicorn did not answer in 60 s:\n{proc.tail(15)}")


def server_log_problems(folder: Path) -> list[str]:
    """The lines of gunicorn's log that report an error or a traceback; prints the log's tail if any."""
    server_log = (folder / "gunicorn.log").read_text(errors="replace")
    problems = [line for line in server_log.splitlines() if "ERROR" in line or "Traceback" in line]
    if problems:
        print(f"gunicorn logged {len(problems)} errors; the last lines:\n{tail(folder / 'gunicorn.log')}")
    return problems


@dataclass
class Worker:
    """A Celery worker this run started: its PID, node name (for ping/inspect), command line and log."""

    pid: int
    name: str
    command: str
    log: Path


def start_worker(stack, env: dict, folder: Path, concurrency: int, *, prefix: str = "bench") -> Worker:
    """`celery -A config worker -c N --prefetch-multiplier 1` with its own node name; up once it answers a ping."""
    from config.celery import app

    name = f"{prefix}-{secrets.token_hex(3)}@{socket.gethostname()}"
    options = ["-c", str(concurrency), "--prefetch-multiplier", "1", "-l", "warning"]
    proc = Proc(
        "worker",
        [*hub_celery_argv("worker", *options), "-n", name],
        env={**os.environ, **env},
        log=folder / "worker.log",
    ).start()
    stack.callback(proc.stop, signal.SIGTERM, 30, group=False)  # a warm shutdown
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SystemExit(f"The celery worker exited with {proc.popen.returncode}:\n{proc.tail(15)}")
        if app.control.ping(destination=[name], timeout=0.5):
            command = "celery -A config worker " + " ".join(options)
            print(f"  {command} (pid {proc.pid})")
            return Worker(proc.pid, name, command, proc.log_path)
    raise SystemExit(f"The celery worker did not answer a ping in 60 s:\n{proc.tail(15)}")


def worker_log_problems(log: Path | None) -> list[str]:
    """The lines of a worker's log that report an error or a traceback; prints the log's tail if any."""
    if log is None or not log.exists():
        return []
    problems = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if re.search(r"ERROR|CRITICAL|Traceback", line)
    ]
    if problems:
        print(f"The worker logged {len(problems)} errors; the last lines:\n{tail(log)}")
    return problems


class Supervised(Proc):
    """
    A long-running process (a Celery worker, beat) this run starts, SIGKILLs and starts again, as a supervisor
    would; the log file is appended to across restarts. `cpu_spent` keeps the CPU seconds of the incarnations
    killed.
    """

    def __init__(self, name: str, argv: list, env: dict, log: Path):
        super().__init__(name, argv, env={**os.environ, **env}, log=log)
        self.cpu_spent = 0.0

    @property
    def proc(self):
        """The running incarnation's Popen (its returncode once it has exited)."""
        return self.popen

    def cpu_seconds(self) -> float:
        """CPU of all incarnations so far: the killed ones, and the running one with its children."""
        return self.cpu_spent + (tree_cpu_seconds(self.pid) if self.alive() else 0.0)

    def kill(self) -> None:
        """SIGKILL to the whole process group, then reap the leader."""
        if self.popen is None:
            return
        self.cpu_spent += tree_cpu_seconds(self.popen.pid)
        self.kill_group()

    def restart(self) -> None:
        """SIGKILL, then start again at once."""
        self.kill()
        self.start()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """`sig` to the leader (a warm shutdown), SIGKILL to the group after `timeout` or if children remain."""
        super().stop(sig, timeout, group=False)


def celery_argv(role: str, folder: Path, *, concurrency: int = 2, name: str = "") -> list:
    """`celery -A config worker|beat` as the benches run them: prefetch 1, database scheduler for beat."""
    if role == "worker":
        options = ["-c", str(concurrency), "--prefetch-multiplier", "1", "-n", name]
        options += ["--without-gossip", "--without-mingle"]  # restarts every 30 s: no peer chatter
    else:
        options = [*BEAT_SCHEDULER, "--pidfile", str(folder / "beat.pid")]
    return hub_celery_argv(role, "-l", "warning", *options)


_PING = """
import sys, time
from celery import Celery
node, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
probe = Celery("bench-probe")
while time.monotonic() < deadline:
    try:
        if probe.control.ping(destination=[node], timeout=0.5):
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
"""


def celery_ping(broker_url: str, node: str, timeout: float = 60) -> bool:
    """Whether the worker `node` answers a ping on `broker_url` within `timeout`."""
    # In a process of its own: Celery takes $CELERY_BROKER_URL before any app's broker (its producer pool
    # too), and the caller's may name another broker (pytest's, say).
    argv = [sys.executable, "-c", _PING, node, str(timeout)]
    env = {**os.environ, "CELERY_BROKER_URL": broker_url}
    return run_command(argv, env=env, timeout=timeout + 30).returncode == 0


# --- in-process Django --------------------------------------------------------------------------------


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process with the bench environment, then migrate."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))  # first: bench/orders.py must not shadow the orders app
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


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


def verb_counts(queries: list[dict]) -> dict[str, int]:
    """{verb: how many} of a list of {"verb", …} in order of first appearance."""
    return dict(Counter(q["verb"] for q in queries))


# --- report and main ----------------------------------------------------------------------------------


def git_commit() -> str:
    """The checkout's short commit, with +dirty when files differ from it."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    commit = run_command([git, "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).stdout.strip()
    dirty = run_command([git, "status", "--porcelain"], cwd=ROOT, text=True).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_meta(script: str, started: Started, reuse_env: bool, server: str) -> dict:
    """The fields every report's meta starts with: when, commit, command, server, services and versions."""
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": f"python bench/{script} " + " ".join(sys.argv[1:]),
        "server": server,
        "services": "from the environment (--reuse-env)" if reuse_env else "throwaway, started here",
        "postgres": started.info.get("postgres"),
        "redis": started.info.get("redis"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def add_common_arguments(parser: argparse.ArgumentParser, results: Path, leaves: str) -> None:
    """--reuse-env and --output, as every bench takes them; `leaves`: what a run adds to a reused database."""
    parser.add_argument(
        "--reuse-env",
        action="store_true",
        help="use DATABASE_URL and REDIS_URL from the environment instead of starting PostgreSQL and Redis "
        f"(the database is migrated and {leaves})",
    )
    parser.add_argument(
        "--output", type=Path, default=results, help=f"JSON results ({results.relative_to(ROOT)})"
    )


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, contextlib.ExitStack], dict],
    print_report: Callable[[dict], None],
) -> int:
    """run() with an ExitStack that stops what it started (also on Ctrl-C and SIGTERM), print, write JSON."""
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop cleanly when killed, too
    stack = contextlib.ExitStack()
    try:
        report = run(args, stack)
    except KeyboardInterrupt:
        print("\nInterrupted; nothing written.", file=sys.stderr)
        return 130
    except HarnessError as exc:  # a server that did not start: its log's tail says why
        raise SystemExit(str(exc)) from None
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
