"""
Webhook receivers served in the calling process (examples/_connector.py's JsonServer): each records every
request it gets and verifies it with the examples' own `_connector.verify`, as a connector author's would.
"""

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.procs import ROOT

EXAMPLES = ROOT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # the examples import `_connector` as a top-level module


@dataclass
class Received:
    at: float  # time.monotonic()
    webhook_id: str
    verified: bool
    body: bytes
    status: int = 0
    held: bool = False  # held open until release(): its answer may never have been read

    @property
    def data(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """
    A webhook receiver that records every request and verifies it with the examples' `_connector.verify`.
    `answers` are (status, headers) used one per request, then `default`. With `hold_first`, the first
    request of each webhook-id is held open until `release()` (after it, none is).
    """

    def __init__(self, answers=(), *, hold_first: bool = False, default: tuple[int, dict] = (200, {})):
        self.secret = ""
        self.answers = list(answers)
        self.default = default
        self.hold_first = hold_first
        self.requests: list[Received] = []
        self.changed = threading.Condition()
        self.released = threading.Event()

    def __call__(self, request):
        from _connector import Reply, WebhookVerificationError, verify

        try:
            verify(self.secret, request.headers, request.body)
            verified = True
        except WebhookVerificationError:
            verified = False
        item = Received(time.monotonic(), request.headers.get("webhook-id", ""), verified, request.body)
        with self.changed:
            first = all(r.webhook_id != item.webhook_id for r in self.requests)
            self.requests.append(item)
            item.held = self.hold_first and first and not self.released.is_set()
            # A held request is answered 200 once released (read by nobody: the worker is killed meanwhile).
            answer = (200, {}) if item.held else self.answers.pop(0) if self.answers else self.default
            item.status = answer[0]
            self.changed.notify_all()
        if item.held:
            self.released.wait(60)  # the hub's worker is killed meanwhile: nobody reads this answer
        return Reply(answer[0], {"ok": answer[0] < 300}, dict(answer[1]))

    def release(self) -> None:
        self.released.set()

    def wait_for(self, count: int, timeout: float, where: Callable[[Received], bool] = lambda r: True):
        deadline = time.monotonic() + timeout
        with self.changed:
            while len([r for r in self.requests if where(r)]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} requests expected within {timeout} s, got {self.requests}")
                self.changed.wait(left)
            return [r for r in self.requests if where(r)]


class Receivers:
    """`start(Receiver(...))` serves it at <url>/hook on 127.0.0.1 until `stop_all()`."""

    def __init__(self):
        self.servers = []

    def start(self, receiver: Receiver) -> str:
        from _connector import JsonServer

        server = JsonServer("127.0.0.1:0", {("POST", "/hook"): receiver}).start()
        self.servers.append((server, receiver))
        return server.url + "/hook"

    def stop_all(self) -> None:
        for server, receiver in self.servers:
            receiver.release()
            server.stop()
