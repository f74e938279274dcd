"""Webhook signing, checked against the Standard Webhooks reference package (docs/connectors/contract.md,
"Webhook deliveries")."""

import base64
import json
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as PackageVerificationError

from core import signing
from core.signing import RETRY_DELAYS, WebhookVerificationError, next_attempt_delay

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture
def secret():
    return signing.new_secret()


@pytest.fixture
def body():
    return signing.payload(
        "evt_01HZX",
        "order.created",
        datetime(2026, 1, 1, 12, 30, tzinfo=UTC),
        7,
        {"id": 42, "total": Decimal("19.90"), "customer": "Zoë Ångström"},
    )


class FixedRng:
    """Stands in for `random`: always draws the given fraction of the jitter range."""

    def __init__(self, fraction):
        self.fraction = fraction

    def uniform(self, a, b):
        return a + (b - a) * self.fraction


# --- secrets ---------------------------------------------------------------------------------------------


def test_new_secret_is_whsec_and_32_bytes_of_base64():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert signing.new_secret() != secret


@pytest.mark.parametrize("bad", ["sy_abc", "whsec_", "whsec_***not-base64***"])
def test_malformed_secret_is_refused(bad):
    with pytest.raises(ValueError):
        signing.sign(bad, "evt_1", NOW, b"{}")


# --- signatures against the reference package -----------------------------------------------------------


def test_signature_matches_known_vector():
    # The Standard Webhooks spec's own example (README of standard-webhooks/standard-webhooks).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_reference_package_verifies_our_signature(secret, body):
    hdrs = signing.headers(secret, "evt_01HZX", int(time.time()), body)
    assert Webhook(secret).verify(body, hdrs) == json.loads(body)
    assert hdrs["content-type"] == "application/json"
    assert hdrs["webhook-id"] == "evt_01HZX"


def test_our_signature_equals_the_reference_package(secret, body):
    ts = int(time.time())
    theirs = Webhook(secret).sign("evt_01HZX", datetime.fromtimestamp(ts, tz=UTC), body.decode())
    assert signing.sign(secret, "evt_01HZX", ts, body) == theirs


def test_we_verify_the_reference_package_signature(secret, body):
    ts = int(time.time())
    hdrs = {
        "webhook-id": "evt_01HZX",
        "webhook-timestamp": str(ts),
        "webhook-signature": Webhook(secret).sign(
            "evt_01HZX", datetime.fromtimestamp(ts, tz=UTC), body.decode()
        ),
    }
    signing.verify(secret, hdrs, body)


def test_tampered_body_is_rejected_by_both(secret, body):
    hdrs = signing.headers(secret, "evt_01HZX", int(time.time()), body)
    tampered = body.replace(b'"sequence":7', b'"sequence":8')
    assert tampered != body
    with pytest.raises(PackageVerificationError):
        Webhook(secret).verify(tampered, hdrs)
    with pytest.raises(WebhookVerificationError):
        signing.verify(secret, hdrs, tampered)


def test_wrong_secret_is_rejected_by_both(secret, body):
    hdrs = signing.headers(secret, "evt_01HZX", int(time.time()), body)
    other = signing.new_secret()
    with pytest.raises(PackageVerificationError):
        Webhook(other).verify(body, hdrs)
    with pytest.raises(WebhookVerificationError):
        signing.verify(other, hdrs, body)


def test_changed_id_is_rejected(secret, body):
    hdrs = signing.headers(secret, "evt_01HZX", NOW, body) | {"webhook-id": "evt_other"}
    with pytest.raises(WebhookVerificationError):
        signing.verify(secret, hdrs, body, now=NOW)


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_stale_or_future_timestamp_is_rejected_by_both(secret, body, age):
    hdrs = signing.headers(secret, "evt_01HZX", int(time.time()) - age, body)
    with pytest.raises(PackageVerificationError):
        Webhook(secret).verify(body, hdrs)
    with pytest.raises(WebhookVerificationError):
        signing.verify(secret, hdrs, body)


def test_tolerance_and_now_are_honoured(secret, body):
    hdrs = signing.headers(secret, "evt_01HZX", NOW, body)
    signing.verify(secret, hdrs, body, now=NOW + 300)
    signing.verify(secret, hdrs, body, now=NOW + 3000, tolerance=3600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        signing.verify(secret, hdrs, body, now=NOW + 301)


def test_rotation_accepts_any_of_several_signatures(secret, body):
    old = signing.new_secret()
    hdrs = signing.headers(secret, "evt_01HZX", NOW, body)
    # given a sender signing with both the old and the new secret
    hdrs["webhook-signature"] = f"{signing.sign(old, 'evt_01HZX', NOW, body)} {hdrs['webhook-signature']}"
    # then a receiver holding either one accepts it
    signing.verify(secret, hdrs, body, now=NOW)
    signing.verify(old, hdrs, body, now=NOW)
    with pytest.raises(WebhookVerificationError):
        signing.verify(signing.new_secret(), hdrs, body, now=NOW)


@pytest.mark.parametrize(
    "signature",
    ["", "garbage", "v2,abc", "v1,***", "v1", "v1a,Zm9v"],
)
def test_malformed_signatures_are_rejected_not_crashed(secret, body, signature):
    hdrs = signing.headers(secret, "evt_01HZX", NOW, body) | {"webhook-signature": signature}
    with pytest.raises(WebhookVerificationError):
        signing.verify(secret, hdrs, body, now=NOW)


def test_unknown_versions_are_skipped_before_a_valid_one(secret, body):
    hdrs = signing.headers(secret, "evt_01HZX", NOW, body)
    hdrs["webhook-signature"] = f"v2,Zm9v v1,*** {hdrs['webhook-signature']}"
    signing.verify(secret, hdrs, body, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(secret, body, missing):
    hdrs = signing.headers(secret, "evt_01HZX", NOW, body)
    del hdrs[missing]
    with pytest.raises(WebhookVerificationError):
        signing.verify(secret, hdrs, body, now=NOW)


@pytest.mark.parametrize("timestamp", ["soon", "1.5e9", "-1", ""])
def test_unreadable_timestamp_is_rejected(secret, body, timestamp):
    hdrs = signing.headers(secret, "evt_01HZX", NOW, body) | {"webhook-timestamp": timestamp}
    with pytest.raises(WebhookVerificationError):
        signing.verify(secret, hdrs, body, now=NOW)


def test_header_names_are_case_insensitive(secret, body):
    hdrs = {name.title(): value for name, value in signing.headers(secret, "evt_01HZX", NOW, body).items()}
    signing.verify(secret, hdrs, body, now=NOW)
    signing.verify(secret, hdrs, body.decode(), now=NOW)


# --- body ------------------------------------------------------------------------------------------------


def test_payload_round_trips_and_is_deterministic(body):
    again = signing.payload(
        "evt_01HZX",
        "order.created",
        datetime(2026, 1, 1, 12, 30, tzinfo=UTC),
        7,
        {"id": 42, "total": Decimal("19.90"), "customer": "Zoë Ångström"},
    )
    assert again == body
    assert list(json.loads(body)) == ["id", "type", "created_at", "sequence", "data"]
    assert json.loads(body) == {
        "id": "evt_01HZX",
        "type": "order.created",
        "created_at": "2026-01-01T12:30:00Z",
        "sequence": 7,
        "data": {"id": 42, "total": "19.90", "customer": "Zoë Ångström"},
    }
    assert b" " not in body.replace("Zoë Ångström".encode(), b"")  # compact separators
    assert "Zoë".encode() in body  # UTF-8, not \u escapes


def test_payload_refuses_nan():
    with pytest.raises(ValueError):
        signing.payload("evt_1", "inventory.updated", "2026-01-01T00:00:00Z", 1, {"x": float("nan")})


# --- retry schedule --------------------------------------------------------------------------------------


def test_schedule_is_the_standard_webhooks_one():
    assert RETRY_DELAYS == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


@pytest.mark.parametrize("attempt", range(1, 10))
def test_each_delay_is_within_ten_percent(attempt):
    base = RETRY_DELAYS[attempt - 1]
    rng = random.Random(attempt)
    delays = [next_attempt_delay(attempt, rng=rng) for _ in range(200)]
    assert all(0.9 * base <= d <= 1.1 * base for d in delays)
    assert len(set(delays)) > 1  # jitter actually varies
    assert next_attempt_delay(attempt, rng=FixedRng(0)) == pytest.approx(0.9 * base)
    assert next_attempt_delay(attempt, rng=FixedRng(1)) == pytest.approx(1.1 * base)


def test_dead_after_the_ninth_retry():
    assert next_attempt_delay(9) is not None
    assert next_attempt_delay(10) is None
    assert next_attempt_delay(11, retry_after="1") is None


def test_attempt_counts_from_one():
    with pytest.raises(ValueError):
        next_attempt_delay(0)


def test_retry_after_seconds_brings_the_retry_forward():
    assert next_attempt_delay(3, retry_after="60", rng=FixedRng(0.5)) == 60
    assert next_attempt_delay(3, retry_after="0", rng=FixedRng(0.5)) == 0


def test_retry_after_never_pushes_the_retry_later():
    assert next_attempt_delay(1, retry_after="3600", rng=FixedRng(0.5)) == pytest.approx(5)
    assert next_attempt_delay(9, retry_after="999999", rng=FixedRng(0.5)) == pytest.approx(86400)


@pytest.mark.parametrize("garbage", ["", "soon", "-5", "1.5", "１２", "Tue, 99 Foo 2026 99:99:99 GMT", "  "])
def test_unreadable_retry_after_is_ignored(garbage):
    assert next_attempt_delay(2, retry_after=garbage, rng=FixedRng(0.5)) == pytest.approx(300)


def test_retry_after_http_date():
    now = float(NOW)
    in_a_minute = format_datetime(datetime.fromtimestamp(NOW, tz=UTC) + timedelta(minutes=1), usegmt=True)
    tomorrow = format_datetime(datetime.fromtimestamp(NOW, tz=UTC) + timedelta(days=1), usegmt=True)
    past = format_datetime(datetime.fromtimestamp(NOW, tz=UTC) - timedelta(hours=1), usegmt=True)
    # sooner than the 30 minute step: taken
    assert next_attempt_delay(3, retry_after=in_a_minute, rng=FixedRng(0.5), now=now) == pytest.approx(60)
    # later than it: the schedule wins
    assert next_attempt_delay(3, retry_after=tomorrow, rng=FixedRng(0.5), now=now) == pytest.approx(1800)
    # already passed: retry now
    assert next_attempt_delay(3, retry_after=past, rng=FixedRng(0.5), now=now) == 0


def test_signatures_are_made_by_the_standardwebhooks_library(monkeypatch, secret, body):
    made, real = [], Webhook.sign

    def spy(self, msg_id, timestamp, data):
        made.append(msg_id)
        return real(self, msg_id, timestamp, data)

    monkeypatch.setattr(Webhook, "sign", spy)
    hdrs = signing.headers(secret, "evt_01HZX", NOW, body)
    signing.verify(secret, hdrs, body, now=NOW)

    assert made == ["evt_01HZX", "evt_01HZX"]  # signing, then the signature verify expects
