"""
The hub as real processes: gunicorn (always with the repository's config/gunicorn.py, whose access-log
format logs no key), a Celery worker and Celery beat, each a Proc; `manage.py` against their database; the
first organization, its integrations and keys. The command lines are built here once, for the tests (Hub)
and the benches (gunicorn_argv, celery_argv).

Every key and signing secret the hub hands out through a Hub is remembered in `handed_out`, so that the
tests can check no log of the hub's processes holds one (harness.fixtures).
"""

import contextlib
import json
import os
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis

from harness.procs import PYTHON, ROOT, START_TIMEOUT, Proc

HUB_PROCESSES = ("gunicorn", "worker", "beat", "postgres", "redis")  # whose logs may hold no secret
handed_out: dict[str, str] = {}  # what each is → a key or signing secret the hub handed out


def gunicorn_argv(port: int, *options: str) -> list[str]:
    """`python -m gunicorn config.wsgi -c config/gunicorn.py -b 127.0.0.1:PORT OPTIONS…`."""
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "config.wsgi",
        "-c",
        "config/gunicorn.py",
        "-b",
        f"127.0.0.1:{port}",
        *options,
    ]


def celery_argv(role: str, *options: str) -> list[str]:
    """`python -m celery -A config worker|beat OPTIONS…`."""
    return [PYTHON, "-m", "celery", "-A", "config", role, *options]


BEAT_SCHEDULER = ("--scheduler", "django_celery_beat.schedulers:DatabaseScheduler")


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


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def admin_connection(url: str):
    """A connection to the server for CREATE/DROP DATABASE: its `postgres` database, else `url`'s own."""
    try:
        return psycopg.connect(with_path(url, "/postgres"), autocommit=True)
    except psycopg.OperationalError:
        return psycopg.connect(url, autocommit=True)


def flush_redis(redis_urls: list[str]) -> None:
    for url in redis_urls:
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


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
        done = subprocess.run(  # noqa: S603 - manage.py of this checkout, an argument list
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
        options = ("-w", "2", "--access-logfile", "-", "--graceful-timeout", "5")
        return self.start("gunicorn", gunicorn_argv(self.port, *options))

    def start_worker(self, env: dict | None = None) -> Proc:
        options = ("-l", "info", "-c", "2", "-n", f"e2e-{uuid.uuid4().hex[:8]}@%h")
        return self.start(
            "worker", celery_argv("worker", *options, "--without-gossip", "--without-mingle"), env
        )

    def start_beat(self) -> Proc:
        return self.start("beat", celery_argv("beat", "-l", "info", *BEAT_SCHEDULER))

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
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/api/v1/me", timeout=5).status_code == 401:
                    return
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
        handed_out.update({f"the {slug} {name} key": key for name, key in self.keys.items()})

    def subscribe(self, name: str, url: str, events: list[str]) -> dict:
        with self.api(name) as api:
            answer = api.post("/webhooks", json={"url": url, "events": events})
        if answer.status_code != 201:
            raise AssertionError(answer.text)
        subscription = answer.json()
        handed_out[f"the signing secret of {name}'s webhook {subscription['id']}"] = subscription["secret"]
        return subscription

    def push_order(self, name: str, external_id: str, lines: list[dict]) -> dict:
        with self.api(name) as api:
            answer = api.post(
                "/orders", json=order_body(external_id, lines), headers={"Idempotency-Key": str(uuid.uuid4())}
            )
        if answer.status_code != 201:
            raise AssertionError(answer.text)
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
