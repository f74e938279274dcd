"""
bench/engines.py's moving parts: the Celery worker and beat it started (and their task counters), the
posters that send orders at a steady rate, and the poller that sees each order decided.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _engines_fixture import Spec
from _harness import (
    ROOT,
    spawn,
    stop_pid,
    tail,
)

ORDERS = "/api/v1/orders"


# --- the worker (and beat) ----------------------------------------------------------------------------


@dataclass
class Celery:
    """The worker (and beat) this run started."""

    worker_pid: int | None = None
    worker_name: str = ""
    worker_command: str = ""
    worker_log: Path | None = None
    beat_pid: int | None = None


def start_beat(stack, env, folder: Path, celery: Celery) -> None:
    argv = ["-A", "config", "beat", "-l", "warning", "--pidfile", str(folder / "beat.pid")]
    argv += ["-s", str(folder / "beat-schedule")]
    log = folder / "beat.log"
    with log.open("wb") as out:
        proc = spawn(
            [sys.executable, "-m", "celery", *argv],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    celery.beat_pid = proc.pid
    stack.callback(stop_pid, proc.pid, signal.SIGTERM, "celery beat")
    time.sleep(2)
    if proc.poll() is not None:
        raise SystemExit(f"celery beat exited with {proc.returncode}:\n{tail(log)}")
    print(f"  celery -A config beat (database scheduler, pid {proc.pid})")


def tasks_run(celery: Celery) -> dict[str, int]:
    """Tasks the worker has run so far, by name (its own tally)."""
    from config.celery import app

    stats = app.control.inspect(destination=[celery.worker_name], timeout=2.0).stats() or {}
    totals = stats.get(celery.worker_name, {}).get("total", {})
    return {task.rsplit(".", 1)[-1]: n for task, n in sorted(totals.items())}


def wait_idle(celery: Celery, timeout: float) -> bool:
    """Until the broker's queue is empty and the worker holds no task (twice in a row)."""
    import redis
    from django.conf import settings

    from config.celery import app

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        inspect = app.control.inspect(destination=[celery.worker_name], timeout=1.0)
        busy = [*((inspect.active() or {}).values()), *((inspect.reserved() or {}).values())]
        quiet = quiet + 1 if client.llen("celery") + client.llen("deliveries") == 0 and not any(busy) else 0
        if quiet >= 2:
            return True
        time.sleep(0.2)
    return False


# --- (3)+(4): post at a steady rate, poll until every order is decided ---------------------------------


@dataclass
class Posted:
    acked: dict[str, float] = field(default_factory=dict)  # external id → wall time the 201 arrived
    ids: dict[str, int] = field(default_factory=dict)  # external id → order id
    late: list[float] = field(default_factory=list)  # seconds each request started after its slot
    errors: list[str] = field(default_factory=list)


def post_orders(
    base: str, key: str, specs: list[Spec], rate: float, clients: int, on_id
) -> tuple[Posted, float]:
    """Send `specs` at `rate` per second from `clients` threads; (what came back, seconds from first to last)."""
    posted, lock = Posted(), threading.Lock()
    slots = iter(range(len(specs)))
    began = time.perf_counter() + 0.05

    def work():
        with httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=30,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        ) as http:
            while True:
                with lock:
                    index = next(slots, None)
                if index is None:
                    return
                spec, due = specs[index], began + index / rate
                time.sleep(max(0.0, due - time.perf_counter()))
                late = time.perf_counter() - due
                try:
                    response = http.post(ORDERS, content=json.dumps(spec.body()).encode())
                except httpx.HTTPError as error:
                    problem = f"{spec.external_id}: {type(error).__name__}: {error}"
                else:
                    problem = (
                        None
                        if response.status_code == 201
                        else (f"{spec.external_id}: HTTP {response.status_code} {response.text[:200]}")
                    )
                acked = time.time()
                with lock:
                    posted.late.append(late)
                    if problem:
                        posted.errors.append(problem)
                    else:
                        order_id = int(response.json()["id"])
                        posted.acked[spec.external_id], posted.ids[spec.external_id] = acked, order_id
                if not problem:
                    on_id(order_id, acked)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return posted, time.perf_counter() - began


class Poller(threading.Thread):
    """One query per interval for every outstanding order: records when each was first seen decided."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.inbox = interval, queue.SimpleQueue()
        self.outstanding: set[int] = set()
        self.seen: dict[int, float] = {}  # order id → wall time a poll first saw it decided
        self.polls = 0
        self.stop = threading.Event()

    def add(self, order_id: int, _acked: float) -> None:
        self.inbox.put(order_id)

    def run(self):
        from django.db import connection

        from orders.choices import OrderStatus
        from orders.models import Order

        try:
            while not self.stop.is_set():
                while not self.inbox.empty():
                    self.outstanding.add(self.inbox.get())
                if self.outstanding:
                    decided = list(
                        Order.objects.filter(pk__in=self.outstanding)
                        .exclude(status__in=(OrderStatus.NEW, OrderStatus.READY))
                        .values_list("pk", flat=True)
                    )
                    self.polls += 1
                    now = time.time()
                    for order_id in decided:
                        self.seen[order_id] = now
                    self.outstanding.difference_update(decided)
                time.sleep(self.interval)
        finally:
            connection.close()

    def wait_all(self, timeout: float) -> bool:
        """After the last post: until nothing is outstanding, or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.inbox.empty() and not self.outstanding:
                time.sleep(self.interval * 2)  # a last id may be in flight between get() and add()
                if self.inbox.empty() and not self.outstanding:
                    return True
            time.sleep(self.interval)
        return False
