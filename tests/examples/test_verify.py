"""examples/_connector.verify against the reference library (standardwebhooks) and the hub's own signer."""

import base64
import hmac
import secrets
import time
from datetime import UTC, datetime

import _connector
import pytest
from _connector import WebhookVerificationError, sign, signed_headers, verify
from standardwebhooks.webhooks import Webhook

from core import signing

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
BODY = '{"id":"evt_1","type":"order.created","sequence":1,"data":{"id":"7","name":"Renée"}}'.encode()


def reference_headers(secret, msg_id, timestamp, body):
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_accepts_what_the_reference_library_signs():
    now = int(time.time())
    headers = reference_headers(SECRET, "evt_1", now, BODY)

    assert verify(SECRET, headers, BODY) == "evt_1"


def test_the_reference_library_accepts_what_it_signs():
    headers = signed_headers(SECRET, BODY, msg_id="evt_2")

    assert Webhook(SECRET).verify(BODY, headers)["data"]["name"] == "Renée"


def test_accepts_the_hubs_signature_and_the_hub_accepts_its_own():
    now = int(time.time())
    hub_headers = signing.headers(SECRET, "evt_3", now, BODY)

    assert verify(SECRET, hub_headers, BODY) == "evt_3"
    signing.verify(SECRET, signed_headers(SECRET, BODY, msg_id="evt_3"), BODY)  # raises if not


@pytest.mark.parametrize("size", [0, 1, 100, 10_000])
def test_signatures_are_the_same_as_the_references_and_the_hubs(size):
    secret = signing.new_secret()
    body = secrets.token_bytes(size).hex().encode()
    msg_id, now = f"evt_{secrets.token_hex(4)}", int(time.time())

    ours = sign(secret, msg_id, now, body)

    assert ours == signing.sign(secret, msg_id, now, body)
    assert ours == Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body.decode())


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda h, b: (h, b + b" "), id="body"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "evt_other"}, b), id="id"),
        pytest.param(
            lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) - 1)}, b), id="time"
        ),
        pytest.param(
            lambda h, b: ({**h, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}, b),
            id="sig",
        ),
    ],
)
def test_refuses_anything_changed(change):
    headers, body = change(signing.headers(SECRET, "evt_4", int(time.time()), BODY), BODY)

    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, body)


def test_refuses_another_secret():
    with pytest.raises(WebhookVerificationError):
        verify(OTHER_SECRET, signed_headers(SECRET, BODY), BODY)


def test_timestamp_tolerance_is_five_minutes_either_side():
    now = time.time()
    for offset, ok in [(-299, True), (299, True), (-301, False), (301, False)]:
        stamp = int(now + offset)
        headers = signed_headers(SECRET, BODY, timestamp=stamp)
        if ok:
            verify(SECRET, headers, BODY, now=now)
        else:
            with pytest.raises(WebhookVerificationError, match="tolerance"):
                verify(SECRET, headers, BODY, now=now)


def test_one_matching_signature_among_several_is_enough():
    headers = signed_headers(SECRET, BODY)
    good = headers["webhook-signature"]
    stale = sign(OTHER_SECRET, headers["webhook-id"], int(headers["webhook-timestamp"]), BODY)

    rotated = {**headers, "webhook-signature": f"{stale} v1a,c29tZXRoaW5n v1,!!notbase64 {good}"}
    assert verify(SECRET, rotated, BODY) == headers["webhook-id"]
    Webhook(SECRET).verify(BODY, {**headers, "webhook-signature": f"{stale} {good}"})

    with pytest.raises(WebhookVerificationError):
        verify(SECRET, {**headers, "webhook-signature": f"{stale} v1a,c29tZXRoaW5n"}, BODY)


def test_header_names_are_case_insensitive_and_str_bodies_work():
    headers = {name.title(): value for name, value in signed_headers(SECRET, BODY).items()}

    assert verify(SECRET, headers, BODY.decode())


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_refuses_a_missing_header(missing):
    headers = signed_headers(SECRET, BODY)
    del headers[missing]

    with pytest.raises(WebhookVerificationError, match="missing"):
        verify(SECRET, headers, BODY)


def test_refuses_a_timestamp_that_is_not_unix_seconds():
    headers = signed_headers(SECRET, BODY)

    with pytest.raises(WebhookVerificationError):
        verify(SECRET, {**headers, "webhook-timestamp": headers["webhook-timestamp"] + ".5"}, BODY)


def test_unpadded_secret_and_a_broken_one():
    unpadded = signing.new_secret().rstrip("=")
    headers = signing.headers(unpadded, "evt_5", int(time.time()), BODY)

    assert verify(unpadded, headers, BODY) == "evt_5"
    with pytest.raises(WebhookVerificationError):
        verify("whsec_***", headers, BODY)


def test_compares_in_constant_time(monkeypatch):
    calls, original = [], hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(_connector.hmac, "compare_digest", spy)
    verify(SECRET, signed_headers(SECRET, BODY), BODY)

    assert calls


def test_signatures_are_made_by_the_standardwebhooks_library(monkeypatch):
    made, real = [], Webhook.sign

    def spy(self, msg_id, timestamp, data):
        made.append(msg_id)
        return real(self, msg_id, timestamp, data)

    monkeypatch.setattr(Webhook, "sign", spy)
    verify(SECRET, signed_headers(SECRET, BODY, msg_id="evt_6"), BODY)

    assert made == ["evt_6", "evt_6"]  # signing, then the signature verify expects
