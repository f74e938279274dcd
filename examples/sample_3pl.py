#!/usr/bin/env python3
"""
A sample 3PL for Switchyard: reports its stock, ships what the hub routes to it.

    python examples/sample_3pl.py --hub http://127.0.0.1:8000 --key sy_… \\
        [--listen 127.0.0.1:0] [--public-url URL] [--location-name NAME] [--stock SKU=N[,…]]… \\
        [--carrier UPS] [--poll-interval 60] [--refuse-sku SKU[,…]] [--relabel] [--state FILE]

1. `GET /api/v1/me`, then the handshake `POST /api/v1/integration/connect`.
2. Finds its location among `GET /api/v1/locations` (a key sees those it manages) or creates it with
   `POST /api/v1/locations`, then sets its on-hand counts there with `POST /api/v1/inventory`.
3. Serves `POST /webhooks` on --listen and subscribes it to the events of EVENTS with
   `POST /api/v1/webhooks`; every delivery's Standard Webhooks signature is verified (bad → 401), a
   repeated webhook-id is not handled twice, and an event whose `sequence` is not above the last one applied
   for its object (a late retry) is dropped (_inbox.py).
4. For each shipping request (from a webhook, or the fallback poll of
   `GET /api/v1/shipping-requests?status=pending` every --poll-interval seconds; 0: off):
   `GET /api/v1/shipping-requests/{id}`; one naming a --refuse-sku is refused with
   `POST …/{id}/reject` and a reason (the hub routes the order elsewhere, or holds it); the others get
   `POST …/{id}/acknowledge`, then `POST /api/v1/fulfillments` with the carrier, a tracking number and the
   lines still to ship. With --relabel, each parcel's tracking number is then corrected with
   `PATCH /api/v1/fulfillments/{id}`, as when a carrier replaces a label.
5. shipping_request.updated (the channel changed the order's address, contact or shipping method after
   routing; the envelope's `changes` names what): its copy of the request takes the new ones, and the parcel
   is labelled from that copy when it ships. One that had already shipped cannot follow: it says so
   (`changed_after_shipping`) and tells the org admin with `POST /api/v1/exceptions`.
6. product.deleted: the SKU is left out of its stock pushes from then on (the hub would refuse its count as
   `archived_sku`).
7. Catch-up: after subscribing, and at each poll, it reads the event feed `GET /api/v1/webhook-events`
   after the last event it read there and hands each event to the same handler as a delivery, so what
   happened while it was down is acted on, once. With --state FILE that place, the event ids handled, the
   last sequence per object and the archived SKUs outlive a restart.

Each step is one JSON line on stdout. SIGTERM or Ctrl-C: deletes its subscription and exits 0.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from datetime import datetime

from _connector import (
    HubClient,
    HubError,
    JsonServer,
    env_or,
    handshake,
    log,
    shut_down,
    stop_on_signals,
    utc_now_iso,
)
from _inbox import Inbox, StateFile, WebhookEndpoint, subscribe_endpoint

EVENTS = [
    "shipping_request.created",
    "shipping_request.updated",
    "shipping_request.canceled",
    "product.deleted",
]
OPEN = ("pending", "acknowledged", "partially_fulfilled")


def parse_stock(specs: list[str]) -> list[dict]:
    """["TSHIRT-S=10,MUG=4"] → [{"sku": "TSHIRT-S", "on_hand": 10}, …]"""
    items = []
    for spec in specs:
        for item in spec.split(","):
            sku, _, count = item.strip().partition("=")
            items.append({"sku": sku, "on_hand": int(count)})
    return items


class Warehouse:
    """The 3PL's side: one location, and the shipping requests it has handled."""

    def __init__(self, client: HubClient, args: argparse.Namespace, state: StateFile | None = None):
        self.client = client
        self.args = args
        self.state = state or StateFile(None)
        self.location: dict | None = None
        self.work: queue.Queue = queue.Queue()
        self.queued: set[str] = set()  # queued or handled: the webhook and the poll may both name one
        self.canceled: set[str] = set()
        self.requests: dict[str, dict] = {}  # its copy of each request, kept current by the events
        self.labelled: dict[str, dict] = {}  # request id → where its parcel went, once shipped
        # SKUs deleted from the catalog: no longer pushed (in the state file: product.deleted comes once)
        self.archived: set[str] = set(self.state.data.get("archived", []))
        self.refuse = {sku for spec in args.refuse_sku for sku in spec.split(",") if sku}
        self.lock = threading.RLock()  # re-entered: request_changed remembers while holding it

    def ensure_location(self) -> dict:
        for location in self.client.paginate("/locations"):
            if location["name"] == self.args.location_name:
                self.location = location
                log("location", id=location["id"], name=location["name"], created=False)
                return location
        self.location = self.client.post(
            "/locations",
            {
                "name": self.args.location_name,
                "kind": "3pl",
                "address": {"line1": "1 Depot Road", "city": "Springfield", "country": "US"},
            },
        )
        log("location", id=self.location["id"], name=self.location["name"], created=True)
        return self.location

    def push_stock(self, items: list[dict]) -> dict:
        with self.lock:
            items = [item for item in items if item["sku"] not in self.archived]
        result = self.client.post("/inventory", {"location": self.location["id"], "items": items})
        log("stock_pushed", location=self.location["id"], updated=result["updated"], errors=result["errors"])
        return result

    # --- shipping requests in ----------------------------------------------------------------------------

    def on_event(self, event: dict, via: str = "webhook") -> None:
        """An event from the Inbox (a delivery or the feed), new and not older than what it applied."""
        data = event.get("data") or {}
        request_id = str(data.get("id"))
        if event.get("type") == "shipping_request.created":
            self.remember(data)
            self.enqueue(request_id, via=via)
        elif event.get("type") == "shipping_request.updated":
            self.request_changed(data, event.get("changes") or [], via=via)
        elif event.get("type") == "shipping_request.canceled":
            with self.lock:
                self.canceled.add(request_id)
            log("shipping_request_canceled", shipping_request=request_id)
        elif event.get("type") == "product.deleted":
            with self.lock:
                self.archived.add(data.get("sku"))
                self.state.data["archived"] = sorted(self.archived)  # saved by the Inbox, with the event
            log("product_archived", sku=data.get("sku"), via=via)

    def remember(self, request: dict) -> dict:
        """Keep the newer of our copy and `request` (by updated_at: a GET may answer before an event lands)."""
        with self.lock:
            mine = self.requests.get(request["id"])
            if mine is None or _when(request) >= _when(mine):
                self.requests[request["id"]] = mine = request
            return mine

    def request_changed(self, request: dict, changes: list[str], *, via: str) -> None:
        """The order's address, contact or method changed after routing: label with the new ones, if still can."""
        request_id = request["id"]
        with self.lock:  # labelled and remembered at once: the worker labels under the same lock
            shipped_to = self.labelled.get(request_id)
            if shipped_to is None:
                self.remember(request)
        if shipped_to is not None:
            # The parcel already left with the old details: a person must sort it out with the carrier.
            log("changed_after_shipping", shipping_request=request_id, changes=changes, shipped_to=shipped_to)
            self.work.put(("report_change", request_id, changes))
            return
        log(
            "shipping_request_changed",
            shipping_request=request_id,
            changes=changes,
            ship_to=request["order"].get("shipping_address"),
            contact=request["order"].get("customer"),
            shipping_method=request.get("shipping_method"),
            via=via,
        )
        self.enqueue(request_id, via=via)  # new to us if its shipping_request.created was older news

    def enqueue(self, request_id: str, *, via: str) -> None:
        with self.lock:
            if request_id in self.queued:
                return
            self.queued.add(request_id)
        self.work.put(("handle", request_id, via))

    def poll(self) -> None:
        """The fallback: pending requests whose webhook did not arrive (or has not yet)."""
        pending = list(self.client.paginate("/shipping-requests", status="pending", limit=100))
        for request in pending:
            self.enqueue(request["id"], via="poll")
        log("polled", resource="shipping-requests", pending=len(pending))

    def run_worker(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                task, request_id, detail = self.work.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if task == "report_change":
                    self.report_change(request_id, detail)
                else:
                    self.handle(request_id, via=detail)
            except Exception as exc:
                # Forget it, so the next poll (or a webhook retry) tries again.
                with self.lock:
                    self.queued.discard(request_id)
                log("error", where="shipping request", shipping_request=request_id, error=repr(exc))

    def handle(self, request_id: str, *, via: str) -> None:
        request = self.remember(self.client.get(f"/shipping-requests/{request_id}"))
        log(
            "shipping_request",
            id=request_id,
            status=request["status"],
            order=request["order"],
            lines=request["lines"],
            via=via,
        )
        with self.lock:
            canceled = request_id in self.canceled
        if canceled or request["status"] not in OPEN:
            log("skipped", shipping_request=request_id, status=request["status"])
            return
        order = request["order"]["id"]
        refused = sorted({line["sku"] for line in request["lines"]} & self.refuse)
        if refused and request["status"] in ("pending", "acknowledged"):
            # Refused with a reason the org admin reads; the hub releases the stock and routes elsewhere.
            reason = f"Cannot ship {', '.join(refused)} from {self.location['name']}: stock damaged"
            request = self.client.post(
                f"/shipping-requests/{request_id}/reject",
                {"reason": reason},
                idempotency_key=f"reject-{request_id}",
            )
            log("rejected", shipping_request=request_id, order=order, status=request["status"], reason=reason)
            return
        if request["status"] == "pending":
            request = self.client.post(
                f"/shipping-requests/{request_id}/acknowledge", idempotency_key=f"ack-{request_id}"
            )
            log("acknowledged", shipping_request=request_id, status=request["status"])
        if self.args.no_ship:
            return
        if self.args.ship_delay:
            time.sleep(self.args.ship_delay)  # picking and packing
        lines = [
            {"sku": line["sku"], "quantity": line["quantity"] - line.get("fulfilled_quantity", 0)}
            for line in request["lines"]
        ]
        lines = [line for line in lines if line["quantity"] > 0]
        if not lines:
            return
        with self.lock:  # the label, from our copy as it is now: a change that arrived while packing counts
            current = self.requests[request_id]
            label = self.labelled[request_id] = {
                "ship_to": current["order"].get("shipping_address"),
                "contact": current["order"].get("customer"),
                "shipping_method": current.get("shipping_method"),
            }
        try:
            self.ship(request_id, request, lines, label, via=via)
        except BaseException:
            with self.lock:
                self.labelled.pop(request_id, None)  # not shipped after all: a change may still reach it
            raise

    def ship(self, request_id: str, request: dict, lines: list[dict], label: dict, *, via: str) -> None:
        tracking = f"1ZSAMPLE{request_id:0>10}"
        body = {
            "shipping_request": request_id,
            # The 3PL's own id: sent again (a retry, a restart), the hub returns the first fulfillment.
            "external_id": f"{self.args.fulfillment_prefix}{request_id}",
            "carrier": self.args.carrier,
            "tracking_number": tracking,
            "tracking_url": f"https://tracking.example.com/{tracking}",
            "lines": lines,
            "shipped_at": utc_now_iso(),
        }
        fulfillment = self.client.post("/fulfillments", body, idempotency_key=f"ship-{request_id}")
        log(
            "shipped",
            shipping_request=request_id,
            order=request["order"]["id"],
            fulfillment=fulfillment["id"],
            carrier=fulfillment["carrier"],
            tracking_number=fulfillment["tracking_number"],
            lines=fulfillment["lines"],
            ship_to=label["ship_to"],
            contact=label["contact"],
            shipping_method=label["shipping_method"],
            via=via,
        )
        if self.args.relabel:
            self.relabel(fulfillment)

    def report_change(self, request_id: str, changes: list[str]) -> None:
        """Tell the org admin that a change reached us after the parcel left (POST /exceptions)."""
        message = (
            f"The order changed ({', '.join(changes) or 'details'}) after {self.location['name']} shipped "
            f"request {request_id}: the parcel left with the old details."
        )
        self.client.post(
            "/exceptions",
            {"message": message, "entity_type": "shipping_request", "entity_id": request_id},
            idempotency_key=f"changed-{request_id}-{'-'.join(changes)}",
        )
        log("exception_reported", shipping_request=request_id, message=message)

    def relabel(self, fulfillment: dict) -> None:
        """The carrier replaced the parcel's label: correct its tracking (the channel gets fulfillment.updated)."""
        tracking = fulfillment["tracking_number"] + "R"
        fixed = self.client.patch(
            f"/fulfillments/{fulfillment['id']}",
            {"tracking_number": tracking, "tracking_url": f"https://tracking.example.com/{tracking}"},
        )
        log("relabeled", fulfillment=fixed["id"], tracking_number=fixed["tracking_number"])


def _when(request: dict) -> datetime:
    return datetime.fromisoformat(request.get("updated_at") or "1970-01-01T00:00:00+00:00")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub", required=True, help="The hub's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", help="The 3PL's integration key (default: $SWITCHYARD_KEY)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port for webhooks (port 0: any)")
    parser.add_argument("--public-url", help="The base URL the hub reaches --listen at (default: it)")
    parser.add_argument("--location-name", default="Sample 3PL", help="Its location (found or created)")
    parser.add_argument(
        "--stock", action="append", default=[], metavar="SKU=N[,…]", help="On-hand counts to push"
    )
    parser.add_argument("--carrier", default="UPS")
    parser.add_argument("--fulfillment-prefix", default="S3PL-", help="Prefix of its fulfillment ids")
    parser.add_argument("--ship-delay", type=float, default=0.0, help="Seconds between ack and shipment")
    parser.add_argument("--no-ship", action="store_true", help="Acknowledge requests but never ship")
    parser.add_argument(
        "--refuse-sku",
        action="append",
        default=[],
        metavar="SKU[,…]",
        help="SKUs it cannot ship (damaged stock): a request naming one is rejected with a reason",
    )
    parser.add_argument(
        "--relabel", action="store_true", help="Correct each parcel's tracking number after shipping it"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=60.0,
        help="Seconds between polls of pending shipping requests (0: off, webhooks only)",
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
        warehouse = Warehouse(client, args, state)
        warehouse.ensure_location()
        items = parse_stock(args.stock)
        if items:
            warehouse.push_stock(items)

        inbox = Inbox(warehouse.on_event, state)
        endpoint = WebhookEndpoint(inbox)
        server = JsonServer(args.listen, {("POST", "/webhooks"): endpoint}).start()
        log("listening", url=server.url)
        subscription = subscribe_endpoint(client, server, endpoint, EVENTS, args.public_url)
        threading.Thread(target=warehouse.run_worker, args=(stop,), name="worker", daemon=True).start()

        next_poll = time.monotonic()  # at start: the feed (and the poll) bring what came while it was away
        while not stop.is_set():
            if time.monotonic() >= next_poll:
                try:
                    inbox.catch_up(client, EVENTS)
                    if args.poll_interval > 0:
                        warehouse.poll()
                except (HubError, OSError) as exc:
                    log("error", where="catch-up", error=str(exc))
                next_poll = time.monotonic() + (args.poll_interval or float("inf"))
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
