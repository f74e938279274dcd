"""
What the sample connectors share: Standard Webhooks verification, a bearer-key client for the hub's API
(docs/connectors/contract.md), a threaded JSON HTTP server, JSON-line logging and a SIGTERM-aware wait; events
in (the webhook endpoint, the catch-up feed) are _inbox.py's. The standard library, httpx and standardwebhooks
only: no Django, so a connector author can copy this file.

The examples run as `python examples/<name>.py`, so this module is imported as plain `_connector`.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

DEFAULT_TOLERANCE = 300  # seconds either side of now (Standard Webhooks)
MAX_BODY = 5 * 1024 * 1024  # bytes a sample server reads from one request

_UNIX_SECONDS = re.compile(r"[0-9]+")


# --- logging: one JSON object per line on stdout --------------------------------------------------------

_log_lock = threading.Lock()


def log(event: str, **fields: Any) -> None:
    """Print one JSON line, e.g. {"event": "webhook", "type": "order.updated", ...}; tests follow these."""
    line = json.dumps({"event": event, "ts": round(time.time(), 3), **fields}, default=str)
    with _log_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# --- Standard Webhooks ----------------------------------------------------------------------------------


class WebhookVerificationError(ValueError):
    """Headers, timestamp or signature of a signed request do not check out."""


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value for a body: "v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">"."""
    when = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return Webhook(secret).sign(msg_id, when, body.decode("utf-8"))


def signed_headers(secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None):
    """Headers for sending `body` signed (what the hub sends; tests and tools use it to play the hub)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """
    Check the Standard Webhooks headers of a request against its raw body; return its webhook-id, or raise
    WebhookVerificationError. Several space-separated signatures may be sent (secret rotation): one match
    is enough. The comparison is constant-time; the timestamp must be within `tolerance` seconds of now.
    The signature is the `standardwebhooks` library's; its Webhook.verify is not used as it is because it
    fixes the window at 5 minutes of its own clock and gives up at the first malformed signature.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    raw_timestamp = lowered.get("webhook-timestamp", "").strip()
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and raw_timestamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not _UNIX_SECONDS.fullmatch(raw_timestamp):
        raise WebhookVerificationError("webhook-timestamp is not unix seconds")
    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp outside the tolerance")
    try:
        expected = sign(secret, msg_id, timestamp, body.encode() if isinstance(body, str) else body)
    except (ValueError, EmptyWebhookSecretError) as exc:  # a broken secret, or a body that is not UTF-8
        raise WebhookVerificationError(f"cannot check the signature: {exc}") from exc
    if any(hmac.compare_digest(expected.encode(), given.encode()) for given in signatures.split()):
        return msg_id
    raise WebhookVerificationError("no matching signature")


def bearer_ok(headers: Mapping[str, str], token: str) -> bool:
    """Whether `Authorization: Bearer <token>` was sent (constant-time)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    scheme, _, given = lowered.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


# --- the hub's API --------------------------------------------------------------------------------------


class HubError(Exception):
    """An error answer of the hub: {"error": {"code", "message", "details"}} (docs/connectors/contract.md,
    "Conventions")."""

    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


class HubClient:
    """
    A small client for the hub's API with an integration key (`Authorization: Bearer <key>`). POSTs carry
    an Idempotency-Key, so a retry after a timeout, a 429, a 5xx or a 409 idempotency_in_progress is safe.
    """

    def __init__(self, hub_url: str, key: str, *, timeout: float = 15.0, retries: int = 3):
        base = hub_url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        self.retries = retries
        self.http = httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        retries: int | None = None,
    ) -> Any:
        """The decoded JSON answer (None for an empty one); HubError for an error answer."""
        headers = {}
        if method.upper() == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                response = self.http.request(method, path, json=json_body, params=params, headers=headers)
            except httpx.TransportError:
                if last:
                    raise
                time.sleep(min(2**attempt, 10))
                continue
            if response.status_code < 400:
                return response.json() if response.content else None
            error = _hub_error(response)
            retryable = (
                response.status_code in (429, 502, 503, 504) or error.code == "idempotency_in_progress"
            )
            if not retryable or last:
                raise error
            time.sleep(_retry_after(response, default=min(2**attempt, 10)))
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json_body=body or {}, idempotency_key=idempotency_key, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json_body=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def paginate(self, path: str, **params: Any) -> Iterator[dict]:
        """Every item of a cursor-paginated list ({"results", "next"}), following `next`."""
        page = self.get(path, **params)
        while True:
            yield from page["results"]
            if not page.get("next"):
                return
            page = self.request("GET", page["next"])  # an absolute URL: httpx keeps it as given

    def subscribe(self, url: str, events: list[str], *, replace: bool = True) -> dict:
        """
        Subscribe `url` to `events`; the answer carries the signing secret this once. With `replace`,
        earlier subscriptions of this integration to the same URL are deleted first: their secrets are lost.
        """
        if replace:
            for existing in self.paginate("/webhooks"):
                if existing["url"] == url:
                    self.delete(f"/webhooks/{existing['id']}")
                    log("unsubscribed", webhook=existing["id"], url=url, reason="replaced")
        return self.post("/webhooks", {"url": url, "events": events})


def _hub_error(response: httpx.Response) -> HubError:
    try:
        error = response.json()["error"]
        return HubError(response.status_code, error["code"], error.get("message", ""), error.get("details"))
    except (ValueError, KeyError, TypeError):
        return HubError(response.status_code, "http_error", response.text[:200])


def _retry_after(response: httpx.Response, *, default: float) -> float:
    value = response.headers.get("retry-after", "")
    return min(float(value), 60.0) if value.isdigit() else default


# --- a threaded JSON HTTP server ------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Reply]


class JsonServer:
    """
    ThreadingHTTPServer answering JSON from plain functions keyed by (method, path). Handler threads are
    daemons, so a request held open never blocks shutdown. `listen` is "host:port" (port 0: any free one).
    """

    def __init__(self, listen: str, routes: dict[tuple[str, str], Route]):
        host, _, port = listen.rpartition(":")
        self.routes = routes
        self.httpd = ThreadingHTTPServer((host or "127.0.0.1", int(port or 0)), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> JsonServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def dispatch(self, request: Request) -> Reply:
        route = self.routes.get((request.method, request.path))
        if route is None:
            if any(path == request.path for _, path in self.routes):
                return Reply(405, {"error": "method not allowed"})
            return Reply(404, {"error": "not found"})
        try:
            return route(request)
        except Exception as exc:  # a sample: report it, answer 500, keep serving
            log("error", where=f"{request.method} {request.path}", error=repr(exc))
            return Reply(500, {"error": "internal error"})


def _handler_for(server: JsonServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the hub's client pools connections

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._reply(Reply(413, {"error": "body too large"}), close=True)
                return
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            self._reply(server.dispatch(request))

        def _reply(self, reply: Reply, *, close: bool = False) -> None:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the caller went away (e.g. its process was killed)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format, *args):  # the base class names it `format`
            pass  # every program logs its own JSON lines instead

    return Handler


# --- running --------------------------------------------------------------------------------------------


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C), for a clean shutdown from the main loop."""
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def env_or(value: str | None, name: str) -> str | None:
    """A command-line value, else the environment's."""
    return value if value else os.environ.get(name) or None


def public_base(server: JsonServer, public_url: str | None) -> str:
    """Where the hub should call this program: --public-url if given (a tunnel, a proxy), else the socket."""
    return (public_url or server.url).rstrip("/")


def handshake(client: HubClient) -> None:
    """Who am I, then the connection handshake (`connecting` → `connected`)."""
    me = client.get("/me")
    log("me", integration=me.get("integration"), grants=me.get("grants"))
    status = client.post("/integration/connect")
    log("connected", status=status.get("status"))


def shut_down(client: HubClient, server, subscription, *, keep_subscription: bool) -> None:
    """Unsubscribe (unless kept), stop the server, close the client: whatever of them was started."""
    log("stopping")
    if subscription is not None and not keep_subscription:
        try:
            client.delete(f"/webhooks/{subscription['id']}", retries=0)
            log("unsubscribed", webhook=subscription["id"])
        except (HubError, OSError) as exc:
            log("error", where="unsubscribe", error=str(exc))
    if server is not None:
        server.stop()
    client.close()
