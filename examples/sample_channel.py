#!/usr/bin/env python3
"""
A sample sales channel for Switchyard: pushes orders, learns of shipments by signed webhook.

    python examples/sample_channel.py --hub http://127.0.0.1:8000 --key sy_… \\
        [--listen 127.0.0.1:0] [--public-url URL] [--push-order SKU:QTY[:PRICE][,…]]… [--poll-interval 60] \\
        [--state FILE]

1. `GET /api/v1/me`, then the handshake `POST /api/v1/integration/connect` (connecting → connected).
2. Serves `POST /webhooks` (and `GET /orders`, its own store) on --listen, and subscribes that URL with
   `POST /api/v1/webhooks` to the events of EVENTS; the answer's secret verifies every delivery
   (Standard Webhooks: bad signature → 401; a repeated webhook-id → 200, not handled twice; an event whose
   `sequence` is not above the last one applied for its object, a late retry, is dropped: _inbox.py).
3. Pushes each --push-order with `POST /api/v1/orders` and an Idempotency-Key.
4. On fulfillment.created, confirms it with `GET /api/v1/fulfillments?updated_since=` and marks its order
   dispatched in its in-memory store. On fulfillment.updated it shows the corrected carrier and tracking;
   on fulfillment.canceled (a voided parcel) it takes that dispatch back. (A correction that arrives first
   makes its fulfillment.created older news, dropped: the correction brings the fulfillment as it stands.)
   A poll of that list every --poll-interval seconds (0: off) catches what a lost webhook missed.
5. On product.deleted, delists the SKU: it is no longer offered in the shop (the hub holds an order naming it).
6. Catch-up: after subscribing, and at each poll, it reads the event feed `GET /api/v1/webhook-events`
   after the last event it read there, each event handed to the same handler as a delivery and acted on
   once. With --state FILE that place, the event ids handled, the last sequence per object and the delisted
   SKUs outlive a restart.

Each step is one JSON line on stdout. SIGTERM or Ctrl-C: deletes its subscription and exits 0.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from _connector import (
    HubClient,
    HubError,
    JsonServer,
    Reply,
    env_or,
    handshake,
    log,
    shut_down,
    stop_on_signals,
)
from _inbox import Inbox, StateFile, WebhookEndpoint, subscribe_endpoint

EVENTS = [
    "order.updated",
    "fulfillment.created",
    "fulfillment.updated",
    "fulfillment.canceled",
    "product.deleted",
]
CONFIRM_MARGIN = timedelta(minutes=5)  # how far before the event a confirming list starts


def parse_lines(spec: str, default_price: str) -> list[dict]:
    """ "TSHIRT-S:2,MUG:1:8.00" → order lines."""
    lines = []
    for item in spec.split(","):
        sku, qty, *price = item.strip().split(":")
        lines.append({"sku": sku, "quantity": int(qty), "unit_price": price[0] if price else default_price})
    return lines


class Channel:
    """The shop's side: its orders (by external id) and what it knows of their shipment."""

    def __init__(self, client: HubClient, args: argparse.Namespace, state: StateFile | None = None):
        self.client = client
        self.args = args
        self.state = state or StateFile(None)
        self.prefix = args.external_id_prefix or f"SC{int(time.time())}-"
        self.orders: dict[str, dict] = {}  # external_id → {"id", "number", "status", "dispatched", ...}
        self.by_hub_id: dict[str, str] = {}
        self.fulfillments_seen: set[str] = set()
        # SKUs deleted from the hub's catalog: no longer sold (in the state file: product.deleted comes once)
        self.delisted: set[str] = set(self.state.data.get("delisted", []))
        self.lock = threading.Lock()
        self.work: queue.Queue = queue.Queue()
        self.counter = 0

    # --- orders out -----------------------------------------------------------------------------------

    def push_order(self, lines: list[dict]) -> dict:
        with self.lock:
            self.counter += 1
            external_id = f"{self.prefix}{self.counter}"
        body = {
            "external_id": external_id,
            "number": f"#{external_id}",
            "currency": self.args.currency,
            "customer": {"name": "Sample Customer", "email": "customer@example.com"},
            "shipping_address": {
                "name": "Sample Customer",
                "line1": "1 Sample Street",
                "city": "Springfield",
                "postal_code": "12345",
                "country": "US",
            },
            "lines": lines,
        }
        if self.args.shipping_method:
            body["shipping_method"] = self.args.shipping_method
        # One key per order push: the client's retries reuse it, so a timeout never makes a second order.
        order = self.client.post("/orders", body, idempotency_key=f"order-{external_id}-{uuid.uuid4().hex}")
        with self.lock:
            self.orders[external_id] = {
                "id": order["id"],
                "number": order["number"],
                "status": order["status"],
                "dispatched": False,
                "fulfillments": [],
            }
            self.by_hub_id[order["id"]] = external_id
        log(
            "order_pushed",
            external_id=external_id,
            order=order["id"],
            status=order["status"],
            hold=order.get("hold"),
        )
        return order

    # --- webhooks in (quick: the slow part runs on the worker thread) -----------------------------------

    def on_event(self, event: dict, via: str = "webhook") -> None:
        """An event from the Inbox (a delivery or the feed), new and not older than what it applied."""
        data = event.get("data") or {}
        if event.get("type") == "order.updated":
            with self.lock:
                external_id = self.by_hub_id.get(str(data.get("id")))
                if external_id:
                    self.orders[external_id]["status"] = data.get("status")
            log(
                "order_status",
                order=data.get("id"),
                external_id=external_id,
                status=data.get("status"),
                via=via,
            )
        elif event.get("type") in ("fulfillment.created", "fulfillment.updated", "fulfillment.canceled"):
            self.work.put((event["type"], data, event.get("created_at"), via))
        elif event.get("type") == "product.deleted":
            with self.lock:
                self.delisted.add(data.get("sku"))
                self.state.data["delisted"] = sorted(self.delisted)  # saved by the Inbox, with the event
            log("product_delisted", sku=data.get("sku"), via=via)

    def run_worker(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                kind, data, created_at, via = self.work.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.fulfillment_event(data, created_at, via=via)
            except Exception as exc:  # a sample: log it; the poll (if on) catches the fulfillment later
                log("error", where=kind, fulfillment=data.get("id"), error=repr(exc))

    def fulfillment_event(self, data: dict, created_at: str | None, *, via: str) -> None:
        """fulfillment.created, .updated or .canceled: data is the fulfillment as that change left it."""
        with self.lock:
            seen = str(data.get("id")) in self.fulfillments_seen
        if seen:
            self.apply_correction(data, via=via)
        else:  # fulfillment.created, or a correction that came first (its created is then older news)
            self.fulfillment_webhook(data, created_at, via=via)

    def fulfillment_webhook(self, data: dict, created_at: str | None, *, via: str = "webhook") -> None:
        fulfillment = dict(data)
        confirmed = False
        if self.args.confirm:
            found = self.find_fulfillment(str(data["id"]), created_at)
            if found is not None:
                fulfillment, confirmed = found, True
        self.mark_dispatched(fulfillment, via=via, confirmed=confirmed)

    def find_fulfillment(self, fulfillment_id: str, around: str | None) -> dict | None:
        try:
            since = datetime.fromisoformat(around) - CONFIRM_MARGIN if around else None
        except ValueError:
            since = None
        since = since or datetime.now(UTC) - timedelta(hours=1)
        for item in self.client.paginate("/fulfillments", updated_since=since.isoformat(), limit=100):
            if item["id"] == fulfillment_id:
                return item
        return None

    # --- the store --------------------------------------------------------------------------------------

    def external_id_of(self, hub_order_id: str) -> str | None:
        with self.lock:
            known = self.by_hub_id.get(hub_order_id)
        if known:
            return known
        try:  # an order of an earlier run: ask the hub which one it is
            order = self.client.get(f"/orders/{hub_order_id}")
        except HubError:
            return None
        with self.lock:
            self.orders.setdefault(
                order["external_id"],
                {
                    "id": order["id"],
                    "number": order["number"],
                    "status": order["status"],
                    "dispatched": False,
                    "fulfillments": [],
                },
            )
            self.by_hub_id[order["id"]] = order["external_id"]
        return order["external_id"]

    def mark_dispatched(self, fulfillment: dict, *, via: str, confirmed: bool) -> None:
        fulfillment_id = str(fulfillment["id"])
        hub_order_id = str(fulfillment["order"])
        voided = fulfillment.get("status") == "canceled"  # voided before we got to it: nothing shipped
        external_id = None if voided else self.external_id_of(hub_order_id)
        with self.lock:
            if fulfillment_id in self.fulfillments_seen:
                return
            self.fulfillments_seen.add(fulfillment_id)
            if external_id is None:
                order = None
            else:
                order = self.orders[external_id]
                order["dispatched"] = True
                order["fulfillments"].append(
                    {
                        "id": fulfillment_id,
                        "carrier": fulfillment.get("carrier"),
                        "tracking_number": fulfillment.get("tracking_number"),
                    }
                )
        if order is None:
            reason = "voided" if voided else "unknown order"
            log("fulfillment_ignored", fulfillment=fulfillment_id, order=hub_order_id, reason=reason)
            return
        log(
            "order_dispatched",
            external_id=external_id,
            order=hub_order_id,
            fulfillment=fulfillment_id,
            carrier=fulfillment.get("carrier"),
            tracking_number=fulfillment.get("tracking_number"),
            lines=fulfillment.get("lines"),
            via=via,
            confirmed=confirmed,
        )

    def apply_correction(self, fulfillment: dict, *, via: str) -> None:
        """A fulfillment we marked changed: new carrier or tracking, or voided (status canceled)."""
        fulfillment_id = str(fulfillment["id"])
        with self.lock:
            external_id = self.by_hub_id.get(str(fulfillment["order"]))
            order = self.orders.get(external_id) if external_id else None
            shown = [f for f in order["fulfillments"] if f["id"] == fulfillment_id] if order else []
            if not shown:
                return  # not marked yet: fulfillment.created (or the poll) brings it as it now stands
            [shown] = shown
            if fulfillment.get("status") == "canceled":
                order["fulfillments"].remove(shown)
                order["dispatched"] = bool(order["fulfillments"])
                what = "dispatch_withdrawn"
            elif (shown["carrier"], shown["tracking_number"]) != (
                fulfillment.get("carrier"),
                fulfillment.get("tracking_number"),
            ):
                shown.update(
                    carrier=fulfillment.get("carrier"), tracking_number=fulfillment.get("tracking_number")
                )
                what = "tracking_updated"
            else:
                return  # nothing new (a repeat, or a poll that sees it again)
        log(
            what,
            external_id=external_id,
            order=fulfillment["order"],
            fulfillment=fulfillment_id,
            carrier=fulfillment.get("carrier"),
            tracking_number=fulfillment.get("tracking_number"),
            via=via,
        )

    def poll_fulfillments(self, since: datetime) -> None:
        """The fallback: shipments and corrections of our orders the webhooks did not bring (yet)."""
        count = 0
        for item in self.client.paginate("/fulfillments", updated_since=since.isoformat(), limit=100):
            count += 1
            with self.lock:
                ours, seen = item["order"] in self.by_hub_id, item["id"] in self.fulfillments_seen
            if ours and not seen:  # new, and of an order this run pushed
                self.mark_dispatched(item, via="poll", confirmed=True)
            elif ours:
                self.apply_correction(item, via="poll")
        log("polled", resource="fulfillments", since=since.isoformat(), seen=count)

    def store(self, request) -> Reply:
        with self.lock:
            return Reply(200, {"orders": self.orders, "delisted": sorted(self.delisted)})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub", required=True, help="The hub's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", help="The channel's integration key (default: $SWITCHYARD_KEY)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port for webhooks (port 0: any)")
    parser.add_argument("--public-url", help="The base URL the hub reaches --listen at (default: it)")
    parser.add_argument("--events", default=",".join(EVENTS), help="Event types to subscribe to")
    parser.add_argument(
        "--push-order",
        action="append",
        default=[],
        metavar="SKU:QTY[:PRICE][,…]",
        help="An order to push at start (repeatable)",
    )
    parser.add_argument("--price", default="10.00", help="Unit price of lines that name none")
    parser.add_argument("--currency", default="USD")
    parser.add_argument("--shipping-method", help="The channel's shipping-method code (mapped by the hub)")
    parser.add_argument("--external-id-prefix", help="Prefix of the order ids (default: SC<time>-)")
    parser.add_argument(
        "--poll-interval", type=float, default=60.0, help="Seconds between fulfillment polls (0: off)"
    )
    parser.add_argument(
        "--no-confirm",
        dest="confirm",
        action="store_false",
        help="Do not confirm a fulfillment.created webhook with GET /fulfillments",
    )
    parser.add_argument(
        "--keep-subscription", action="store_true", help="Leave the webhook subscription on exit"
    )
    parser.add_argument(
        "--state", help="A JSON file for what must outlive a restart: its place in the event feed, and more"
    )
    args = parser.parse_args(argv)
    args.key = env_or(args.key, "SWITCHYARD_KEY")
    if not args.key:
        parser.error("--key (or $SWITCHYARD_KEY) is required")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    stop = stop_on_signals()
    client = HubClient(args.hub, args.key)
    server = subscription = None
    try:
        handshake(client)

        state = StateFile(args.state)
        channel = Channel(client, args, state)
        inbox = Inbox(channel.on_event, state)
        endpoint = WebhookEndpoint(inbox)
        server = JsonServer(
            args.listen, {("POST", "/webhooks"): endpoint, ("GET", "/orders"): channel.store}
        ).start()
        log("listening", url=server.url)
        events = [e for e in args.events.split(",") if e]
        subscription = subscribe_endpoint(client, server, endpoint, events, args.public_url)
        threading.Thread(target=channel.run_worker, args=(stop,), name="worker", daemon=True).start()
        try:  # what happened while it was away (a first run: from now on)
            inbox.catch_up(client, events)
        except (HubError, OSError) as exc:
            log("error", where="catch-up", error=str(exc))

        for spec in args.push_order:
            channel.push_order(parse_lines(spec, args.price))

        since = datetime.now(UTC) - timedelta(hours=1)
        next_poll = time.monotonic() + args.poll_interval
        while not stop.is_set():
            if args.poll_interval > 0 and time.monotonic() >= next_poll:
                started = datetime.now(UTC)
                try:
                    inbox.catch_up(client, events)
                    channel.poll_fulfillments(since)
                    since = started - timedelta(minutes=1)  # overlap: repeats are skipped by id
                except (HubError, OSError) as exc:
                    log("error", where="poll", error=str(exc))
                next_poll = time.monotonic() + args.poll_interval
            stop.wait(1.0)
    except HubError as exc:
        log("fatal", status=exc.status, code=exc.code, message=exc.message, details=exc.details)
        return 1
    finally:
        shut_down(client, server, subscription, keep_subscription=args.keep_subscription)
    log("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
