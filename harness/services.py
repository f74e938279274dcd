"""
Throwaway PostgreSQL clusters and redis-servers on free loopback ports, for the tests and the benches.

A PostgresCluster is initdb'd in a new temp folder (trust auth, user `app`, no fsync) and keeps its port, so
`stop()` and `start()` (or `restart()`) give clients the same address back; `pg_ctl` daemonizes the
postmaster, which is stopped through its data folder (its postmaster.pid). A RedisServer runs without
persistence on a port of its own, as a Proc: `stop()` loses its data, as an outage may.

Run as a program, it starts one of each for a command and stops both afterwards, whatever happened:

    python -m harness.services run -- CMD ARGS...   # CMD with DATABASE_URL, CELERY_BROKER_URL (Redis db 0)
                                                    # and REDIS_URL (db 1) set; exits with CMD's status
    python -m harness.services start                # starts both, prints `export` lines and how to stop
                                                    # them, and leaves them running
"""

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from harness.procs import HarnessError, Missing, Proc, free_port, run_command, tail


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
    raise Missing("PostgreSQL server binaries (initdb, pg_ctl) not found")


def _cluster_owner() -> list[str]:
    """How to run as the cluster's owner: initdb refuses to run as root, so `postgres` (or nobody) then."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
        return ["runuser", "-u", "postgres", "--"]
    except KeyError:
        return ["runuser", "-u", "nobody", "--"]


class PostgresCluster:
    """
    A PostgreSQL cluster of its own on a fixed free port. `init()` creates it, starts it and creates the
    database `app`; `settings` are extra server settings (-c name=value).
    """

    name = "postgres"

    def __init__(self, *, prefix: str = "switchyard-pg-", settings: dict | None = None):
        self.bin = pg_bin_dir()
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.as_owner = _cluster_owner()
        if self.as_owner:
            shutil.chown(self.folder, self.as_owner[2])
        self.port = free_port()
        self.settings = settings or {}
        self.log_path = self.folder / "server.log"
        self.running = False
        self.version = ""

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        options = f"-p {self.port} -k {self.folder} -h 127.0.0.1 -F"  # -F: no fsync, throwaway data only
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        argv = [self.bin / "pg_ctl", "-D", self.folder / "data", "-l", self.log_path, "-w", "-t", "60"]
        return run_command([*self.as_owner, *map(str, argv), "-o", options, *args], text=True, timeout=120)

    def init(self) -> "PostgresCluster":
        initdb = [self.bin / "initdb", "-D", self.folder / "data", "-A", "trust", "-U", "app", "-E", "UTF8"]
        done = run_command([*self.as_owner, *map(str, initdb), "--no-sync", "--locale=C"], text=True)
        if done.returncode:
            raise HarnessError(f"initdb failed:\n{done.stdout}{done.stderr}")
        for attempt in range(3):  # the free port can be taken between the check and the bind
            try:
                self.start()
                break
            except HarnessError:
                if attempt == 2:
                    raise
                self.port = free_port()
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
            self.version = conn.execute("SHOW server_version").fetchone()[0]
        return self

    def url(self, database: str = "app") -> str:
        return f"postgres://app@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID (a restart gives it a new one), while it runs."""
        try:
            return int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        done = self._pg_ctl("start")
        if done.returncode:
            raise HarnessError(f"PostgreSQL did not start:\n{done.stdout}{done.stderr}\n{self.tail()}")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast`: sessions are cut off, open transactions rolled back."""
        if not self.running:
            return
        done = self._pg_ctl("stop", "-m", mode)
        if done.returncode:
            raise HarnessError(f"PostgreSQL did not stop:\n{done.stdout}{done.stderr}\n{self.tail()}")
        self.running = False

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is cut; same port and data, a new postmaster PID."""
        done = self._pg_ctl("restart", "-m", "fast")
        if done.returncode:
            raise HarnessError(f"pg_ctl restart failed:\n{done.stdout}{done.stderr}\n{self.tail()}")
        self.running = True

    def destroy(self) -> None:
        """Stop it (whatever state it is in) and remove its folder."""
        with contextlib.suppress(Exception):
            self.stop("immediate" if self.running else "fast")
        shutil.rmtree(self.folder, ignore_errors=True)

    def tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)


class RedisServer:
    """redis-server without persistence on a fixed free port, its log in `log_dir` (else its own folder)."""

    def __init__(self, log_dir: Path | None = None, *, prefix: str = "switchyard-redis-"):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise Missing("redis-server not found")
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.log_dir = Path(log_dir) if log_dir else self.folder
        self.port = free_port()
        self.proc: Proc | None = None
        self.version = ""

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.alive() else None

    def _start_once(self, timeout: float) -> bool:
        argv = [self.binary, "--port", self.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.proc is None:
            self.proc = Proc(
                "redis", [*argv, "--dir", self.folder], env=dict(os.environ), log_dir=self.log_dir
            )
        self.proc.start()
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while self.proc.alive() and time.monotonic() < deadline:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        self.version = client.info("server")["redis_version"]
                        return True
                time.sleep(0.05)
        finally:
            client.close()
        self.proc.stop()
        return False

    def start(self, timeout: float = 30) -> None:
        """Start it (again, on the same port); up once it answers PING."""
        if self._start_once(timeout):
            return
        if self.proc.starts == 1:  # the first start: the free port may have been taken meanwhile
            for _attempt in range(2):
                self.port, self.proc = free_port(), None
                if self._start_once(timeout):
                    return
        raise HarnessError(f"redis-server did not start:\n{self.proc.tail()}")

    def stop(self) -> None:
        """SIGTERM and wait: without persistence, whatever it held (queued messages, cache) is gone."""
        if self.proc is not None:
            self.proc.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# --- python -m harness.services ----------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[harness.services] {message}", file=sys.stderr, flush=True)


def service_env(postgres: PostgresCluster, redis_server: RedisServer) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres.url(),
        "CELERY_BROKER_URL": redis_server.url(0),
        "REDIS_URL": redis_server.url(1),
    }


def run(command: list[str]) -> int:
    """PostgreSQL and Redis up, `command` run with their URLs, both stopped; `command`'s exit status."""
    postgres = redis_server = child = None

    def forward(signum, frame):
        # Ctrl-C reaches the command itself (same process group), which ends as it chooses; SIGTERM is
        # passed on. Either way the servers are stopped once it has exited.
        if child is None:
            raise KeyboardInterrupt
        if signum == signal.SIGTERM:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)  # a handler, not SIG_IGN: the command must not inherit "ignore"
    signal.signal(signal.SIGTERM, forward)
    try:
        postgres = PostgresCluster().init()
        redis_server = RedisServer()
        redis_server.start()
        env = service_env(postgres, redis_server)
        _say(
            f"PostgreSQL {postgres.url()} (pid {postgres.pid}), Redis {redis_server.url()} (pid {redis_server.pid})"
        )
        child = subprocess.Popen(command, env={**os.environ, **env})  # noqa: S603 - the caller's command
        return child.wait()
    except KeyboardInterrupt:
        return 130
    except HarnessError as exc:
        _say(f"ERROR: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if child is not None and child.poll() is None:
            child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=30)
        if redis_server is not None:
            redis_server.destroy()
        if postgres is not None:
            postgres.destroy()


def start() -> int:
    """PostgreSQL and Redis up and left running; prints their environment and how to stop them."""
    postgres = PostgresCluster().init()
    redis_server = RedisServer()
    redis_server.start()
    for name, value in service_env(postgres, redis_server).items():
        print(f"export {name}={value}")
    print(
        f"# stop: kill -INT {postgres.pid} {redis_server.pid}; rm -rf {postgres.folder} {redis_server.folder}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.services", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    runner = commands.add_parser("run", help="run a command against a throwaway PostgreSQL and Redis")
    runner.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    commands.add_parser("start", help="start both, print `export` lines, leave them running")
    args = parser.parse_args(argv)
    if args.action == "start":
        return start()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run: which command? (python -m harness.services run -- CMD ARGS...)")
    return run(command)


if __name__ == "__main__":
    sys.exit(main())
