"""
The pytest side of the harness. A conftest imports from here what its tests use — the fixtures `connectors`
and `receivers`, `_log_mark` (autouse) and the hook `pytest_runtest_makereport` — so that:

* the logs of the hub's processes are attached to the report of a failing test (and those of the processes
  the test started itself);
* a test after which a hub process's log holds a key or signing secret the hub handed out fails (issue 14,
  "no secret in any log"; config/gunicorn.py's access-log format is what keeps them out).

`hub_on_own_database` gives a conftest a hub on a new database of the suite's PostgreSQL (DATABASE_URL).
"""

import contextlib
import os
import secrets
from pathlib import Path

import pytest

from harness import procs
from harness.hub import HUB_PROCESSES, Hub, admin_connection, flush_redis, handed_out, hub_env, with_path
from harness.procs import PYTHON, Proc, free_port, stop_all_started
from harness.receivers import EXAMPLES, Receivers

_looked: dict[Proc, int] = {}  # how much of each hub process's log secrets_in_logs has read
_FIRST_OWN = pytest.StashKey[int]()


def secrets_in_logs() -> list[str]:
    """
    Which secret the hub handed out (API keys, whole or their secret part; webhook signing secrets) is in
    which hub process's log since the last look: none may be, whatever a test sent. Each log is read from
    where the last look ended, so a leak is told once, by its own test.
    """
    forms = {}
    for what, secret in handed_out.items():
        forms[secret] = what
        if (parts := secret.split("_", 2)) and parts[0] == "sy" and len(parts) == 3:
            forms[parts[2]] = f"{what} (its secret part)"
    found = []
    for proc in procs.started:
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
    request.node.stash[_FIRST_OWN] = len(procs.started)
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
    latest = {p.name: p for p in procs.started if p.name in HUB_PROCESSES}
    shown = list(latest.values()) + [p for p in procs.started[first_own:] if p not in latest.values()]
    for proc in shown:
        state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
        report.sections.append((f"{proc.name} (pid {proc.pid}, {state}) log", proc.tail()))


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


@pytest.fixture
def connectors(hub):
    """`connectors.start("sample_3pl.py", *args)`: a sample connector against the hub, stopped after the test."""
    started: list[Proc] = []

    class Connectors:
        def start(self, script: str, *args: str) -> Proc:
            proc = Proc(
                script.removesuffix(".py"),
                [PYTHON, EXAMPLES / script, "--hub", hub.url, *args],
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
        if proc.popen.returncode != 0:
            raise AssertionError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")


@pytest.fixture
def receivers():
    """`receivers.start(Receiver(...))` serves it at <url>/hook on 127.0.0.1 until the test ends."""
    served = Receivers()
    yield served
    served.stop_all()
