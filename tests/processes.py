"""
Real processes for the end-to-end tests (tests/e2e_journey, tests/faults): a hub made of gunicorn, a Celery
worker and Celery beat on a database and Redis of its own, throwaway PostgreSQL clusters and redis-servers a
test may stop and start, the sample connectors of examples/ as subprocesses, and webhook receivers in this
process. Every process runs in its own process group and is stopped (SIGTERM, then SIGKILL) by its own id,
whatever happened; the logs of the hub's processes are attached to the report of a failing test, and a test
after which they hold a key or signing secret the Hub handed out fails (a conftest imports
`pytest_runtest_makereport` and `_log_mark` from here to get that).
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = ROOT / ".venv" / "bin"
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # the receivers here verify with the examples' own _connector

START_TIMEOUT = 90  # seconds for a process to come up on a loaded two-core machine
STOP_TIMEOUT = 15
HUB_PROCESSES = ("gunicorn", "worker", "beat", "postgres", "redis")

_started: list["Proc"] = []  # every process started here, in order, for failure reports
_secrets: dict[str, str] = {}  # what each is → a key or signing secret the Hub handed out (see _log_mark)
_looked: dict["Proc", int] = {}  # how much of each hub process's log secrets_in_logs has read


# --- processes -----------------------------------------------------------------------------------------


class Proc:
    """
    A subprocess in its own process group with its output in a log file. With `json_lines`, stdout is read
    by a thread that keeps each JSON line as an event (the examples' log format) and copies it to the log.
    """

    def __init__(self, name: str, argv: list[str], *, env: dict, log_dir: Path, json_lines: bool = False):
        self.name, self.argv, self.env, self.json_lines = name, argv, env, json_lines
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.events: list[dict] = []
        self.changed = threading.Condition()
        self.popen: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.eof = False  # its stdout ended (json_lines)
        self.stopped = False

    def start(self) -> "Proc":
        self._log = open(self.log_path, "w", buffering=1)  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.json_lines else self._log,
            stderr=self._log if self.json_lines else subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the whole group is signalled, never by name
        )
        _started.append(self)
        if self.json_lines:
            self.reader = threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True)
            self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.popen.stdout:
            self._log.write(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.changed:
                self.events.append(event)
                self.changed.notify_all()
        with self.changed:
            self.eof = True
            self.changed.notify_all()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(self.popen.pid, sig)  # the group this process leads (start_new_session)

    def kill_group(self) -> None:
        """SIGKILL to the whole process group (a prefork worker and its children), then reap the leader."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM to the group; SIGKILL to it if it has not exited within STOP_TIMEOUT seconds."""
        if self.popen is None or self.stopped:
            return
        self.stopped = True
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._log.write(f"\n[e2e] {self.name} did not stop in {STOP_TIMEOUT} s: SIGKILL\n")
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=STOP_TIMEOUT)
        self._signal_group(signal.SIGKILL)  # children the leader left behind, if any
        if self.reader is not None:
            self.reader.join(timeout=5)  # the rest of its output, before the pipe and the log close
        if self.popen.stdout:
            self.popen.stdout.close()
        self._log.close()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 150) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for_text(self, needle: str, timeout: float = START_TIMEOUT, *, after: int = 0) -> None:
        """Wait until the log has `needle` (past its first `after` characters)."""
        deadline = time.monotonic() + timeout
        while needle not in self.text()[after:]:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {needle!r} within {timeout} s:\n{self.tail()}")
            time.sleep(0.2)

    def wait_for(self, event: str, timeout: float = 30.0, **fields) -> dict:
        """The first JSON event named `event` whose fields equal `fields`; fails on timeout or a "fatal"."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for item in self.events:
                    if item.get("event") == event and all(item.get(k) == v for k, v in fields.items()):
                        return item
                    if item.get("event") == "fatal":
                        raise AssertionError(f"{self.name} failed: {item}")
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError(
                        f"{self.name}: no {event} {fields} within {timeout} s (alive: {self.alive()}):\n"
                        + self.tail()
                    )
                self.changed.wait(min(left, 0.5))

    def matching(self, event: str, **fields) -> list[dict]:
        with self.changed:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- throwaway servers a test may stop and start ----------------------------------------------------------


def _pg_bin_dir() -> Path:
    """initdb and pg_ctl: Debian's newest /usr/lib/postgresql/<major>/bin, else the PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    if pg_ctl := shutil.which("pg_ctl"):
        candidates.append(Path(pg_ctl).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")


class PostgresCluster:
    """
    A PostgreSQL cluster of its own (initdb in a temp folder, trust auth, user `app`, no fsync) on a fixed
    free port, so `stop()` and `start()` give clients the same address back. It runs as `postgres` when we
    are root (initdb refuses root). `pg_ctl` daemonizes the postmaster: it is stopped by its data folder.
    """

    def __init__(self):
        self.bin = _pg_bin_dir()
        self.folder = Path(tempfile.mkdtemp(prefix="switchyard-faults-pg-"))
        self.port = free_port()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.log_path = self.folder / "server.log"
        self.name = "postgres"
        self.running = False

    def _run(self, *argv, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_owner, *map(str, argv)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
        )

    def init(self) -> "PostgresCluster":
        done = self._run(
            self.bin / "initdb", "-D", self.folder / "data", "-A", "trust", "-U", "app", "-E", "UTF8",
            "--no-sync", "--locale=C",
        )  # fmt: skip
        if done.returncode:
            raise AssertionError(f"initdb failed:\n{done.stdout}{done.stderr}")
        self.start()
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        return self

    def url(self, database: str = "app") -> str:
        return f"postgres://app@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -h 127.0.0.1 -F -c max_connections=200"
        done = self._run(
            self.bin / "pg_ctl", "-D", self.folder / "data", "-l", self.log_path, "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip
        if done.returncode:
            raise AssertionError(f"PostgreSQL did not start:\n{done.stdout}{done.stderr}\n{self.tail()}")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast`: sessions are cut off, open transactions rolled back."""
        if not self.running:
            return
        done = self._run(
            self.bin / "pg_ctl", "-D", self.folder / "data", "-m", mode, "-w", "-t", "60", "stop"
        )
        if done.returncode:
            raise AssertionError(f"PostgreSQL did not stop:\n{done.stdout}{done.stderr}\n{self.tail()}")
        self.running = False

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class RedisServer:
    """redis-server without persistence on a fixed free port: `stop()` loses its data, as an outage may."""

    def __init__(self, log_dir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not found")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="switchyard-faults-redis-"))
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc_args = {"argv": [*argv, "--dir", str(self.folder)], "log_dir": log_dir}
        self.proc: Proc | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import redis

        self.proc = Proc("redis", env=dict(os.environ), **self.proc_args).start()
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    client.close()
                    return
            if not self.proc.alive() or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start:\n{self.proc.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# --- failure reports -----------------------------------------------------------------------------------


_FIRST_OWN = pytest.StashKey[int]()


def secrets_in_logs() -> list[str]:
    """
    Which secret the Hub handed out (API keys, whole or their secret part; webhook signing secrets) is in
    which hub process's log since the last look: none may be, whatever a test sent (issue 14, "no secret in
    any log"). Each log is read from where the last look ended, so a leak is told once, by its own test.
    """
    forms = {}
    for what, secret in _secrets.items():
        forms[secret] = what
        if (parts := secret.split("_", 2)) and parts[0] == "sy" and len(parts) == 3:
            forms[parts[2]] = f"{what} (its secret part)"
    found = []
    for proc in _started:
        if proc.name not in HUB_PROCESSES:
            continue
        text = proc.text()
        # From a little before the last look's end: a secret written across two looks is found too.
        start = max(_looked.get(proc, 0) - 200, 0)
        _looked[proc] = len(text)
        found += [
            f"{what} in the {proc.name} log ({proc.log_path})"
            for form, what in forms.items()
            if form in text[start:]
        ]
    return found


@pytest.fixture(autouse=True)
def _log_mark(request):
    """
    Remember which processes were started before this test: the hub's are shown with it, the rest not.
    After the test, no secret the hub handed out may be in its processes' logs.
    """
    request.node.stash[_FIRST_OWN] = len(_started)
    yield
    if leaked := secrets_in_logs():
        pytest.fail(f"secrets in the hub's logs: {leaked}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    first_own = item.stash.get(_FIRST_OWN, 0)
    # The hub's current processes (a restarted worker is the newest of its name), then the test's own.
    latest = {p.name: p for p in _started if p.name in HUB_PROCESSES}
    shown = list(latest.values()) + [p for p in _started[first_own:] if p not in latest.values()]
    for proc in shown:
        state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
        report.sections.append((f"{proc.name} (pid {proc.pid}, {state}) log", proc.tail()))


# --- the hub -------------------------------------------------------------------------------------------


@dataclass
class Hub:
    url: str
    env: dict
    log_dir: Path
    keys: dict[str, str] = field(default_factory=dict)  # integration name → key
    integrations: dict[str, int] = field(default_factory=dict)  # integration name → id
    procs: dict[str, Proc] = field(default_factory=dict)
    admin: tuple[str, str] = ("", "")  # the org admin's login (e-mail, password), for browser tests
    port: int = 0

    def manage(self, *args: str, timeout: float = 120) -> str:
        """`manage.py ARGS` against the hub's database; its stdout (fails with its output if it fails)."""
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode:
            raise AssertionError(
                f"manage.py {args[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def api(self, name: str, timeout: float = 15) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.keys[name]}"},
            timeout=timeout,
        )

    def start(self, name: str, argv: list[str], env: dict | None = None) -> Proc:
        proc = Proc(name, argv, env={**self.env, **(env or {})}, log_dir=self.log_dir).start()
        self.procs[name] = proc
        return proc

    def start_gunicorn(self) -> Proc:
        return self.start(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "config.wsgi",
                "-c",
                str(ROOT / "config" / "gunicorn.py"),  # the access log format of every deployment
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                "2",
                "--access-logfile",
                "-",
                "--graceful-timeout",
                "5",
            ],
        )

    def start_worker(self, env: dict | None = None) -> Proc:
        return self.start(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                "-l",
                "info",
                "-c",
                "2",
                "-n",
                f"e2e-{uuid.uuid4().hex[:8]}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
        )

    def start_beat(self) -> Proc:
        return self.start(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "beat",
                "-l",
                "info",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
            ],
        )

    def start_processes(self) -> None:
        """gunicorn, a worker and beat, each up."""
        self.start_gunicorn()
        self.start_worker()
        self.start_beat()
        self.wait_for_http()
        self.procs["worker"].wait_for_text(" ready.")
        self.procs["beat"].wait_for_text("beat: Starting")

    def wait_for_http(self) -> None:
        gunicorn = self.procs["gunicorn"]
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(self.url + "/api/v1/me", timeout=5).status_code == 401:
                    return
            except httpx.TransportError:
                pass
            if not gunicorn.alive():
                raise AssertionError(f"gunicorn exited ({gunicorn.popen.returncode}):\n{gunicorn.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the API did not answer within {START_TIMEOUT} s:\n{gunicorn.tail()}")
            time.sleep(0.3)

    def setup_organization(
        self, slug: str, integrations: list[tuple[str, str]], *, first: str = "", then: str = ""
    ) -> None:
        """
        An organization with an admin, the (name, connector) integrations and their keys, an org key; the
        code `first` runs before, `then` after, in the same process.
        """
        # The support commands in one process (each manage.py start costs seconds here); call_command parses
        # their arguments as the command line would, and the key is read from the last line of output.
        self.admin = (f"admin@{slug}.example", secrets.token_urlsafe(16))
        given = f"SLUG = {slug!r}\nADMIN = {self.admin[0]!r}\nPASSWORD = {self.admin[1]!r}\n"
        given += f"INTEGRATIONS = {integrations!r}\n"
        code = first + given + SETUP + then
        result = json.loads(self.manage("shell", "-c", code, timeout=300).strip().splitlines()[-1])
        self.keys, self.integrations = result["keys"], result["integrations"]
        _secrets.update({f"the {slug} {name} key": key for name, key in self.keys.items()})

    def subscribe(self, name: str, url: str, events: list[str]) -> dict:
        with self.api(name) as api:
            answer = api.post("/webhooks", json={"url": url, "events": events})
        assert answer.status_code == 201, answer.text
        subscription = answer.json()
        _secrets[f"the signing secret of {name}'s webhook {subscription['id']}"] = subscription["secret"]
        return subscription

    def push_order(self, name: str, external_id: str, lines: list[dict]) -> dict:
        with self.api(name) as api:
            answer = api.post(
                "/orders", json=order_body(external_id, lines), headers={"Idempotency-Key": str(uuid.uuid4())}
            )
        assert answer.status_code == 201, answer.text
        return answer.json()

    def deliveries(self, subscription_id: str, settle: float = 15.0) -> list[dict]:
        """The subscription's WebhookDelivery rows, once none is still owed (or after `settle` seconds)."""
        code = f"""
import json, time
from integrations.models import WebhookDelivery
deadline = time.monotonic() + {settle}
while True:
    rows = list(WebhookDelivery.objects.filter(subscription_id={int(subscription_id)}).order_by("pk")
                .values("event_id", "event_type", "status", "attempts"))
    if (rows and all(r["status"] in ("succeeded", "dead") for r in rows)) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print(json.dumps(rows))
"""
        return json.loads(self.shell(code).strip().splitlines()[-1])


def order_body(external_id: str, lines: list[dict]) -> dict:
    return {
        "external_id": external_id,
        "number": f"#{external_id}",
        "currency": "USD",
        "customer": {"name": "E2E Customer", "email": "e2e@example.com"},
        "shipping_address": {"name": "E2E", "line1": "1 Test St", "city": "X", "country": "US"},
        "lines": lines,
    }


SETUP = """
import io, json
from django.core.management import call_command

def run(*argv):
    out = io.StringIO()
    call_command(*argv, stdout=out)
    return out.getvalue().strip().splitlines()

result = {"keys": {}, "integrations": {}}
run("create_org", SLUG, "--name", SLUG.upper(), "--admin-email", ADMIN, f"--admin-password={PASSWORD}")
for name, connector in INTEGRATIONS:
    lines = run("register_integration", "--org", SLUG, "--connector", connector, "--name", name)
    result["integrations"][name] = int(lines[0].split()[2])  # "Registered integration <id> ..."
    result["keys"][name] = lines[-1]  # the key, alone on the last line
lines = run("issue_key", "--org", SLUG, "--user", ADMIN, "--grants", "products:read,products:write")
result["keys"]["admin"] = lines[-1]
print(json.dumps(result))
"""  # (code given as `then` runs after the print: its output must not follow on the last line)


def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        pytest.skip("the end-to-end tests need DATABASE_URL on PostgreSQL (make test exports one)")
    return url


def redis_base() -> str:
    for name in ("CELERY_BROKER_URL", "REDIS_URL"):
        url = os.environ.get(name, "")
        if url.startswith("redis://"):
            return url
    pytest.fail("the end-to-end tests need CELERY_BROKER_URL or REDIS_URL on Redis (make test exports them)")


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def admin_connection(url: str):
    """A connection to the server for CREATE/DROP DATABASE: its `postgres` database, else DATABASE_URL's own."""
    import psycopg

    try:
        return psycopg.connect(with_path(url, "/postgres"), autocommit=True)
    except psycopg.OperationalError:
        return psycopg.connect(url, autocommit=True)


def flush_redis(redis_urls: list[str]) -> None:
    import redis

    for url in redis_urls:
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


def hub_env(database_url: str, broker_url: str, cache_url: str, var_dir: Path, **extra: str) -> dict:
    """The environment of the hub's processes (and of `manage.py` run against it)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "REDIS_URL": cache_url,
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "HTTPS_ONLY": "false",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def stop_all_started() -> None:
    """Stop every process started here, newest first (a killed worker among them is reaped)."""
    for proc in reversed(_started):
        proc.stop()


@contextlib.contextmanager
def hub_on_own_database(log_dir: Path, name: str, redis_dbs: tuple[int, int], **env: str):
    """
    A Hub (not started) on a new, migrated database `<name>_<random>` of the suite's PostgreSQL and the Redis
    db numbers `redis_dbs` (broker, cache), flushed. On leaving: every process started here is stopped, the
    database dropped and both Redis dbs flushed.
    """
    admin_url = postgres_url()
    base = redis_base()
    database = f"{name}_{secrets.token_hex(6)}"
    broker_url, cache_url = (with_path(base, f"/{n}") for n in redis_dbs)
    port = free_port()
    environment = hub_env(with_path(admin_url, f"/{database}"), broker_url, cache_url, log_dir / "var", **env)
    hub = Hub(url=f"http://127.0.0.1:{port}", env=environment, log_dir=log_dir, port=port)
    with admin_connection(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        flush_redis([broker_url, cache_url])
        hub.manage("migrate", "--noinput", timeout=300)
        yield hub
    finally:
        stop_all_started()
        with admin_connection(admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        flush_redis([broker_url, cache_url])


# --- connectors and receivers --------------------------------------------------------------------------


@pytest.fixture
def connectors(hub):
    """`connectors.start("sample_3pl.py", *args)`: a sample connector against the hub, stopped after the test."""
    started: list[Proc] = []

    class Connectors:
        def start(self, script: str, *args: str) -> Proc:
            proc = Proc(
                script.removesuffix(".py"),
                [PYTHON, str(EXAMPLES / script), "--hub", hub.url, *args],
                env=hub.env,
                log_dir=hub.log_dir,
                json_lines=True,
            ).start()
            started.append(proc)
            return proc

    yield Connectors()
    for proc in started:
        proc.stop()
    for proc in started:  # a clean exit on SIGTERM is part of the examples' contract
        assert proc.popen.returncode == 0, f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}"


@dataclass
class Received:
    at: float  # time.monotonic()
    webhook_id: str
    verified: bool
    body: bytes
    status: int = 0
    held: bool = False  # held open until release(): its answer may never have been read

    @property
    def data(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """
    A webhook receiver in this process that records every request and verifies it with the examples'
    `_connector.verify`. `answers` are (status, headers) used one per request, then `default`. With
    `hold_first`, the first request of each webhook-id is held open until `release()` (after it, none is).
    """

    def __init__(self, answers=(), *, hold_first: bool = False, default: tuple[int, dict] = (200, {})):
        self.secret = ""
        self.answers = list(answers)
        self.default = default
        self.hold_first = hold_first
        self.requests: list[Received] = []
        self.changed = threading.Condition()
        self.released = threading.Event()

    def __call__(self, request):
        from _connector import Reply, WebhookVerificationError, verify

        try:
            verify(self.secret, request.headers, request.body)
            verified = True
        except WebhookVerificationError:
            verified = False
        item = Received(time.monotonic(), request.headers.get("webhook-id", ""), verified, request.body)
        with self.changed:
            first = all(r.webhook_id != item.webhook_id for r in self.requests)
            self.requests.append(item)
            item.held = self.hold_first and first and not self.released.is_set()
            # A held request is answered 200 once released (read by nobody: the worker is killed meanwhile).
            answer = (200, {}) if item.held else self.answers.pop(0) if self.answers else self.default
            item.status = answer[0]
            self.changed.notify_all()
        if item.held:
            self.released.wait(60)  # the hub's worker is killed meanwhile: nobody reads this answer
        return Reply(answer[0], {"ok": answer[0] < 300}, dict(answer[1]))

    def release(self) -> None:
        self.released.set()

    def wait_for(self, count: int, timeout: float, where: Callable[[Received], bool] = lambda r: True):
        deadline = time.monotonic() + timeout
        with self.changed:
            while len([r for r in self.requests if where(r)]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} requests expected within {timeout} s, got {self.requests}")
                self.changed.wait(left)
            return [r for r in self.requests if where(r)]


@pytest.fixture
def receivers():
    """`receivers.start(Receiver(...))` serves it at <url>/hook on 127.0.0.1 until the test ends."""
    from _connector import JsonServer

    servers = []

    class Receivers:
        def start(self, receiver: Receiver) -> str:
            server = JsonServer("127.0.0.1:0", {("POST", "/hook"): receiver}).start()
            servers.append((server, receiver))
            return server.url + "/hook"

    yield Receivers()
    for server, receiver in servers:
        receiver.release()
        server.stop()
