# ruff: noqa: S311, S608 — random picks SKUs and counts (no secrets); SQL is built from constants and
# placeholders only, every value travels as a parameter.
"""
bench/orders.py's measured work: (a) orders through the API and the same rows written with psycopg as the
baseline; (b) stock pushes through the API and the psycopg ways of writing the same levels.
"""

import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import psycopg
from _harness import (
    cpu_snapshot,
    httpx_clients,
    load_figures,
    run_load,
)
from _orders_fixture import (
    INVENTORY,
    LINES,
    ORDERS,
    SHIPPING_CODE,
    STOCK_METHODS,
    Fixture,
    order_body,
    order_lines,
    stock_counts,
)
from psycopg.types.json import Jsonb

# --- (a) orders: API load -----------------------------------------------------------------------------


@dataclass
class OrderClient:
    """One load thread's connection, its order numbers and what the server answered (warm-up included)."""

    fixture: Fixture
    http: httpx.Client | None
    conn: psycopg.Connection | None
    rng: random.Random
    prefix: str
    seq: int = 0
    statuses: Counter = field(default_factory=Counter)


def post_order(client: OrderClient, index: int) -> str | None:
    client.seq += 1
    lines = order_lines(client.rng, client.fixture.products)
    body = order_body(f"{client.prefix}-{index}-{client.seq}", lines)
    try:
        response = client.http.post(
            ORDERS, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
    except httpx.HTTPError:
        client.statuses["transport error"] += 1
        raise
    client.statuses[response.status_code] += 1
    return None if response.status_code == 201 else f"HTTP {response.status_code}: {response.text[:200]}"


def api_orders(base, fixture: Fixture, args, started) -> dict:
    headers = {"Authorization": f"Bearer {fixture.channel_key}"}
    https = httpx_clients(base, args.concurrency, headers)
    clients = [
        OrderClient(fixture, http, None, random.Random(index), f"load-{fixture.tag}")
        for index, http in enumerate(https)
    ]
    try:
        result = run_load(clients, post_order, args.warmup, args.seconds, started)
    finally:
        for http in https:
            http.close()
    statuses = Counter()
    for client in clients:
        statuses.update(client.statuses)
    return {**load_figures(result), "answers_all": {str(k): v for k, v in sorted(statuses.items(), key=str)}}


def check_orders(fixture: Fixture, prefix: str, created: int) -> dict:
    """Orders, lines and order.created events of the load in the database against the 201 answers."""
    from django.db import connections

    from integrations.models import OutboxEvent
    from orders.models import Order, OrderLine

    orders = Order.objects.filter(source_id=fixture.channel_id, external_id__startswith=f"{prefix}-")
    ids = [str(pk) for pk in orders.values_list("pk", flat=True)]
    found = {
        "orders": len(ids),
        "distinct_external_ids": orders.values("external_id").distinct().count(),
        "lines": OrderLine.objects.filter(order__in=orders).count(),
        "order_created_events": OutboxEvent.objects.filter(
            organization_id=fixture.org_id, type="order.created", object_type="order", object_id__in=ids
        ).count(),
        "statuses": dict(Counter(orders.values_list("status", flat=True))),
    }
    connections.close_all()
    ok = (
        found["orders"] == created
        and found["distinct_external_ids"] == created
        and found["lines"] == LINES * created
        and found["order_created_events"] == created
    )
    return {"answers_201": created, **found, "ok": ok}


# --- (a) orders: psycopg baseline ---------------------------------------------------------------------

ORDER_SQL = """
INSERT INTO orders_order (
    organization_id, source_id, external_id, number, status, currency, customer, billing_address,
    shipping_address, payment_status, shipping_method_code, shipping_method_id, subtotal, shipping_total,
    tax_total, discount_total, total, notes, tags, hold_reason, hold_until, created_at, updated_at, canceled_at
) VALUES (
    %(org)s, %(source)s, %(external_id)s, %(number)s, 'ready', 'USD', %(customer)s, '{}'::jsonb,
    %(address)s, 'paid', %(code)s, %(method)s, %(subtotal)s, 0, 0, 0, %(subtotal)s, '', '[]'::jsonb, '', NULL,
    now(), now(), NULL
) RETURNING id, updated_at
"""
LINE_SQL = (
    "INSERT INTO orders_orderline (order_id, line_number, product_id, sku, external_sku, quantity, "
    "unit_price, tax, discount) VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, 0, 0)"] * LINES)
)
OUTBOX_SQL = """
INSERT INTO integrations_outboxevent (
    organization_id, integration_id, type, object_type, object_id, payload, created_at, dispatched_at
) VALUES (%s, %s, 'order.created', 'order', %s, %s, now(), NULL)
"""


def insert_order(client: OrderClient, index: int) -> str | None:
    """The rows one order POST leaves, in one transaction: the order, its lines, its outbox event."""
    client.seq += 1
    external_id = f"{client.prefix}-{index}-{client.seq}"
    fixture = client.fixture
    lines = order_lines(client.rng, fixture.products)
    body = order_body(external_id, lines)
    price = Decimal("12.50")
    subtotal = sum(price * qty for _, _, qty in lines)
    with client.conn.transaction(), client.conn.cursor() as cur:
        order_id, updated_at = cur.execute(
            ORDER_SQL,
            {
                "org": fixture.org_id,
                "source": fixture.channel_id,
                "external_id": external_id,
                "number": body["number"],
                "customer": Jsonb(body["customer"]),
                "address": Jsonb(body["shipping_address"]),
                "code": SHIPPING_CODE,
                "method": fixture.method_id,
                "subtotal": subtotal,
            },
        ).fetchone()
        params = []
        for number, (pid, sku, qty) in enumerate(lines, start=1):
            params += [order_id, number, pid, sku, sku, qty, price]
        cur.execute(LINE_SQL, params)
        payload = {  # orders.services.order_payload's shape
            "id": str(order_id),
            "external_id": external_id,
            "number": body["number"],
            "status": "ready",
            "source": str(fixture.channel_id),
            "hold": None,
            "total": str(subtotal),
            "currency": "USD",
            "updated_at": updated_at.isoformat(),
        }
        cur.execute(OUTBOX_SQL, (fixture.org_id, fixture.channel_id, str(order_id), Jsonb(payload)))
    client.statuses["committed"] += 1
    return None


def baseline_orders(database_url, fixture: Fixture, args, started) -> dict:
    conns = [psycopg.connect(database_url, autocommit=True) for _ in range(args.concurrency)]
    clients = [
        OrderClient(fixture, None, conn, random.Random(1000 + index), f"base-{fixture.tag}")
        for index, conn in enumerate(conns)
    ]
    try:
        result = run_load(
            clients, insert_order, args.warmup, args.seconds, started, failures=(psycopg.Error,)
        )
    finally:
        for conn in conns:
            conn.close()
    committed = sum(client.statuses["committed"] for client in clients)
    return {**load_figures(result), "committed_all": committed}


# --- (b) stock pushes ---------------------------------------------------------------------------------


def push_body(location_id: int, counts) -> bytes:
    return json.dumps(
        {
            "location": str(location_id),
            "items": [{"sku": sku, "on_hand": on_hand} for _, sku, on_hand in counts],
        }
    ).encode()


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds each group used between two snapshots; `other`: the rest of the machine."""
    used = {name: after[name] - before[name] for name in before}
    used["other"] = used.pop("machine") - sum(used.values())
    return used


def push_figures(durations: list[float], rows: int, cpu: dict[str, float]) -> dict:
    median = statistics.median(durations)
    updates = durations[1:]
    return {
        "rows": rows,
        "pushes_s": [round(d, 4) for d in durations],
        "median_s": round(median, 4),
        "max_s": round(max(durations), 4),
        "first_s": round(durations[0], 4),  # the push that inserts the levels
        "update_median_s": round(statistics.median(updates), 4) if updates else None,
        "rows_per_s": round(rows / median),
        "cpu_s_per_push": {name: round(seconds / len(durations), 3) for name, seconds in cpu.items()},
    }


def check_levels(location_id: int, expected) -> dict:
    """The location's levels against the last push's counts."""
    from django.db import connections

    from inventory.models import InventoryLevel

    levels = dict(InventoryLevel.objects.filter(location_id=location_id).values_list("product_id", "on_hand"))
    connections.close_all()
    wrong = sum(1 for pid, _, on_hand in expected if levels.get(pid) != on_hand)
    return {
        "levels": len(levels),
        "expected": len(expected),
        "wrong": wrong,
        "ok": not wrong and len(levels) == len(expected),
    }


LEVEL_COLUMNS = "product_id, location_id, on_hand, committed, incoming, updated_at"
UPSERT = (
    "ON CONFLICT (product_id, location_id) DO UPDATE SET on_hand = EXCLUDED.on_hand, "
    "updated_at = EXCLUDED.updated_at"
)
OUTBOX_COLUMNS = "organization_id, integration_id, type, object_type, object_id, payload, created_at"


def upsert_levels(conn, method: str, location_id: int, counts, org_id: int, tpl_id: int) -> None:
    """One transaction writing `counts` as inventory_inventorylevel rows at `location_id`, the `method` way."""
    with conn.transaction(), conn.cursor() as cur:
        if method in ("copy", "copy+outbox"):
            cur.execute("CREATE TEMP TABLE bench_stock (product_id bigint, on_hand integer) ON COMMIT DROP")
            with cur.copy("COPY bench_stock (product_id, on_hand) FROM STDIN") as copy:
                for pid, _, on_hand in counts:
                    copy.write_row((pid, on_hand))
            cur.execute(
                f"INSERT INTO inventory_inventorylevel ({LEVEL_COLUMNS}) "
                f"SELECT product_id, %s, on_hand, 0, 0, now() FROM bench_stock {UPSERT}",
                (location_id,),
            )
            if method == "copy+outbox":
                now = datetime.now(UTC)
                with cur.copy(f"COPY integrations_outboxevent ({OUTBOX_COLUMNS}) FROM STDIN") as copy:
                    for pid, sku, on_hand in counts:
                        payload = {
                            "sku": sku,
                            "location": str(location_id),
                            "on_hand": on_hand,
                            "committed": 0,
                        }
                        copy.write_row(
                            (
                                org_id,
                                tpl_id,
                                "inventory.updated",
                                "inventory_level",
                                f"{pid}:{location_id}",
                                json.dumps(payload),
                                now,
                            )
                        )
        elif method == "unnest":
            cur.execute(
                f"INSERT INTO inventory_inventorylevel ({LEVEL_COLUMNS}) SELECT product_id, %s, on_hand, 0, 0, "
                f"now() FROM unnest(%s::bigint[], %s::integer[]) AS t(product_id, on_hand) {UPSERT}",
                (location_id, [pid for pid, _, _ in counts], [on_hand for _, _, on_hand in counts]),
            )
        elif method == "values":
            rows = ", ".join(["(%s, %s, %s, 0, 0, now())"] * len(counts))
            params = [value for pid, _, on_hand in counts for value in (pid, location_id, on_hand)]
            cur.execute(
                f"INSERT INTO inventory_inventorylevel ({LEVEL_COLUMNS}) VALUES {rows} {UPSERT}", params
            )
        elif method == "executemany":
            cur.executemany(
                f"INSERT INTO inventory_inventorylevel ({LEVEL_COLUMNS}) VALUES (%s, %s, %s, 0, 0, now()) {UPSERT}",
                [(pid, location_id, on_hand) for pid, _, on_hand in counts],
            )
        else:
            raise ValueError(method)


def stock_pushes(base, database_url, fixture: Fixture, args, started) -> tuple[dict, dict]:
    """
    R rounds, one after the other: the API's push to the 3PL's location, then each psycopg way's to its own
    location (so each inserts on its first round and updates on the later ones, as the API does).
    Interleaved, so the API and its baselines share whatever else the machine is doing at the time.
    """
    products = fixture.products[: args.items]
    seed = random.randint(1, 100_000)  # the counts differ from run to run, and from push to push
    durations = {"api": [], **{method: [] for method in STOCK_METHODS}}
    cpu = {name: Counter() for name in durations}
    headers = {"Authorization": f"Bearer {fixture.tpl_key}", "Content-Type": "application/json"}
    with (
        httpx.Client(base_url=base, headers=headers, timeout=300) as client,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        for push in range(args.pushes):
            counts = stock_counts(products, push, seed)
            content = push_body(fixture.location_id, counts)  # encoded before the clock starts
            before = cpu_snapshot(started)
            began = time.perf_counter()
            response = client.post(INVENTORY, content=content)
            durations["api"].append(time.perf_counter() - began)
            cpu["api"].update(cpu_used(before, cpu_snapshot(started)))
            answer = response.json() if response.status_code == 200 else {}
            if answer.get("updated") != len(products) or answer.get("errors"):
                raise SystemExit(f"POST {INVENTORY} answered {response.status_code}: {response.text[:500]}")
            for method, location_id in fixture.baseline_locations.items():
                before = cpu_snapshot(started)
                began = time.perf_counter()
                upsert_levels(conn, method, location_id, counts, fixture.org_id, fixture.tpl_id)
                durations[method].append(time.perf_counter() - began)
                cpu[method].update(cpu_used(before, cpu_snapshot(started)))
            print(
                f"  push {push + 1}: API {durations['api'][-1]:.3f} s; psycopg "
                + ", ".join(f"{m} {durations[m][-1]:.3f}" for m in STOCK_METHODS)
            )
    last = stock_counts(products, args.pushes - 1, seed)
    api = {
        **push_figures(durations["api"], len(products), cpu["api"]),
        "check": check_levels(fixture.location_id, last),
    }
    baselines = {
        method: {
            "how": how,
            **push_figures(durations[method], len(products), cpu[method]),
            "check": check_levels(fixture.baseline_locations[method], last),
        }
        for method, how in STOCK_METHODS.items()
    }
    return api, baselines
