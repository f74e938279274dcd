"""
The end-to-end journey's machinery: a hub made of real processes — gunicorn, a Celery worker and Celery
beat — on its own PostgreSQL database and its own Redis db numbers, the sample connectors of examples/ as
subprocesses, and receivers in this process. Every process runs in its own process group and is stopped
(SIGTERM, then SIGKILL) by its own id in teardown, whatever happened; the logs of all of them are attached
to the report of a failing test.

Needs DATABASE_URL on PostgreSQL (skipped otherwise) and CELERY_BROKER_URL or REDIS_URL on Redis, as
`make test` exports them (scripts/test.sh).
"""

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = ROOT / ".venv" / "bin"
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # the receivers here verify with the examples' own _connector

# Redis db numbers of the hub under test: the rest of the suite uses 0 (broker) and 1 (cache).
REDIS_DBS = tuple(int(n) for n in os.environ.get("E2E_REDIS_DBS", "5,6").split(","))
LEASE = 5  # WEBHOOK_DELIVERY_LEASE: seconds before a killed worker's claimed delivery is due again
START_TIMEOUT = 90  # seconds for a process to come up on a loaded two-core machine
STOP_TIMEOUT = 15
HUB_PROCESSES = ("gunicorn", "worker", "beat")

PRODUCTS = [
    {"sku": "E2E-TEE", "name": "E2E tee", "price": "12.50"},
    {"sku": "E2E-MUG", "name": "E2E mug", "price": "8.00"},
]

_started: list["Proc"] = []  # every process started here, in order, for failure reports


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

    def wait_for_text(self, needle: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
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


# --- failure reports -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _log_mark(request):
    """Remember which processes were started before this test: the hub's are shown with it, the rest not."""
    request.node.stash[_FIRST_OWN] = len(_started)
    yield


_FIRST_OWN = pytest.StashKey[int]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    first_own = item.stash.get(_FIRST_OWN, 0)
    shown = [p for p in _started if p.name in HUB_PROCESSES]
    shown += [p for p in _started[first_own:] if p not in shown]
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

    def manage(self, *args: str, timeout: float = 120) -> str:
        """`manage.py ARGS` against the e2e database; its stdout (fails with its output if it fails)."""
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

    def api(self, name: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.keys[name]}"},
            timeout=15,
        )

    def start(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(name, argv, env=self.env, log_dir=self.log_dir).start()
        self.procs[name] = proc
        return proc

    def start_worker(self) -> Proc:
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
        )

    def subscribe(self, name: str, url: str, events: list[str]) -> dict:
        with self.api(name) as api:
            answer = api.post("/webhooks", json={"url": url, "events": events})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def push_order(self, name: str, external_id: str, lines: list[dict]) -> dict:
        body = {
            "external_id": external_id,
            "number": f"#{external_id}",
            "currency": "USD",
            "customer": {"name": "E2E Customer", "email": "e2e@example.com"},
            "shipping_address": {"name": "E2E", "line1": "1 Test St", "city": "X", "country": "US"},
            "lines": lines,
        }
        with self.api(name) as api:
            answer = api.post("/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
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


def _postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        pytest.skip("the end-to-end journey needs DATABASE_URL on PostgreSQL (make test exports one)")
    return url


def _redis_base() -> str:
    for name in ("CELERY_BROKER_URL", "REDIS_URL"):
        url = os.environ.get(name, "")
        if url.startswith("redis://"):
            return url
    pytest.fail(
        "the end-to-end journey needs CELERY_BROKER_URL or REDIS_URL on Redis (make test exports them)"
    )


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def _admin_connection(url: str):
    """A connection to the server for CREATE/DROP DATABASE: its `postgres` database, else DATABASE_URL's own."""
    import psycopg

    try:
        return psycopg.connect(_with_path(url, "/postgres"), autocommit=True)
    except psycopg.OperationalError:
        return psycopg.connect(url, autocommit=True)


def _flush(redis_urls: list[str]) -> None:
    import redis

    for url in redis_urls:
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


SETUP = """
import io, json
from django.core.management import call_command

def run(*argv):
    out = io.StringIO()
    call_command(*argv, stdout=out)
    return out.getvalue().strip().splitlines()

result = {"keys": {}, "integrations": {}}
run("create_org", "e2e", "--name", "E2E", "--admin-email", ADMIN, "--admin-password", PASSWORD)
for name, connector in INTEGRATIONS:
    lines = run("register_integration", "--org", "e2e", "--connector", connector, "--name", name)
    result["integrations"][name] = int(lines[0].split()[2])  # "Registered integration <id> ..."
    result["keys"][name] = lines[-1]  # the key, alone on the last line
lines = run("issue_key", "--org", "e2e", "--user", ADMIN, "--grants", "products:read,products:write")
result["keys"]["admin"] = lines[-1]
print(json.dumps(result))
"""

INTEGRATIONS = [
    ("Shop", "custom-channel"),
    ("Warehouse", "custom-3pl"),
    ("Flaky shop", "custom-channel"),
    ("Stalled shop", "custom-channel"),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """
    The hub as real processes on a database and Redis db numbers of its own: migrated, an organization with
    the integrations of INTEGRATIONS and their keys, the products of PRODUCTS; gunicorn, worker and beat up.
    """
    admin_url = _postgres_url()
    redis_base = _redis_base()
    tmp = tmp_path_factory.mktemp("e2e")
    database = f"e2e_{secrets.token_hex(6)}"
    database_url = _with_path(admin_url, f"/{database}")
    broker_url, cache_url = (_with_path(redis_base, f"/{n}") for n in REDIS_DBS)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "REDIS_URL": cache_url,
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "HTTPS_ONLY": "false",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "VAR_DIR": str(tmp / "var"),
        "WEBHOOK_DELIVERY_LEASE": str(LEASE),
        "PYTHONUNBUFFERED": "1",
    }
    hub = Hub(url=f"http://127.0.0.1:{port}", env=env, log_dir=tmp)

    with _admin_connection(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        _flush([broker_url, cache_url])
        hub.manage("migrate", "--noinput", timeout=300)
        # The support commands in one process (each manage.py start costs seconds here); call_command parses
        # their arguments as the command line would, and the key is read from the last line of output.
        hub.admin = ("admin@e2e.example", secrets.token_urlsafe(16))
        given = f"ADMIN = {hub.admin[0]!r}\nPASSWORD = {hub.admin[1]!r}\n"
        given += f"INTEGRATIONS = {INTEGRATIONS!r}\n"
        result = json.loads(hub.shell(given + SETUP).strip().splitlines()[-1])
        hub.keys, hub.integrations = result["keys"], result["integrations"]

        hub.start(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "config.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "--access-logfile",
                "-",
                "--graceful-timeout",
                "5",
                "--no-control-socket",
            ],
        )
        hub.start_worker()
        hub.start(
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
        _wait_for_http(hub)
        hub.procs["worker"].wait_for_text(" ready.")
        hub.procs["beat"].wait_for_text("beat: Starting")

        with hub.api("admin") as api:
            answer = api.post("/products/bulk", json={"products": PRODUCTS})
            assert answer.status_code == 200, answer.text
        for name in ("Flaky shop", "Stalled shop"):  # the samples do their own handshake; these are ours
            with hub.api(name) as api:
                assert api.post("/integration/connect").status_code == 200
        yield hub
    finally:
        for proc in reversed(_started):  # the hub's, a killed worker among them (connectors are stopped)
            proc.stop()
        with _admin_connection(admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        _flush([broker_url, cache_url])


def _wait_for_http(hub: Hub) -> None:
    gunicorn = hub.procs["gunicorn"]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if httpx.get(hub.url + "/api/v1/me", timeout=5).status_code == 401:
                return
        except httpx.TransportError:
            pass
        if not gunicorn.alive():
            raise AssertionError(f"gunicorn exited ({gunicorn.popen.returncode}):\n{gunicorn.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the API did not answer within {START_TIMEOUT} s:\n{gunicorn.tail()}")
        time.sleep(0.3)


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


class Receiver:
    """
    A webhook receiver in this process that records every request and verifies it with the examples'
    `_connector.verify`. `answers` are (status, headers) used one per request, then 200. With `hold_first`,
    the first request of each webhook-id is held open until `release()`.
    """

    def __init__(self, answers=(), *, hold_first: bool = False):
        self.secret = ""
        self.answers = list(answers)
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
            answer = (200, {}) if (self.hold_first and first) or not self.answers else self.answers.pop(0)
            item.status = answer[0]
            self.changed.notify_all()
        if self.hold_first and first:
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
