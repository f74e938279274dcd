"""
Standard Webhooks signing for webhook deliveries and manifest-connector calls (docs/connectors/contract.md,
"Webhook deliveries"): secrets, signatures and their verification through the `standardwebhooks` library,
the body bytes and the retry schedule. Pure functions: no models, no network, no settings.
"""

import base64
import binascii
import hmac
import json
import random
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from django.core.serializers.json import DjangoJSONEncoder
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 32
DEFAULT_TOLERANCE = 300  # seconds either side of now, as the Standard Webhooks libraries use

# Standard Webhooks schedule: the wait before each retry, counted from the failure before it.
RETRY_DELAYS: tuple[int, ...] = (
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)
RETRY_JITTER = 0.10  # each delay is drawn uniformly within ±10% so failed deliveries do not retry in lockstep

_DELAY_SECONDS = re.compile(r"[0-9]+")  # RFC 9110 delay-seconds: 1*DIGIT, ASCII only


class WebhookVerificationError(ValueError):
    """A delivery whose headers, timestamp or signature do not check out."""


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


# --- secrets and signatures ------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh webhook secret: "whsec_" + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _webhook(secret: str) -> Webhook:
    """The library's signer for a secret, read strictly first: the library would skip stray characters
    (and take "whsec_***" for an empty key), where a secret the hub holds must be exactly whsec_ + base64."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"A webhook secret starts with {SECRET_PREFIX!r}.")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Tolerate missing padding, as the reference libraries do.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("A webhook secret's key is not valid base64.") from exc
    if not key:
        raise ValueError("A webhook secret may not be empty.")
    return Webhook(key)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value "v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">"."""
    # The library signs text; the hub's bodies are UTF-8 JSON, so decoding gives back the very bytes sent.
    when = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return _webhook(secret).sign(msg_id, when, body.decode("utf-8"))


def headers(
    secret: str, msg_id: str, timestamp: int, body: bytes, *, also: Sequence[str] = ()
) -> dict[str, str]:
    """
    The headers that go with a signed body. Each secret of `also` (a rotated-out one, during its overlap) adds
    its signature after the first, space-separated as Standard Webhooks allows: a receiver holding either
    secret finds its match.
    """
    signatures = [sign(key, msg_id, timestamp, body) for key in (secret, *also)]
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(signatures),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """
    Check a delivery's Standard Webhooks headers against its body; raise WebhookVerificationError if not.
    Any one of several space-separated signatures may match (secret rotation).

    The library's own Webhook.verify reads the clock itself with a fixed 5 minutes and stops at the first
    malformed signature in the list, so the headers and the window are checked here and the library makes
    the signature they must carry.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and raw_timestamp and signatures):
        raise WebhookVerificationError("Missing webhook-id, webhook-timestamp or webhook-signature.")
    if not _DELAY_SECONDS.fullmatch(raw_timestamp.strip()):
        raise WebhookVerificationError("webhook-timestamp is not a unix time in seconds.")
    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("Message timestamp too old.")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("Message timestamp too new.")

    try:
        expected = sign(secret, msg_id, timestamp, body.encode() if isinstance(body, str) else body)
    except UnicodeDecodeError as exc:
        raise WebhookVerificationError("The body is not UTF-8.") from exc
    # Constant-time, candidate by candidate: other versions and malformed entries simply do not match.
    if not any(hmac.compare_digest(expected.encode(), given.encode()) for given in signatures.split()):
        raise WebhookVerificationError("No matching signature found.")


# --- body ------------------------------------------------------------------------------------------------


def payload(
    event_id: str, event_type: str, created_at: Any, sequence: int, data: Any, *, changes: Any = None
) -> bytes:
    """
    The delivery body as the exact bytes that are signed and sent: compact JSON, UTF-8. `changes` (the
    fields an update changed, e.g. of shipping_request.updated) is a top-level field beside `data`, which
    stays the object as GET renders it; left out when None.
    """
    envelope = {
        "id": event_id,
        "type": event_type,
        "created_at": created_at,
        "sequence": sequence,
        "data": data,
    }
    if changes is not None:
        envelope["changes"] = changes
    return json.dumps(
        envelope, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# --- retries ---------------------------------------------------------------------------------------------


def _retry_after_seconds(value: str, now: float) -> float | None:
    """Seconds that a Retry-After value asks for (delay-seconds or HTTP-date), or None if unreadable."""
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" parses naive; an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def next_attempt_delay(
    attempt: int,
    *,
    retry_after: str | None = None,
    rng: _Uniform = random,
    now: float | None = None,
) -> float | None:
    """
    Seconds to wait after failed attempt number `attempt` (1 = the first try), or None: the delivery is dead.
    Retry-After can only bring the retry forward, never push it past the schedule; unreadable values are ignored.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1 (the first try).")
    if attempt > len(RETRY_DELAYS):
        return None
    base = RETRY_DELAYS[attempt - 1]
    delay = base * rng.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
    if retry_after:
        asked = _retry_after_seconds(retry_after, time.time() if now is None else now)
        if asked is not None and asked < delay:
            return asked
    return delay
