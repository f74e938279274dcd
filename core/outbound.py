"""
The hub's outbound HTTP: one pooled httpx client per worker process, the SSRF guard applied to the address
actually connected to, signed POSTs with docs/connectors/contract.md's timeouts, bounded reads and no
redirects. Webhook deliveries and manifest calls both go through `post_signed`; neither touches the database
here.
"""

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

from core import signing
from core.targets import public_addresses

USER_AGENT = "Switchyard-Webhooks/1.0"
MAX_JSON_BYTES = 10 * 1024 * 1024  # a manifest answer (an orders page) larger than this is refused

_client: httpx.Client | None = None
_client_pid: int | None = None
_lock = threading.Lock()


def client() -> httpx.Client:
    """This process's pooled client (keep-alive connections); a forked worker makes its own."""
    import os

    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():
            _client = httpx.Client(
                follow_redirects=False,  # a redirect is a failure, never followed (contract.md)
                timeout=httpx.Timeout(settings.WEBHOOK_TIMEOUT, connect=settings.WEBHOOK_CONNECT_TIMEOUT),
                limits=httpx.Limits(
                    max_connections=max(settings.WEBHOOK_CONCURRENCY * 2, 10),
                    max_keepalive_connections=max(settings.WEBHOOK_CONCURRENCY * 2, 10),
                    keepalive_expiry=30,
                ),
                headers={"user-agent": USER_AGENT},
                trust_env=False,  # no proxy from the environment between the hub and a connector
            )
            _client_pid = os.getpid()
        return _client


@dataclass
class Outcome:
    """What one outbound request came to."""

    ok: bool
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""
    duration_ms: int = 0
    retry_after: str | None = None
    request_headers: dict = field(default_factory=dict)
    data: object = None  # the parsed JSON answer, when asked for and readable
    gone: bool = False  # 410: the receiver wants no more of these

    @property
    def summary(self) -> str:
        if self.error:
            return self.error
        return f"HTTP {self.status_code}"


def pinned_target(url: str) -> tuple[str, dict, dict]:
    """
    (URL to connect to, extra headers, request extensions). Unless private targets are allowed, the host is
    resolved and checked here and the request goes to that checked address (Host header and TLS SNI keep
    the name), so a DNS answer that changes between the check and the connect cannot reach a private one.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Only http and https URLs with a host are allowed.")
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        return url, {}, {}
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = public_addresses(parts.hostname, port)[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # RFC 9110: IPv6 in brackets
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"host": host_header}, extensions


def post_signed(
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    *,
    extra_headers: dict | None = None,
    read_limit: int | None = None,
    want_json: bool = False,
    also_signed_with: Sequence[str] = (),
) -> Outcome:
    """
    POST `body` signed with Standard Webhooks headers (by `secret`, and by each of `also_signed_with` beside
    it). Any 2xx is success, except (when `want_json`) an answer whose JSON has an "error" field (the
    Linnworks convention). Never raises for network trouble.
    """
    limit = read_limit if read_limit is not None else settings.WEBHOOK_RESPONSE_EXCERPT
    headers = signing.headers(secret, msg_id, int(time.time()), body, also=also_signed_with)
    sent_headers = {**headers, **(extra_headers or {})}
    # What the attempt log shows: never the bearer token a manifest call carries.
    shown = {k: ("…" if k.lower() == "authorization" else v) for k, v in sent_headers.items()}
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target, pin_headers, extensions = pinned_target(url)
    except ValidationError as exc:
        return Outcome(False, error=f"Refused target: {' '.join(exc.messages)}", request_headers=shown)
    deadline = started + settings.WEBHOOK_TIMEOUT
    try:
        with client().stream(
            "POST", target, content=body, headers={**sent_headers, **pin_headers}, extensions=extensions
        ) as response:
            chunks, size = [], 0
            cap = MAX_JSON_BYTES if want_json else limit
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= cap:
                    break
                if time.monotonic() > deadline:
                    # httpx's read timeout is per read: a receiver dripping bytes is cut off here.
                    raise httpx.ReadTimeout("The answer took longer than the timeout.")
            raw = b"".join(chunks)
    except httpx.TimeoutException:
        return Outcome(False, error="Timed out.", duration_ms=took(), request_headers=shown)
    except (httpx.HTTPError, OSError) as exc:
        return Outcome(False, error=_describe(exc), duration_ms=took(), request_headers=shown)

    text = raw[:limit].decode("utf-8", errors="replace")
    outcome = Outcome(
        ok=200 <= response.status_code < 300,
        status_code=response.status_code,
        excerpt=text,
        duration_ms=took(),
        retry_after=response.headers.get("retry-after"),
        request_headers=shown,
        gone=response.status_code == 410,
    )
    if 300 <= response.status_code < 400:
        outcome.error = f"Redirect ({response.status_code}) not followed."
    if want_json and outcome.ok:
        if len(raw) >= MAX_JSON_BYTES:
            outcome.ok, outcome.error = False, "The answer is larger than 10 MB."
            return outcome
        try:
            outcome.data = json.loads(raw or b"null")
        except ValueError:
            outcome.ok, outcome.error = False, "The answer is not JSON."
            return outcome
        if isinstance(outcome.data, dict) and outcome.data.get("error"):
            outcome.ok = False
            outcome.error = f"The connector answered an error: {str(outcome.data['error'])[:400]}"
    return outcome


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"Could not connect: {exc}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]
