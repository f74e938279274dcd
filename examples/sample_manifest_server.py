#!/usr/bin/env python3
"""
A sample manifest connector: a server the HUB calls (examples/MANIFEST_PROTOCOL.md, the full spec).

    python examples/sample_manifest_server.py [--listen 127.0.0.1:8765] [--secret whsec_…] \\
        [--auth-token TOKEN] [--demo-orders N] [--orders-file FILE] [--fail-health]

The protocol, in short. Every call is `POST <base_url><path>` with a JSON body, signed like a webhook
(webhook-id, webhook-timestamp, webhook-signature = "v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}"
keyed with the base64 part of the integration's whsec_ secret>") and carrying
`Authorization: Bearer <auth token>` from the integration's settings. A bad token or signature: 401.

    POST /health     {}                                   → {"ok": true}
    POST /orders     {"cursor": str|null, "limit": n}     → {"orders": [order bodies as POST /api/v1/orders],
                                                             "next_cursor": str|null (null: keep yours)}
    POST /dispatch   {"fulfillments": [{"id", "order_external_id", "carrier", "tracking_number", …}]}
                                                          → {"accepted": n}
    POST /inventory  {"items": [{"sku", "available"}]}    → {"accepted": n}
    POST /prices     {"items": [{"sku", "price"}]}        → {"accepted": n}
    errors: HTTP 200 {"error": "message"} (or any non-2xx)

Signature checks happen only with --secret (or $MANIFEST_SECRET), token checks only with --auth-token (or
$MANIFEST_AUTH_TOKEN). Paths are configurable (--health-path, …).

For tests and demos, not part of the protocol (turn off with --no-control):
    GET  /_control   → what it holds: orders, dispatched fulfillments, stock, prices, failure modes, calls
    POST /_control   {"fail": {"health": "error"|"http_500"|"hang"|null, …}, "add_orders": [...], "reset": true}
A failure mode makes an endpoint answer {"error": …} with 200 ("error"), a 500 ("http_500"), or nothing for
--hang-seconds ("hang", to test the hub's timeout); null puts it back to normal. --fail-health starts
with health in "error".

Each call is one JSON line on stdout. SIGTERM or Ctrl-C: exits 0.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from collections.abc import Callable

from _connector import (
    JsonServer,
    Reply,
    Request,
    WebhookVerificationError,
    bearer_ok,
    env_or,
    log,
    stop_on_signals,
    verify,
)

ENDPOINTS = ("health", "orders", "dispatch", "inventory", "prices")
MODES = ("error", "http_500", "hang")
MAX_LIMIT = 500


def demo_orders(count: int, skus: list[str]) -> list[dict]:
    """`count` small orders in the shape of POST /api/v1/orders, one line per SKU."""
    return [
        {
            "external_id": f"M-{n}",
            "number": f"#M-{n}",
            "currency": "USD",
            "customer": {"name": f"Customer {n}", "email": f"customer{n}@example.com"},
            "shipping_address": {
                "name": f"Customer {n}",
                "line1": f"{n} Manifest Way",
                "city": "Springfield",
                "postal_code": "12345",
                "country": "US",
            },
            "lines": [{"sku": sku, "quantity": 1, "unit_price": "10.00"} for sku in skus],
        }
        for n in range(1, count + 1)
    ]


class ManifestConnector:
    """The connector's state: orders to offer, shipments and stock received, failure modes, call counts."""

    def __init__(self, args: argparse.Namespace, orders: list[dict]):
        self.secret = args.secret
        self.auth_token = args.auth_token
        self.tolerance = args.tolerance
        self.hang_seconds = args.hang_seconds
        self.lock = threading.Lock()
        self.orders = list(orders)
        self.dispatched: dict[str, dict] = {}  # fulfillment id → fulfillment (a repeat is not recorded twice)
        self.inventory: dict[str, int] = {}
        self.prices: dict[str, str] = {}
        self.modes: dict[str, str | None] = dict.fromkeys(ENDPOINTS)
        if args.fail_health:
            self.modes["health"] = "error"
        self.calls: Counter = Counter()

    # --- the guard every protocol endpoint goes through --------------------------------------------------

    def endpoint(self, name: str, handle: Callable[[dict], dict]) -> Callable[[Request], Reply]:
        def route(request: Request) -> Reply:
            with self.lock:
                self.calls[name] += 1
                mode = self.modes[name]
            fields = {"endpoint": name, "webhook_id": request.headers.get("webhook-id")}
            if self.auth_token and not bearer_ok(request.headers, self.auth_token):
                log("manifest_call", **fields, status=401, reason="bad or missing bearer token")
                return Reply(401, {"error": "bad or missing bearer token"})
            verified = None
            if self.secret:
                try:
                    verify(self.secret, request.headers, request.body, tolerance=self.tolerance)
                    verified = True
                except WebhookVerificationError as exc:
                    log("manifest_call", **fields, verified=False, status=401, reason=str(exc))
                    return Reply(401, {"error": f"invalid signature: {exc}"})
            fields["verified"] = verified
            if mode == "hang":
                time.sleep(self.hang_seconds)
            if mode == "http_500":
                log("manifest_call", **fields, status=500, mode=mode)
                return Reply(500, {"error": f"{name} is failing (http_500 mode)"})
            if mode == "error":
                log("manifest_call", **fields, status=200, mode=mode, error=True)
                return Reply(200, {"error": f"{name} is failing (error mode)"})
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                log("manifest_call", **fields, status=200, error="body is not a JSON object")
                return Reply(200, {"error": "body is not a JSON object"})
            try:
                answer = handle(body)
            except ValueError as exc:  # a request the connector cannot take: the protocol's error answer
                log("manifest_call", **fields, status=200, error=str(exc))
                return Reply(200, {"error": str(exc)})
            log("manifest_call", **fields, status=200, **_summary(name, body, answer))
            return Reply(200, answer)

        return route

    # --- the protocol ------------------------------------------------------------------------------------

    def health(self, body: dict) -> dict:
        return {"ok": True}

    def pull_orders(self, body: dict) -> dict:
        cursor, limit = body.get("cursor"), body.get("limit", 100)
        if cursor is None:
            start = 0
        elif isinstance(cursor, str) and cursor.isdigit():
            start = int(cursor)  # opaque to the hub; here simply the index of the next order
        else:
            raise ValueError(f"invalid cursor {cursor!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        with self.lock:
            page = self.orders[start : start + limit]
        # null: nothing after this page yet, the hub keeps the cursor it sent.
        return {"orders": page, "next_cursor": str(start + len(page)) if page else None}

    def dispatch(self, body: dict) -> dict:
        fulfillments = body.get("fulfillments")
        if not isinstance(fulfillments, list):
            raise ValueError("fulfillments must be a list")
        accepted = 0
        with self.lock:
            for item in fulfillments:
                if isinstance(item, dict) and item.get("id") is not None:
                    self.dispatched.setdefault(str(item["id"]), item)  # a repeat counts, once recorded
                    accepted += 1
        return {"accepted": accepted}

    def set_inventory(self, body: dict) -> dict:
        return {"accepted": self._absolute(body, "available", self.inventory)}

    def set_prices(self, body: dict) -> dict:
        return {"accepted": self._absolute(body, "price", self.prices)}

    def _absolute(self, body: dict, field: str, target: dict) -> int:
        items = body.get("items")
        if not isinstance(items, list):
            raise ValueError("items must be a list")
        accepted = 0
        with self.lock:
            for item in items:
                if isinstance(item, dict) and item.get("sku") and field in item:
                    target[str(item["sku"])] = item[field]
                    accepted += 1
        return accepted

    # --- test control ------------------------------------------------------------------------------------

    def control_state(self, request: Request | None = None) -> Reply:
        with self.lock:
            return Reply(
                200,
                {
                    "modes": self.modes,
                    "orders": len(self.orders),
                    "dispatched": list(self.dispatched.values()),
                    "inventory": self.inventory,
                    "prices": self.prices,
                    "calls": dict(self.calls),
                },
            )

    def control(self, request: Request) -> Reply:
        try:
            body = request.json() or {}
        except ValueError:
            return Reply(400, {"error": "body is not JSON"})
        fail = body.get("fail") or {}
        bad = {k: v for k, v in fail.items() if k not in ENDPOINTS or v not in (*MODES, None)}
        if bad:
            return Reply(400, {"error": f"unknown endpoint or mode: {bad}; modes: {MODES} or null"})
        with self.lock:
            if body.get("reset"):
                self.modes = dict.fromkeys(ENDPOINTS)
                self.dispatched.clear()
                self.inventory.clear()
                self.prices.clear()
                self.calls.clear()
            self.modes.update(fail)
            self.orders.extend(body.get("add_orders") or [])
        log("control", fail=fail, reset=bool(body.get("reset")), added=len(body.get("add_orders") or []))
        return self.control_state()


def _summary(name: str, body: dict, answer: dict) -> dict:
    if name == "orders":
        return {
            "cursor": body.get("cursor"),
            "returned": len(answer["orders"]),
            "next_cursor": answer["next_cursor"],
        }
    if name in ("dispatch", "inventory", "prices"):
        return {"accepted": answer["accepted"]}
    return {}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8765", help="host:port (port 0: any free one)")
    parser.add_argument("--secret", help="The integration's whsec_ signing secret ($MANIFEST_SECRET)")
    parser.add_argument("--auth-token", help="The bearer token the hub must send ($MANIFEST_AUTH_TOKEN)")
    parser.add_argument("--tolerance", type=int, default=300, help="Signature timestamp tolerance, s")
    for name in ENDPOINTS:
        parser.add_argument(f"--{name}-path", default=f"/{name}", help=f"Path of the {name} endpoint")
    parser.add_argument("--orders-file", help="A JSON list of order bodies to offer")
    parser.add_argument("--demo-orders", type=int, default=0, help="Offer this many generated orders")
    parser.add_argument("--sku", default="TSHIRT-S,MUG", help="SKUs of the generated orders' lines")
    parser.add_argument("--fail-health", action="store_true", help="Start with health answering an error")
    parser.add_argument("--hang-seconds", type=float, default=20.0, help="How long the hang mode holds")
    parser.add_argument("--no-control", action="store_true", help="No /_control endpoint")
    args = parser.parse_args(argv)
    args.secret = env_or(args.secret, "MANIFEST_SECRET")
    args.auth_token = env_or(args.auth_token, "MANIFEST_AUTH_TOKEN")
    return args


def build(args: argparse.Namespace) -> tuple[ManifestConnector, JsonServer]:
    orders = demo_orders(args.demo_orders, [s for s in args.sku.split(",") if s])
    if args.orders_file:
        with open(args.orders_file, encoding="utf-8") as f:
            orders += json.load(f)
    connector = ManifestConnector(args, orders)
    handlers = {
        "health": connector.health,
        "orders": connector.pull_orders,
        "dispatch": connector.dispatch,
        "inventory": connector.set_inventory,
        "prices": connector.set_prices,
    }
    routes = {
        ("POST", getattr(args, f"{name}_path")): connector.endpoint(name, handle)
        for name, handle in handlers.items()
    }
    if not args.no_control:
        routes[("GET", "/_control")] = connector.control_state
        routes[("POST", "/_control")] = connector.control
    return connector, JsonServer(args.listen, routes)


def main(argv=None) -> int:
    args = parse_args(argv)
    stop = stop_on_signals()
    connector, server = build(args)
    server.start()
    log(
        "listening",
        url=server.url,
        paths={name: getattr(args, f"{name}_path") for name in ENDPOINTS},
        orders=len(connector.orders),
        verifies_signatures=bool(args.secret),
        checks_token=bool(args.auth_token),
    )
    while not stop.wait(1.0):
        pass
    log("stopping")
    server.stop()
    log("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
