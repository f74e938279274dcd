"""The sample connectors' webhook receiver (examples/_connector.py) as the hub reaches it: over HTTP."""

import json
import time

import httpx
import pytest
from _connector import JsonServer
from _inbox import Deduplicator, WebhookEndpoint

from core import signing

SECRET = signing.new_secret()


@pytest.fixture
def receiver():
    """A WebhookEndpoint at POST /webhooks on 127.0.0.1; `receiver.events` is what reached the handler."""
    events, failures = [], []

    def on_event(event):
        if failures:
            raise failures.pop()
        events.append(event)

    endpoint = WebhookEndpoint(on_event, secret=SECRET)
    server = JsonServer("127.0.0.1:0", {("POST", "/webhooks"): endpoint}).start()
    endpoint.events, endpoint.failures, endpoint.url = events, failures, server.url + "/webhooks"
    yield endpoint
    server.stop()


def deliver(url, event_id="evt_1", *, secret=SECRET, body=None, timestamp=None, headers=None):
    """POST as the hub does: the body signed with Standard Webhooks headers (core.signing)."""
    body = body or signing.payload(event_id, "order.updated", "2025-01-01T00:00:00Z", 1, {"id": "7"})
    sent = signing.headers(secret, event_id, int(timestamp or time.time()), body)
    return httpx.post(url, content=body, headers={**sent, **(headers or {})}, timeout=5)


def last_log(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_signed_delivery_is_handled_and_answered_200(receiver, capsys):
    answer = deliver(receiver.url)

    assert answer.status_code == 200
    assert [e["id"] for e in receiver.events] == ["evt_1"]
    assert last_log(capsys) | {"ts": 0} == {
        "event": "webhook",
        "ts": 0,
        "type": "order.updated",
        "webhook_id": "evt_1",
        "sequence": 1,
        "verified": True,
        "data_id": "7",
        "status": 200,
    }


def test_a_bad_signature_is_401_and_not_handled(receiver, capsys):
    answer = deliver(receiver.url, secret=signing.new_secret())

    assert answer.status_code == 401
    assert receiver.events == []
    assert last_log(capsys)["verified"] is False


def test_a_tampered_body_is_401(receiver):
    body = signing.payload("evt_1", "order.updated", "2025-01-01T00:00:00Z", 1, {"id": "7"})
    headers = signing.headers(SECRET, "evt_1", int(time.time()), body)

    answer = httpx.post(receiver.url, content=body.replace(b'"7"', b'"8"'), headers=headers, timeout=5)

    assert answer.status_code == 401
    assert receiver.events == []


def test_an_old_timestamp_is_401(receiver):
    assert deliver(receiver.url, timestamp=time.time() - 600).status_code == 401
    assert receiver.events == []


def test_a_repeated_webhook_id_is_answered_but_handled_once(receiver, capsys):
    # given a delivery that was handled
    assert deliver(receiver.url, "evt_9").status_code == 200
    # when the hub retries it (same webhook-id, a fresh timestamp and signature)
    again = deliver(receiver.url, "evt_9", timestamp=time.time() + 1)
    # then it is acknowledged and not handled a second time
    assert (again.status_code, again.json()) == (200, {"ok": True, "duplicate": True})
    assert len(receiver.events) == 1
    assert last_log(capsys)["duplicate"] is True
    # a newer event about the same object is handled
    newer = signing.payload("evt_10", "order.updated", "2025-01-01T00:00:01Z", 2, {"id": "7"})
    assert deliver(receiver.url, "evt_10", body=newer).status_code == 200
    assert [e["id"] for e in receiver.events] == ["evt_9", "evt_10"]


def test_an_event_older_than_the_one_applied_for_its_object_is_answered_but_dropped(receiver, capsys):
    # given order 7's event number 3 was applied
    third = signing.payload("evt_3", "order.updated", "2025-01-01T00:00:03Z", 3, {"id": "7", "status": "b"})
    assert deliver(receiver.url, "evt_3", body=third).status_code == 200

    # when its event number 2 arrives late (a retry), and number 2 of another order
    second = signing.payload("evt_2", "order.updated", "2025-01-01T00:00:02Z", 2, {"id": "7", "status": "a"})
    late = deliver(receiver.url, "evt_2", body=second)
    other = signing.payload("evt_8", "order.updated", "2025-01-01T00:00:02Z", 2, {"id": "8"})
    assert deliver(receiver.url, "evt_8", body=other).status_code == 200

    # then the late one is acknowledged (no retry) but not applied: it would overwrite newer state
    assert (late.status_code, late.json()) == (200, {"ok": True, "stale": True})
    assert [e["id"] for e in receiver.events] == ["evt_3", "evt_8"]
    assert [line.get("stale") for line in map(json.loads, capsys.readouterr().out.splitlines())] == [
        None,
        True,
        None,
    ]


def test_a_failed_handler_answers_500_and_its_retry_is_handled(receiver):
    receiver.failures.append(RuntimeError("database down"))

    assert deliver(receiver.url, "evt_5").status_code == 500
    assert deliver(receiver.url, "evt_5").status_code == 200
    assert [e["id"] for e in receiver.events] == ["evt_5"]


def test_until_the_secret_is_known_deliveries_are_refused_for_a_retry(receiver):
    receiver.secret = None

    answer = deliver(receiver.url)

    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert receiver.events == []


def test_other_paths_and_methods(receiver):
    base = receiver.url.removesuffix("/webhooks")
    assert httpx.post(base + "/elsewhere", content=b"{}").status_code == 404
    assert httpx.get(receiver.url).status_code == 405


def test_the_deduplicator_tells_a_concurrent_repeat_from_a_done_one():
    seen = Deduplicator(size=2)

    assert seen.begin("a") == "new"
    assert seen.begin("a") == "busy"
    seen.finish("a", handled=True)
    assert seen.begin("a") == "duplicate"
    for key in ("b", "c"):  # bounded: the oldest is forgotten
        seen.begin(key)
        seen.finish(key, handled=True)
    assert seen.begin("a") == "new"
