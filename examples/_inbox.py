"""
Events in, for the sample connectors: the webhook endpoint and the catch-up feed, both handing each event to
one Inbox that acts on it once (docs/connectors/09-webhooks.md: "Retries and duplicates", "Ordering",
"Catching up: the event feed"). Webhooks are for speed, the feed `GET /api/v1/webhook-events` for
completeness: a program that was down reads the feed after the last event it read there, and an event that
came both ways is acted on once — by its id, and by the rule of `sequence` (counted per object: an event
not above the highest applied for its object is older news, dropped).

The examples run as `python examples/<name>.py`, so this module is imported as plain `_inbox`.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _connector import (
    HubClient,
    HubError,
    JsonServer,
    Reply,
    Request,
    WebhookVerificationError,
    log,
    public_base,
    utc_now_iso,
    verify,
)

FEED_PAGE = 100  # events per page of the feed


class Deduplicator:
    """The webhook-ids already handled (bounded); a retried delivery carries the same id
    (docs/connectors/contract.md)."""

    def __init__(self, size: int = 10_000, done: list[str] = ()):
        self.size = size
        self._done: OrderedDict[str, None] = OrderedDict.fromkeys(done)
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def begin(self, msg_id: str) -> str:
        """Returns "new" (handle it, then call finish), "duplicate", or "busy" (being handled right now)."""
        with self._lock:
            if msg_id in self._done:
                return "duplicate"
            if msg_id in self._busy:
                return "busy"
            self._busy.add(msg_id)
            return "new"

    def finish(self, msg_id: str, *, handled: bool) -> None:
        """Record the outcome; an id whose handling failed is forgotten, so its retry is handled again."""
        with self._lock:
            self._busy.discard(msg_id)
            if handled:
                self._done[msg_id] = None
                while len(self._done) > self.size:
                    self._done.popitem(last=False)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._done)


class StateFile:
    """A JSON object in a file, written whole (a temporary file renamed over it); None: kept in memory."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {}
        if self.path and self.path.exists():
            self.data = json.loads(self.path.read_text() or "{}")

    def save(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.data, sort_keys=True))
        os.replace(temporary, self.path)


def object_key(event: dict) -> str | None:
    """What `sequence` counts for: the object's type (the event type's first part) and id."""
    object_id = (event.get("data") or {}).get("id")
    return None if object_id is None else f"{event.get('type', '').split('.')[0]}:{object_id}"


class Inbox:
    """
    Every event, from a webhook or the feed, passes here: an id already handled is a "duplicate"; one whose
    `sequence` is not above the highest applied for its object is "stale" (a late retry: newer news was
    applied); the rest go to `on_event(event, via)` (quick: queue slow work; `via` is "webhook" or "feed")
    and are "handled". With a state file, the
    ids, the sequences and the place in the feed outlive a restart, so nothing is acted on twice.
    """

    def __init__(self, on_event: Callable[[dict, str], None], state: StateFile | None = None):
        self.on_event = on_event
        self.state = state or StateFile(None)
        inbox = self.state.data.setdefault("inbox", {})
        self.latest: dict[str, int] = inbox.setdefault("sequences", {})
        self.seen = Deduplicator(done=inbox.get("handled", []))
        # Events are applied one at a time: two about one object never pass the sequence check together.
        self.lock = threading.Lock()

    def take(self, event: dict, *, event_id: str | None = None, via: str = "webhook") -> str:
        """Returns handled, duplicate, stale or busy; raises what `on_event` raised (then nothing is kept)."""
        event_id = event_id or event.get("id", "")
        state = self.seen.begin(event_id)
        if state != "new":
            return state
        try:
            with self.lock:
                key, sequence = object_key(event), event.get("sequence")
                if key and isinstance(sequence, int) and sequence <= self.latest.get(key, 0):
                    outcome = "stale"
                else:
                    self.on_event(event, via)
                    outcome = "handled"
                    if key and isinstance(sequence, int):
                        self.latest[key] = sequence
                self.seen.finish(event_id, handled=True)
                self.save()
        except BaseException:
            self.seen.finish(event_id, handled=False)
            raise
        return outcome

    def save(self) -> None:
        self.state.data["inbox"]["handled"] = self.seen.ids()
        self.state.save()

    def catch_up(self, client: HubClient, types: list[str]) -> int:
        """
        Read the feed after the last event read there (first run: from now on) and take each event; the place
        is saved after each one. An event whose handling fails stops the reading there: the next call retries
        it. Returns how many events were handled.
        """
        inbox = self.state.data["inbox"]
        if not inbox.get("feed_after") and not inbox.get("feed_since"):
            with self.lock:
                inbox["feed_since"] = utc_now_iso()  # nothing before our first start is ours to act on
                self.save()
            log("caught_up", read=0, handled=0, since=inbox["feed_since"])
            return 0
        params = {"type": ",".join(types), "limit": FEED_PAGE}
        if inbox.get("feed_after"):
            params["after"] = inbox["feed_after"]
        else:
            params["updated_since"] = inbox["feed_since"]
        read = handled = 0
        try:
            for event in client.paginate("/webhook-events", **params):
                read += 1
                outcome = self.take(event, via="feed")
                log(
                    "feed",
                    type=event["type"],
                    event_id=event["id"],
                    sequence=event.get("sequence"),
                    data_id=(event.get("data") or {}).get("id"),
                    outcome=outcome,
                )
                if outcome == "busy":  # a webhook of it is being handled right now: read it again next time
                    break
                handled += outcome == "handled"
                with self.lock:
                    inbox.update(feed_after=event["id"], feed_since=event["created_at"])
                    self.save()
        except HubError as exc:
            if exc.status != 400 or "after" not in (exc.details or {}):
                raise
            # Our place is past the feed's retention: start again from its time (repeats are skipped).
            log("feed_restart", after=inbox.pop("feed_after"), since=inbox.get("feed_since"))
        log("caught_up", read=read, handled=handled, after=inbox.get("feed_after"))
        return handled


class WebhookEndpoint:
    """
    A route for webhook deliveries: verify the signature (401 if bad), hand the event to the Inbox (which
    acts on it unless it is a repeat or older news than what it has: 200 either way), answer 200. Until
    `secret` is known (it comes back from the subscription), deliveries get 503 and the hub retries them.
    """

    def __init__(
        self, inbox: Inbox | Callable[[dict], None], *, secret: str | None = None, tolerance: int = 300
    ):
        self.inbox = inbox if isinstance(inbox, Inbox) else Inbox(lambda event, via: inbox(event))
        self.secret = secret
        self.tolerance = tolerance

    def __call__(self, request: Request) -> Reply:
        msg_id = request.headers.get("webhook-id", "")
        if not self.secret:
            log("webhook", webhook_id=msg_id, verified=None, status=503, reason="no secret yet")
            return Reply(503, {"error": "not ready"}, {"Retry-After": "5"})
        try:
            verify(self.secret, request.headers, request.body, tolerance=self.tolerance)
        except WebhookVerificationError as exc:
            log("webhook", webhook_id=msg_id, verified=False, status=401, reason=str(exc))
            return Reply(401, {"error": "invalid signature"})
        try:
            event = request.json()
        except ValueError:
            log("webhook", webhook_id=msg_id, verified=True, status=400, reason="body is not JSON")
            return Reply(400, {"error": "body is not JSON"})
        fields = {
            "type": event.get("type"),
            "webhook_id": msg_id,
            "sequence": event.get("sequence"),
            "verified": True,
        }
        try:
            outcome = self.inbox.take(event, event_id=msg_id)
        except Exception as exc:
            log("webhook", **fields, status=500, error=repr(exc))
            return Reply(500, {"error": "handler failed"})
        if outcome in ("duplicate", "busy"):
            # A retry of what was handled (or is being handled right now): acknowledge, do nothing twice.
            status = 200 if outcome == "duplicate" else 409
            log("webhook", **fields, duplicate=True, status=status)
            return Reply(status, {"ok": outcome == "duplicate", "duplicate": True})
        if outcome == "stale":
            log("webhook", **fields, stale=True, status=200)
            return Reply(200, {"ok": True, "stale": True})
        log("webhook", **fields, data_id=(event.get("data") or {}).get("id"), status=200)
        return Reply(200, {"ok": True})


def subscribe_endpoint(
    client: HubClient, server: JsonServer, endpoint: WebhookEndpoint, events, public_url: str | None
) -> dict:
    """Subscribe the server's /webhooks to `events`; the endpoint verifies with the secret shown once."""
    url = public_base(server, public_url) + "/webhooks"
    subscription = client.subscribe(url, list(events))
    endpoint.secret = subscription["secret"]
    log("subscribed", webhook=subscription["id"], url=url, events=subscription["events"])
    return subscription
