"""
bench/load.py's webhook receiver: its own process (`load.py --serve-receiver PORT`, a ThreadingHTTPServer)
that verifies every delivery with the `standardwebhooks` package against its subscription's secret,
records it and answers 200; and the handle the driver starts, reads and stops it through.
"""

import contextlib
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from _harness import (
    free_port,
    spawn,
    stop_pid,
    tail,
)

LOAD = Path(__file__).with_name("load.py")  # the receiver runs as `load.py --serve-receiver PORT`

# --- the receiver (its own process: `load.py --serve-receiver PORT`) ------------------------------------


class ReceiverHandler(BaseHTTPRequestHandler):
    """POST /hook/<tag>: verify (standardwebhooks) and record; /__control/…: secrets in, records out."""

    protocol_version = "HTTP/1.1"  # keep-alive: the worker pools its connections
    server: "ReceiverServer"

    def _reply(self, status: int, body: bytes = b"{}", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        arrived = time.time()
        path = urlsplit(self.path).path
        if not path.startswith("/hook/"):
            self._reply(404)
            return
        if len(body) < length:
            # The connection closed mid-body: the sending worker was SIGKILLed. Nobody waits for an answer and
            # the delivery is not done; recorded apart from bad signatures (the body is cut, not forged).
            self.server.record(
                path.removeprefix("/hook/"),
                dict(self.headers.items()),
                body,
                arrived,
                error=f"{TRUNCATED} {len(body)} of {length} bytes",
            )
            self.close_connection = True
            return
        self.server.record(path.removeprefix("/hook/"), dict(self.headers.items()), body, arrived)
        # 200 even to a bad signature: the reconciliation fails on it, retries would only hide it.
        self._reply(200)

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/__control/secrets":
            self.server.set_secrets(json.loads(body))
            self._reply(200)
        else:
            self._reply(404)

    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/__control/ping":
            self._reply(200, b"ok", "text/plain")
        elif parts.path == "/__control/records":
            start = int(parse_qs(parts.query).get("from", ["0"])[0])
            with self.server.lock:
                rows = self.server.records[start:]
            self._reply(200, "".join(json.dumps(row) + "\n" for row in rows).encode(), "text/plain")
        else:
            self._reply(404)

    def log_message(self, format, *args):  # the base class names it `format`
        pass


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int):
        super().__init__(("127.0.0.1", port), ReceiverHandler)
        self.lock = threading.Lock()
        self.webhooks: dict = {}
        self.records: list[list] = []

    def set_secrets(self, secrets_by_tag: dict[str, str]) -> None:
        from standardwebhooks import Webhook

        with self.lock:
            self.webhooks.update({tag: Webhook(secret) for tag, secret in secrets_by_tag.items()})

    def record(self, tag: str, headers: dict, body: bytes, arrived: float, error: str = "") -> None:
        from standardwebhooks import WebhookVerificationError

        lowered = {name.lower(): value for name, value in headers.items()}
        webhook = self.webhooks.get(tag)
        if not error:  # a cut body (`error` given) is not verified: it cannot match
            try:
                if webhook is None:
                    raise WebhookVerificationError(f"no secret for {tag}")
                event = webhook.verify(body, lowered)
            except Exception as exc:  # a bad signature, timestamp or body: recorded, the reconciliation fails
                error = f"{type(exc).__name__}: {exc}"[:200]
        if error:
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
        data = event.get("data") or {}
        row = [
            round(arrived, 6),
            tag,
            lowered.get("webhook-id", ""),
            error,
            event.get("type"),
            str(data.get("id", "")),
            str(data.get("external_id", "") or ""),
            event.get("sequence"),
        ]
        with self.lock:
            self.records.append(row)


TRUNCATED = "truncated:"


def serve_receiver(port: int) -> int:
    server = ReceiverServer(port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.2)
    return 0


RECORD_FIELDS = ("arrived", "tag", "webhook_id", "error", "type", "data_id", "external_id", "sequence")


@dataclass
class Receiver:
    base: str
    control: httpx.Client
    records: list[dict] = field(default_factory=list)

    def hook(self, tag: str) -> str:
        return f"{self.base}/hook/{tag}"

    def set_secrets(self, secrets_by_tag: dict[str, str]) -> None:
        self.control.put("/__control/secrets", json=secrets_by_tag).raise_for_status()

    def fetch(self) -> list[dict]:
        """Every record so far (fetched incrementally)."""
        response = self.control.get(f"/__control/records?from={len(self.records)}")
        response.raise_for_status()
        self.records += [
            dict(zip(RECORD_FIELDS, json.loads(line), strict=True)) for line in response.text.splitlines()
        ]
        return self.records


def start_receiver(stack: contextlib.ExitStack, folder: Path) -> Receiver:
    for _attempt in range(3):
        port = free_port()
        with (folder / "receiver.log").open("ab") as out:
            proc = spawn([sys.executable, LOAD, "--serve-receiver", str(port)], stdout=out, stderr=out)
        stack.callback(stop_pid, proc.pid, signal.SIGTERM, "receiver")
        base = f"http://127.0.0.1:{port}"
        control = httpx.Client(base_url=base, timeout=60, trust_env=False)
        stack.callback(control.close)
        for _ in range(200):
            if proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if control.get("/__control/ping").status_code == 200:
                    print(f"  receiver on 127.0.0.1:{port} (pid {proc.pid})")
                    return Receiver(base, control)
            time.sleep(0.05)
        stop_pid(proc.pid, signal.SIGTERM, "receiver")
    raise SystemExit(f"The receiver did not start:\n{tail(folder / 'receiver.log')}")
