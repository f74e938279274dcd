"""
What the benches share: a throwaway PostgreSQL and Redis (or DATABASE_URL and REDIS_URL with --reuse-env),
Django set up and migrated in-process, gunicorn on a free port, CPU accounting per process group from /proc,
a load loop of N client threads over a warm-up and a measured window, percentiles, and a main() that stops
everything it started (also on Ctrl-C or SIGTERM) and writes the report as JSON.

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
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
RATE_LIMIT = "100000000/min"  # never throttles, but every request still pays the limiter's Redis calls
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
    return subprocess.run(argv, capture_output=True, check=False, **kwargs)  # noqa: S603 - argv lists built here, no shell


def spawn(argv: list, **kwargs) -> subprocess.Popen:
    """A long-running server in its own session, so Ctrl-C in the terminal reaches only us: we stop it."""
    return subprocess.Popen(argv, start_new_session=True, **kwargs)  # noqa: S603 - argv lists built here, no shell


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


@dataclass
class PostgresServer:
    """A throwaway cluster this run started, which can be stopped and started again on the same port."""

    folder: Path
    port: int
    bin_dir: Path
    as_owner: list[str]
    started: Started
    url: str = ""

    @property
    def pid(self) -> int | None:
        return self.started.postgres_pid

    def _pg_ctl(self, *args) -> list:
        options = f"-p {self.port} -k {self.folder} -h 127.0.0.1 -F"  # -F: no fsync, throwaway data only
        pg_ctl = [self.bin_dir / "pg_ctl", "-D", self.folder / "data", "-l", self.folder / "server.log"]
        return [*self.as_owner, *pg_ctl, "-w", "-t", "60", "-o", options, *args]

    def _read_pid(self) -> None:
        self.started.postgres_pid = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])

    def start(self) -> bool:
        # A new session: Ctrl-C in the terminal must not reach the server (we stop it ourselves).
        if run_command(self._pg_ctl("start"), start_new_session=True).returncode:
            return False
        self._read_pid()
        return True

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are cut, nothing waits for clients), as pg_ctl stop -m fast."""
        if self.pid is not None:
            stop_pid(self.pid, signal.SIGINT, "PostgreSQL")

    def restart(self) -> None:
        """pg_ctl restart -m fast: every session is cut; same port and data, a new postmaster PID."""
        result = run_command(self._pg_ctl("restart", "-m", "fast"), start_new_session=True)
        if result.returncode:
            raise RuntimeError(f"pg_ctl restart failed:\n{tail(self.folder / 'server.log')}")
        self._read_pid()


def postgres_server(stack: contextlib.ExitStack, started: Started) -> PostgresServer:
    """initdb + pg_ctl start a cluster in a new temp folder on a free port, with a database `app`."""
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
        server = PostgresServer(folder, free_port(), bin_dir, as_owner, started)
        if server.start():
            break
    else:
        raise SystemExit(f"PostgreSQL did not start:\n{tail(folder / 'server.log')}")
    # The PID read when the callback runs: a restart gives the cluster a new postmaster.
    stack.callback(server.stop)
    with psycopg.connect(f"postgresql://app@127.0.0.1:{server.port}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")
        started.info["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
    print(f"  PostgreSQL {started.info['postgres']} on 127.0.0.1:{server.port} (pid {server.pid})")
    server.url = f"postgres://app@127.0.0.1:{server.port}/app"
    return server


def start_postgres(stack: contextlib.ExitStack, started: Started) -> str:
    """initdb + pg_ctl start a cluster in a new temp folder on a free port; returns its DATABASE_URL."""
    return postgres_server(stack, started).url


@dataclass
class RedisServer:
    """A redis-server without persistence this run started; it can be stopped and started on the same port."""

    folder: Path
    port: int
    started: Started
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 5) -> bool:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found")
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        log = ["--logfile", str(self.folder / "redis.log")]
        self.proc = spawn([binary, "--port", str(self.port), *options, *log])
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        self.started.redis_pid = self.proc.pid
                        self.started.info["redis"] = client.info("server")["redis_version"]
                        return True
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        return False

    def stop(self) -> None:
        """SIGTERM and wait: without persistence, whatever it held (queued messages, cache) is gone."""
        if self.proc is not None:
            stop_pid(self.proc.pid, signal.SIGTERM, "Redis")


def redis_server(stack: contextlib.ExitStack, started: Started) -> RedisServer:
    """redis-server without persistence on a free port."""
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-redis-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    for _attempt in range(3):
        server = RedisServer(folder, free_port(), started)
        if server.start():
            stack.callback(server.stop)  # whichever process runs on that port by then
            print(f"  Redis {started.info['redis']} on 127.0.0.1:{server.port} (pid {server.proc.pid})")
            return server
    raise SystemExit(f"Redis did not start:\n{tail(folder / 'redis.log')}")


def start_redis(stack: contextlib.ExitStack, started: Started) -> str:
    """redis-server without persistence on a free port; returns its URL."""
    return redis_server(stack, started).url


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


def start_gunicorn(stack, started, env, workers, threads, folder: Path) -> tuple[str, str]:
    """gunicorn (gthread) on a free port in its own session; returns its base URL and the command line."""
    port = free_port()
    args = ["-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py", "-b", f"127.0.0.1:{port}"]
    args += ["-w", str(workers)]
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
    argv = ["-A", "config", "worker", "-c", str(concurrency), "--prefetch-multiplier", "1", "-l", "warning"]
    log = folder / "worker.log"
    with log.open("wb") as out:
        proc = spawn(
            [sys.executable, "-m", "celery", *argv, "-n", name],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack.callback(stop_pid, proc.pid, signal.SIGTERM, "celery worker")  # warm shutdown
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"The celery worker exited with {proc.returncode}:\n{tail(log)}")
        if app.control.ping(destination=[name], timeout=0.5):
            command = "celery " + " ".join(argv)
            print(f"  {command} (pid {proc.pid})")
            return Worker(proc.pid, name, command, log)
    raise SystemExit(f"The celery worker did not answer a ping in 60 s:\n{tail(log)}")


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


class Supervised:
    """
    A long-running process (a Celery worker, beat) this run starts, SIGKILLs and starts again, as a supervisor
    would. Each start is its own session and process group, so a kill reaches the prefork children too; the
    log file is appended to across restarts. `cpu_spent` keeps the CPU seconds of the incarnations killed.
    """

    def __init__(self, name: str, argv: list, env: dict, log: Path):
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.cpu_spent = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> "Supervised":
        with self.log.open("ab") as out:
            self.proc = spawn(self.argv, cwd=ROOT, env={**os.environ, **self.env}, stdout=out, stderr=out)
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU of all incarnations so far: the killed ones, and the running one with its children."""
        return self.cpu_spent + (tree_cpu_seconds(self.pid) if self.alive() else 0.0)

    def kill(self) -> None:
        """SIGKILL to the whole process group, then reap the leader."""
        if self.proc is None:
            return
        self.cpu_spent += tree_cpu_seconds(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        """SIGKILL, then start again at once."""
        self.kill()
        self.start()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """`sig` to the leader (a warm shutdown), SIGKILL to the group after `timeout` or if children remain."""
        if self.proc is None:
            return
        stop_pid(self.proc.pid, sig, self.name, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # children the leader left behind, if any


def celery_argv(role: str, folder: Path, *, concurrency: int = 2, name: str = "") -> list:
    """`celery -A config worker|beat` as the benches run them: prefetch 1, database scheduler for beat."""
    argv = [sys.executable, "-m", "celery", "-A", "config", role, "-l", "warning"]
    if role == "worker":
        argv += ["-c", str(concurrency), "--prefetch-multiplier", "1", "-n", name]
        argv += ["--without-gossip", "--without-mingle"]  # restarts every 30 s: no peer chatter
    else:
        argv += ["--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
        argv += ["--pidfile", str(folder / "beat.pid")]
    return argv


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


CPU_GROUPS = ("client", "gunicorn", "postgres", "redis", "other")


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


# --- load ---------------------------------------------------------------------------------------------


@dataclass
class ClientTally:
    """One load thread's results for the measured window."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    last_end: float = 0.0
    error_samples: list[str] = field(default_factory=list)


# request(client, thread index) → None when the answer was the expected one, else a short description.
Request = Callable[[object, int], str | None]


def _client_loop(request, client, index, failures, measure_from, until, stop, tally: ClientTally) -> None:
    """Repeat one request on one client (connection); record those started inside the window."""
    while not stop.is_set():
        began = time.perf_counter()
        if began >= until:
            return
        try:
            problem = request(client, index)
        except failures as exc:
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


def run_load(
    clients: Sequence,
    request: Request,
    warmup: float,
    seconds: float,
    started: Started,
    *,
    failures: tuple[type[BaseException], ...] = (httpx.HTTPError,),
    probe: Callable[[], float] | None = None,
) -> dict:
    """
    One thread per client repeating `request` for warmup + seconds; figures of the last `seconds`: answers,
    errors (a wrong answer or one of `failures` raised), elapsed, latencies (sorted), CPU per process group,
    and the change of `probe()` (e.g. Redis' command counter) over the window.
    """
    stop = threading.Event()
    tallies = [ClientTally() for _ in clients]
    now = time.perf_counter()
    measure_from, until = now + warmup, now + warmup + seconds
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(request, client, index, failures, measure_from, until, stop, tally),
            daemon=True,
        )
        for index, (client, tally) in enumerate(zip(clients, tallies, strict=True))
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_before = cpu_snapshot(started)
        probe_before = probe() if probe else None
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
        cpu_after = cpu_snapshot(started)
        probe_after = probe() if probe else None
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=35)
    last_end = max(t.last_end for t in tallies)
    elapsed = last_end - measure_from if last_end else seconds
    latencies = sorted(lat for t in tallies for lat in t.latencies)
    return {
        "answers": len(latencies),
        "errors": sum(t.errors for t in tallies),
        "error_samples": [s for t in tallies for s in t.error_samples][:3],
        "elapsed": elapsed,
        "latencies": latencies,
        # In % of one core (100 × os.cpu_count() is the whole machine); `other`: processes not ours.
        "cpu_pct": cpu_percentages(cpu_before, cpu_after, elapsed),
        "probe_delta": probe_after - probe_before if probe else None,
    }


def load_figures(result: dict) -> dict:
    """The usual figures of a run_load result: count, errors, seconds, per second, p50 and p99 in ms."""
    latencies, elapsed = result["latencies"], result["elapsed"]
    return {
        "requests": result["answers"],
        "errors": result["errors"],
        "error_samples": result["error_samples"],
        "seconds": round(elapsed, 2),
        "rps": round(result["answers"] / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "cpu_pct": result["cpu_pct"],
    }


def httpx_clients(base: str, count: int, headers: dict | None = None) -> list[httpx.Client]:
    """`count` httpx clients with one keep-alive connection each."""
    return [
        httpx.Client(
            base_url=base,
            headers=headers or {},
            timeout=30,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        for _ in range(count)
    ]


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
