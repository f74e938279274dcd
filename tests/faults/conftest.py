"""
The fault tests' hub: real gunicorn, Celery worker and beat (harness/) on a PostgreSQL cluster and
a redis-server of their own, so a test can stop, start and restart them under traffic. One hub serves the
whole package (starting one costs most of a minute on a loaded machine); each test leaves it whole again
(`hub.heal()` runs around every test).

The hub is tuned to show faults quickly: short webhook timeouts and lease, engine and delivery sweeps every
2 s, a lost engine message counted after 3 s. Needs PostgreSQL server binaries and redis-server (skipped
otherwise), as scripts/test.sh does.
"""

import contextlib
import time
import uuid

import httpx
import psycopg
import pytest

from harness.fixtures import (  # noqa: F401 - fixtures and the report hook, registered by being here
    _log_mark,
    pytest_runtest_makereport,
    receivers,
)
from harness.hub import Hub, hub_env, order_body
from harness.procs import Missing, free_port, stop_all_started
from harness.receivers import Receiver  # noqa: F401 - the tests import it from here
from harness.services import PostgresCluster, RedisServer

LEASE = 6  # WEBHOOK_DELIVERY_LEASE: seconds before a killed worker's claimed delivery is due again
WEBHOOK_TIMEOUT = 3  # seconds a receiver may take to answer
SWEEP_EVERY = 2  # seconds between the beat's engine and delivery sweeps

PRODUCTS = [
    {"sku": "F-TEE", "name": "Fault tee", "price": "12.50"},
    {"sku": "F-MUG", "name": "Fault mug", "price": "8.00"},
]
STOCK = {"F-TEE": 1000, "F-MUG": 1000}

CHANNELS = [
    "Shop",
    "Restarted",
    "Healthy",
    "Failing",
    "Refused",
    "Hanging",
    "Bystander",
    "Stalled",
    "Routed",
    "Changed",
    "Paused",
    "Resubscriber",
    "Recovering",
]
INTEGRATIONS = [("Warehouse", "custom-3pl"), *((name, "custom-channel") for name in CHANNELS)]

FAST_SWEEPS = f"""
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every, _ = IntervalSchedule.objects.get_or_create(every={SWEEP_EVERY}, period="seconds")
tasks = ["automations.tasks.hold_sweep_task", "automations.tasks.routing_sweep_task",
         "automations.tasks.inventory_sweep_task", "integrations.tasks.sweep_deliveries_task"]
assert PeriodicTask.objects.filter(task__in=tasks).update(interval=every) == len(tasks)
"""


class FaultHub(Hub):
    postgres: PostgresCluster
    redis: RedisServer
    location: str

    def sql(self, query: str, params=()) -> list[tuple]:
        """A query on the hub's database from this process (read what happened without a manage.py start)."""
        with psycopg.connect(self.postgres.url(), autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def post_until_done(self, name: str, path: str, body: dict, key: str, deadline: float = 90) -> list:
        """
        POST as a careful client does: the same Idempotency-Key until a 2xx, retrying 503 and 409
        idempotency_in_progress and transport errors; returns every (status, json or None, seconds) seen.
        """
        seen = []
        end = time.monotonic() + deadline
        with self.api(name, timeout=20) as api:
            while time.monotonic() < end:
                began = time.monotonic()
                try:
                    answer = api.post(path, json=body, headers={"Idempotency-Key": key})
                except httpx.TransportError as exc:
                    seen.append((type(exc).__name__, None, time.monotonic() - began))
                    time.sleep(0.3)
                    continue
                try:
                    payload = answer.json()
                except ValueError:
                    payload = None
                seen.append((answer.status_code, payload, time.monotonic() - began, dict(answer.headers)))
                if answer.status_code < 300:
                    return seen
                if answer.status_code not in (409, 503):
                    raise AssertionError(f"POST {path} answered {answer.status_code}: {answer.text}")
                time.sleep(0.3)
        raise AssertionError(f"POST {path} with key {key} not done within {deadline} s: {seen}")

    def push_order_key(
        self, name: str, external_id: str, qty: int = 1, sku: str = "F-TEE"
    ) -> tuple[dict, str]:
        key = str(uuid.uuid4())
        body = order_body(external_id, [{"sku": sku, "quantity": qty, "unit_price": "1.00"}])
        with self.api(name) as api:
            answer = api.post("/orders", json=body, headers={"Idempotency-Key": key})
        assert answer.status_code == 201, answer.text
        return answer.json(), key

    def heal(self) -> None:
        """PostgreSQL and Redis up, gunicorn answering, a worker and beat running: as a test found it."""
        if not self.postgres.running:
            self.postgres.start()
        if self.redis.proc is None or not self.redis.proc.alive():
            self.redis.start()
        for name, start in (("worker", self.start_worker), ("beat", self.start_beat)):
            if not self.procs[name].alive():
                start().wait_for_text(" ready." if name == "worker" else "beat: Starting")
        assert self.procs["gunicorn"].alive(), self.procs["gunicorn"].tail()
        self.wait_for_http()


@pytest.fixture(scope="package")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    postgres = redis = None
    try:
        try:
            postgres = PostgresCluster(prefix="switchyard-faults-pg-", settings={"max_connections": 200})
            redis = RedisServer(tmp, prefix="switchyard-faults-redis-")
        except Missing as exc:
            pytest.skip(str(exc))
        postgres.init()
        redis.start()
        env = hub_env(
            postgres.url(),
            redis.url(0),
            redis.url(1),
            tmp / "var",
            WEBHOOK_DELIVERY_LEASE=str(LEASE),
            WEBHOOK_TIMEOUT=str(WEBHOOK_TIMEOUT),
            WEBHOOK_CONNECT_TIMEOUT="2",
            ENGINE_LOST_MESSAGE_SECONDS="3",
        )
        port = free_port()
        hub = FaultHub(url=f"http://127.0.0.1:{port}", env=env, log_dir=tmp, port=port)
        hub.postgres, hub.redis = postgres, redis
        # migrate, organization and schedules in one process: each manage.py start costs seconds here
        migrate = 'from django.core.management import call_command\ncall_command("migrate", verbosity=0)\n'
        hub.setup_organization("faults", INTEGRATIONS, first=migrate, then=FAST_SWEEPS)
        hub.start_processes()

        with hub.api("admin") as api:
            answer = api.post("/products/bulk", json={"products": PRODUCTS})
            assert answer.status_code == 200, answer.text
        with hub.api("Warehouse") as api:
            assert api.post("/integration/connect").status_code == 200
            answer = api.post(
                "/locations",
                json={
                    "name": "Fault 3PL",
                    "kind": "3pl",
                    "address": {"line1": "1 Depot", "city": "X", "country": "US"},
                },
            )
            assert answer.status_code == 201, answer.text
            hub.location = answer.json()["id"]
            items = [{"sku": sku, "on_hand": n} for sku, n in STOCK.items()]
            answer = api.post("/inventory", json={"location": hub.location, "items": items})
            assert answer.status_code == 200 and answer.json()["errors"] == [], answer.text
        for name in CHANNELS:
            with hub.api(name) as api:
                assert api.post("/integration/connect").status_code == 200
        yield hub
    finally:
        stop_all_started()
        if postgres is not None:
            postgres.destroy()
        if redis is not None:
            redis.destroy()


@pytest.fixture(autouse=True)
def healed(hub):
    """Every test starts and leaves the hub whole (a failed test must not take the next ones down)."""
    hub.heal()
    yield hub
    with contextlib.suppress(Exception):
        hub.heal()
