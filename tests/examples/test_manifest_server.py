"""The sample manifest connector server speaks examples/MANIFEST_PROTOCOL.md, called as the hub calls it."""

import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
import sample_manifest_server as manifest

from api.orders.serializers import OrderInputSerializer
from core import signing

from .conftest import EXAMPLES

SECRET = signing.new_secret()
TOKEN = "manifest-token"


@pytest.fixture
def server():
    """The server in this process on 127.0.0.1, checking token and signature, offering 3 orders."""
    args = manifest.parse_args(
        ["--listen", "127.0.0.1:0", "--secret", SECRET, "--auth-token", TOKEN, "--demo-orders", "3"]
    )
    _, http = manifest.build(args)
    http.start()
    yield http.url
    http.stop()


def call(url, path, body, *, secret=SECRET, token=TOKEN):
    """A manifest call as the hub makes it: signed JSON with the integration's bearer token."""
    raw = json.dumps(body).encode()
    headers = signing.headers(secret, f"msg_{time.time_ns()}", int(time.time()), raw)
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(url + path, content=raw, headers=headers, timeout=5)


def test_health(server):
    answer = call(server, "/health", {})

    assert (answer.status_code, answer.json()) == (200, {"ok": True})


def test_orders_are_paged_by_an_opaque_cursor_and_are_order_bodies(server):
    first = call(server, "/orders", {"cursor": None, "limit": 2}).json()
    second = call(server, "/orders", {"cursor": first["next_cursor"], "limit": 2}).json()
    third = call(server, "/orders", {"cursor": second["next_cursor"], "limit": 2}).json()

    assert [o["external_id"] for o in first["orders"] + second["orders"]] == ["M-1", "M-2", "M-3"]
    assert third == {"orders": [], "next_cursor": None}  # nothing new: the hub keeps its cursor
    for order in first["orders"]:  # the shape of POST /api/v1/orders, checked by the hub's own serializer
        body = OrderInputSerializer(data=order)
        assert body.is_valid(), body.errors


def test_errors_are_http_200_with_an_error_field(server):
    for body in ({"cursor": "not-a-cursor", "limit": 2}, {"cursor": None, "limit": 0}):
        answer = call(server, "/orders", body)
        assert answer.status_code == 200
        assert "error" in answer.json()


def test_dispatch_records_a_fulfillment_once_and_counts_repeats_as_accepted(server):
    batch = {"fulfillments": [{"id": "77", "order_external_id": "M-1", "tracking_number": "1Z"}]}

    assert call(server, "/dispatch", batch).json() == {"accepted": 1}
    assert call(server, "/dispatch", batch).json() == {"accepted": 1}
    state = httpx.get(server + "/_control").json()
    assert [f["id"] for f in state["dispatched"]] == ["77"]
    assert state["calls"]["dispatch"] == 2


def test_inventory_and_prices_are_absolute(server):
    assert call(server, "/inventory", {"items": [{"sku": "MUG", "available": 4}]}).json() == {"accepted": 1}
    assert call(server, "/inventory", {"items": [{"sku": "MUG", "available": 3}]}).json() == {"accepted": 1}
    assert call(server, "/prices", {"items": [{"sku": "MUG", "price": "8.00"}]}).json() == {"accepted": 1}
    state = httpx.get(server + "/_control").json()
    assert (state["inventory"], state["prices"]) == ({"MUG": 3}, {"MUG": "8.00"})


def test_a_bad_token_or_signature_is_401(server):
    assert call(server, "/health", {}, token="wrong").status_code == 401
    assert call(server, "/health", {}, token=None).status_code == 401
    assert call(server, "/health", {}, secret=signing.new_secret()).status_code == 401


def test_failure_modes_are_switched_through_control(server):
    httpx.post(server + "/_control", json={"fail": {"health": "error", "orders": "http_500"}})

    health = call(server, "/health", {})
    orders = call(server, "/orders", {"cursor": None, "limit": 1})
    assert (health.status_code, "error" in health.json()) == (200, True)
    assert orders.status_code == 500

    httpx.post(server + "/_control", json={"fail": {"health": None, "orders": None}})
    assert call(server, "/health", {}).json() == {"ok": True}
    assert httpx.post(server + "/_control", json={"fail": {"health": "sideways"}}).status_code == 400


def test_without_secret_or_token_nothing_is_checked():
    args = manifest.parse_args(["--listen", "127.0.0.1:0", "--fail-health"])
    _, http = manifest.build(args)
    http.start()
    try:
        answer = httpx.post(http.url + "/health", json={})
        assert answer.status_code == 200
        assert "error" in answer.json()  # --fail-health
    finally:
        http.stop()


def test_runs_as_a_program_and_stops_cleanly_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "sample_manifest_server.py"), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        started = json.loads(process.stdout.readline())
        assert started["event"] == "listening"
        assert httpx.post(started["url"] + "/health", json={}).json() == {"ok": True}
        assert json.loads(process.stdout.readline())["event"] == "manifest_call"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert [json.loads(line)["event"] for line in process.stdout] == ["stopping", "stopped"]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
