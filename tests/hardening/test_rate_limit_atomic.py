"""
The rate limit on the cache a hub without Redis gets (`make run`, SQLite installs; #14 finding 8): its
counters must count every request of every web process and thread. Django's FileBasedCache reads and then
writes for `add` and `incr`, so concurrent callers lost counts and 1,273 of 1,400 requests got through a
limit of 1,200. These tests take the cache configuration from the settings as a hub without REDIS_URL reads
them (the suite itself runs on Redis) and point it at a private folder.
"""

import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from django.core.cache import cache
from django.utils.module_loading import import_string

from api import throttling

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 8
INCREMENTS = 200
NOW = 1_800_000_030.0  # 30 s into a minute


@pytest.fixture(scope="module")
def default_cache(tmp_path_factory) -> dict:
    """settings.CACHES["default"] of a hub started without REDIS_URL, relocated to a private folder."""
    var = tmp_path_factory.mktemp("var")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"DJANGO_SETTINGS_MODULE": "config.settings", "VAR_DIR": str(var)}
    code = "import json; from django.conf import settings; print(json.dumps(settings.CACHES['default']))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    config = json.loads(out.stdout)
    assert config["LOCATION"] == str(var / "cache")
    return config


@pytest.fixture
def file_cache(default_cache, tmp_path, settings) -> dict:
    """The default file cache, in a folder of this test's own, as the process-wide `cache`."""
    config = {**default_cache, "LOCATION": str(tmp_path / "cache")}
    settings.CACHES = {"default": config}
    return config


def _increment(backend: str, location: str, barrier, times: int) -> None:
    store = import_string(backend)(location, {})
    barrier.wait()
    for _ in range(times):
        store.incr("counter")


def _add(backend: str, location: str, barrier, keys: list[str], wins) -> None:
    store = import_string(backend)(location, {})
    barrier.wait()
    wins.put(sum(store.add(key, 1) for key in keys))


def run_processes(target, *args) -> None:
    """PROCESSES processes running target(*args), released together, each required to finish cleanly."""
    # Forked: the children need nothing but the cache class (spawned ones spent seconds each importing the
    # test module); they never touch the database connection they inherit.
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(PROCESSES)
    processes = [
        context.Process(target=target, args=(*args[:2], barrier, *args[2:])) for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * PROCESSES


def test_concurrent_processes_lose_no_increment(file_cache):
    cache.add("counter", 0, timeout=600)

    run_processes(_increment, file_cache["BACKEND"], file_cache["LOCATION"], INCREMENTS)

    assert cache.get("counter") == PROCESSES * INCREMENTS


def test_exactly_one_of_concurrent_processes_adds_a_key(file_cache):
    keys = [f"flag-{n}" for n in range(100)]
    wins = multiprocessing.get_context("fork").Queue()

    run_processes(_add, file_cache["BACKEND"], file_cache["LOCATION"], keys, wins)

    assert sum(wins.get(timeout=10) for _ in range(PROCESSES)) == len(keys)


def test_incr_keeps_the_expiry_the_key_was_added_with(file_cache, monkeypatch):
    """An hourly limit's counter must last the hour, not Django's default 300 s from its last increment."""
    clock = SimpleNamespace(now=NOW)
    monkeypatch.setattr(time, "time", lambda: clock.now)
    cache.add("bucket", 0, timeout=3600)

    cache.incr("bucket")
    clock.now += 400

    assert cache.get("bucket") == 1
    clock.now += 3600
    assert cache.get("bucket") is None


def test_the_throttle_admits_exactly_the_limit_of_concurrent_requests(
    file_cache, live_server, integration_key, settings, monkeypatch
):
    # Given a limit of 50 a minute, and a minute that does not end mid-test
    settings.API_RATE_LIMIT = "50/min"
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: NOW))
    headers = {"Authorization": f"Bearer {integration_key.plaintext}"}

    # When 80 requests arrive 16 at a time
    with (
        httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client,
        ThreadPoolExecutor(16) as pool,
    ):
        responses = list(pool.map(lambda _: client.get("/api/v1/me"), range(80)))

    # Then exactly 50 are answered and 30 refused, in the error shape
    assert Counter(r.status_code for r in responses) == {200: 50, 429: 30}
    for refused in (r for r in responses if r.status_code == 429):
        error = refused.json()["error"]
        assert refused.json() == {
            "error": {
                "code": "rate_limited",
                "message": error["message"],
                "details": {},
                "request_id": refused.headers["X-Request-Id"],
            }
        }
        assert refused.headers["Retry-After"] == "30"
