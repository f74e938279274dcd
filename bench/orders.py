# ruff: noqa: S311, S608 — random picks SKUs and counts (no secrets); SQL is built from constants and
# placeholders only, every value travels as a parameter.
"""
Writes through the API under gunicorn on PostgreSQL, each beside a baseline measured in the same run that
writes the same rows straight through psycopg 3 (a direct connection to the same database, no Django):

* single-order POST /api/v1/orders (3 lines): N concurrent clients for a fixed time → orders/s, p50, p99;
  baseline: N threads, one connection each, inserting per order in its own transaction the rows an order
  creates (orders_order + 3 orders_orderline + the integrations_outboxevent row). Afterwards the orders in
  the database must equal the 201 answers (no loss, no duplicates).
* POST /api/v1/inventory with 5000 items (absolute on_hand, every row changed each push), R times: the
  first push inserts the levels, the later ones update them → s per push (median, max), rows/s; baseline:
  one INSERT … ON CONFLICT (product_id, location_id) DO UPDATE of the 5000 inventory_inventorylevel rows in
  one transaction (other psycopg ways are measured too, for reference).
* In-process (django.test.Client + CaptureQueriesContext): the SQL of one order POST and of one 5000-item
  inventory POST, by verb.

Starts a throwaway PostgreSQL and Redis (or, with --reuse-env, uses DATABASE_URL and REDIS_URL), migrates,
creates an organization, a custom-channel integration and a custom-3pl one with their keys (the
connectors' recommended grants), a location the 3PL manages and 5000 products. Prints the figures with
their ratios, writes bench/results/orders.json, and stops everything it started (also on Ctrl-C).

    .venv/bin/python bench/orders.py [--seconds 10] [--concurrency 8] [--pushes 5] [--workers 2] [--threads 4]
"""

import argparse
import contextlib
import json
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
from _harness import (
    CPU_GROUPS,
    RATE_LIMIT,
    RESULTS_DIR,
    Started,
    add_common_arguments,
    cpu_snapshot,
    django_env,
    httpx_clients,
    load_figures,
    loadavg,
    quiet_logging,
    run_load,
    run_meta,
    server_log_problems,
    setup_django,
    sql_verb,
    start_gunicorn,
    start_services,
    verb_counts,
)
from _harness import main as harness_main
from psycopg.types.json import Jsonb

RESULTS = RESULTS_DIR / "orders.json"
ORDERS = "/api/v1/orders"
INVENTORY = "/api/v1/inventory"
LINES = 3
SHIPPING_CODE = "std"  # the channel's code, mapped to the hub method "standard": orders end up `ready`
# The psycopg ways of writing the levels of one push, each in one transaction (the API's is Django's
# bulk_create(update_conflicts=True): INSERT … SELECT * FROM UNNEST(…) ON CONFLICT DO UPDATE per 1000 rows).
STOCK_METHODS = {
    "copy": "COPY into a temp table (ON COMMIT DROP), then one INSERT … SELECT … ON CONFLICT DO UPDATE",
    "unnest": "one INSERT … SELECT * FROM unnest(ids[], counts[]) … ON CONFLICT DO UPDATE (2 array parameters)",
    "values": "one multi-row INSERT … VALUES (…), … × N … ON CONFLICT DO UPDATE (3 parameters a row)",
    "executemany": "executemany of a one-row INSERT … ON CONFLICT DO UPDATE (psycopg's pipeline mode)",
    "copy+outbox": "`copy`, plus the N inventory.updated outbox rows COPY'd in (everything the API writes)",
}


@dataclass
class Fixture:
    """What the bench created and the API or the baselines refer to."""

    org_id: int
    channel_id: int
    channel_key: str
    tpl_id: int
    tpl_key: str
    method_id: int
    location_id: int  # managed by the 3PL: the API's stock pushes go here
    inproc_location_id: int  # managed by the 3PL too: the in-process query count pushes here
    baseline_locations: dict[str, int]  # one per psycopg way, so each inserts on its first push too
    products: list[tuple[int, str]]  # (id, sku)
    tag: str  # distinguishes this run's external ids (a reused database keeps earlier runs' rows)


# --- fixture ------------------------------------------------------------------------------------------


def create_fixture(product_count: int) -> Fixture:
    """An organization, a channel and a 3PL with their keys, locations, a shipping method and the products."""
    from integrations import configuration
    from integrations.models import Connector
    from inventory.choices import LocationKind
    from inventory.models import Location, Product
    from orders.models import ShippingMethod, ShippingMethodMapping
    from organizations.models import Organization
    from tokens import issuing as key_services
    from tokens.choices import KeyKind

    suffix = secrets.token_hex(4)
    org = Organization.objects.create(name=f"Bench {suffix}", slug=f"bench-{suffix}")
    channel = configuration.create_integration(
        org, Connector.objects.get(organization=None, key="custom-channel"), "Bench shop"
    )
    tpl = configuration.create_integration(
        org, Connector.objects.get(organization=None, key="custom-3pl"), "Bench 3PL"
    )
    channel_key = key_services.issue_key(kind=KeyKind.INTEGRATION, name="Bench shop key", integration=channel)
    tpl_key = key_services.issue_key(kind=KeyKind.INTEGRATION, name="Bench 3PL key", integration=tpl)
    for issued, grant in ((channel_key, "orders:write"), (tpl_key, "inventory:write")):
        if grant not in issued.key.grants:
            raise SystemExit(f"{issued.key.name} lacks {grant}: the connector's recommended grants changed")
    method = ShippingMethod.objects.create(organization=org, code="standard", name="Standard")
    ShippingMethodMapping.objects.create(integration=channel, external_code=SHIPPING_CODE, method=method)

    def location(name, managed_by=None):
        return Location.objects.create(
            organization=org, name=name, kind=LocationKind.THREE_PL, managed_by=managed_by
        ).pk

    Product.objects.bulk_create(
        [
            Product(organization=org, sku=f"BENCH-{i:05d}", name=f"Bench product {i}", price=Decimal("12.50"))
            for i in range(product_count)
        ],
        batch_size=1000,
    )
    products = list(Product.objects.filter(organization=org).order_by("sku").values_list("pk", "sku"))
    return Fixture(
        org_id=org.pk,
        channel_id=channel.pk,
        channel_key=channel_key.plaintext,
        tpl_id=tpl.pk,
        tpl_key=tpl_key.plaintext,
        method_id=method.pk,
        location_id=location("Bench 3PL warehouse", tpl),
        inproc_location_id=location("Bench 3PL in-process", tpl),
        baseline_locations={name: location(f"Bench baseline {name}") for name in STOCK_METHODS},
        products=products,
        tag=suffix,
    )


# --- request bodies -----------------------------------------------------------------------------------


def order_lines(rng: random.Random, products) -> list[tuple[int, str, int]]:
    """(product id, sku, quantity) of LINES distinct existing products."""
    return [(pid, sku, rng.randint(1, 3)) for pid, sku in rng.sample(products, LINES)]


def order_body(external_id: str, lines) -> dict:
    """A POST /api/v1/orders body (API.md, Orders) with these lines."""
    return {
        "external_id": external_id,
        "number": f"#{external_id}",
        "currency": "USD",
        "customer": {"name": "Bench Customer", "email": "bench@example.test"},
        "shipping_address": {
            "name": "Bench Customer",
            "line1": "1 Bench Street",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
        },
        "shipping_method": SHIPPING_CODE,
        "lines": [{"sku": sku, "quantity": qty, "unit_price": "12.50"} for _, sku, qty in lines],
    }


def stock_counts(products, push: int, seed: int) -> list[tuple[int, str, int]]:
    """(product id, sku, on_hand) for every product; each push's count differs from the previous push's."""
    return [(pid, sku, seed + 1000 * push + index % 997) for index, (pid, sku) in enumerate(products)]


# --- in-process: the SQL of one request ---------------------------------------------------------------


def _captured(client, path, body, key) -> tuple[list[dict], float, int]:
    """(queries, seconds, status) of one POST through Django's test client."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    payload = json.dumps(body)
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        response = client.post(
            path, payload, content_type="application/json", headers={"Authorization": f"Bearer {key}"}
        )
        elapsed = time.perf_counter() - began
    # captured_queries slices the live log, which every request start clears: copy it at once.
    queries = [{"verb": sql_verb(q["sql"]), "sql": q["sql"]} for q in captured.captured_queries]
    return queries, elapsed, response.status_code


def _summary(queries, seconds, status) -> dict:
    return {
        "status": status,
        "ms": round(seconds * 1000, 1),
        "count": len(queries),
        "by_verb": verb_counts(queries),
        # The SQL of bulk statements runs to megabytes: the opening of each, and its length.
        "queries": [
            {"verb": q["verb"], "chars": len(q["sql"]), "sql": " ".join(q["sql"][:400].split())}
            for q in queries
        ],
    }


def in_process(fixture: Fixture, items: int, order_calls: int) -> dict:
    """The queries of one order POST and of a first (inserting) and second (updating) 5000-item push."""
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    rng = random.Random(1)
    results = {}
    with quiet_logging():
        for n in range(3):  # warm caches (url resolver, serializers, content types)
            body = order_body(f"inproc-{fixture.tag}-warm-{n}", order_lines(rng, fixture.products))
            _captured(client, ORDERS, body, fixture.channel_key)
        body = order_body(f"inproc-{fixture.tag}-0", order_lines(rng, fixture.products))
        queries, seconds, status = _captured(client, ORDERS, body, fixture.channel_key)
        if status != 201:
            raise SystemExit(f"In-process POST {ORDERS} answered {status}, not 201")
        results["order_post"] = _summary(queries, seconds, status)
        began = time.perf_counter()
        for n in range(order_calls):
            body = order_body(f"inproc-{fixture.tag}-t{n}", order_lines(rng, fixture.products))
            _captured(client, ORDERS, body, fixture.channel_key)
        results["order_post"]["ms_mean_of_calls"] = round(
            (time.perf_counter() - began) / max(order_calls, 1) * 1000, 2
        )
        results["order_post"]["calls"] = order_calls
        for push, name in enumerate(("inventory_post_insert", "inventory_post_update")):
            counts = stock_counts(fixture.products[:items], push, seed=7)
            body = {
                "location": str(fixture.inproc_location_id),
                "items": [{"sku": sku, "on_hand": on_hand} for _, sku, on_hand in counts],
            }
            queries, seconds, status = _captured(client, INVENTORY, body, fixture.tpl_key)
            if status != 200:
                raise SystemExit(f"In-process POST {INVENTORY} answered {status}, not 200")
            results[name] = _summary(queries, seconds, status)
    return results


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


# --- report -------------------------------------------------------------------------------------------


def ratio(numerator, denominator) -> float | None:
    return round(numerator / denominator, 2) if numerator and denominator else None


def fmt_ratio(value) -> str:
    return f"{value:.1f}×" if value is not None else "-"


def print_queries(title: str, row: dict, listing: int) -> None:
    verbs = ", ".join(f"{verb} {count}" for verb, count in row["by_verb"].items())
    print(f"  {title}: {row['count']} queries ({verbs}); {row['ms']:.1f} ms in-process")
    for index, query in enumerate(row["queries"][:listing], 1):
        sql = query["sql"]
        size = f" [{query['chars']:,} chars]" if query["chars"] > 400 else ""
        print(f"    {index:>2}. {query['verb']:<9} {sql[:120]}{'…' if len(sql) > 120 else ''}{size}")
    if len(row["queries"]) > listing:
        print(f"    … {len(row['queries']) - listing} more")


def print_report(report: dict) -> None:
    meta, orders, stock, queries = report["meta"], report["orders"], report["stock"], report["queries"]
    api, base = orders["api"], orders["baseline"]
    print()
    print(f"Server: {meta['server']} on PostgreSQL {meta['postgres']} (fsync off), Redis {meta['redis']}")
    print(
        f"Machine: {meta['cpus']} cores; load average before {meta['loadavg_before']}, after "
        f"{meta['loadavg_after']}. Fixture: {meta['products']} products, {LINES} lines per order."
    )
    print()
    print(
        f"(a) Single-order POST {ORDERS} ({LINES} lines, unique external_id): {meta['concurrency']} clients, "
        f"{meta['warmup_s']:g} s warm-up + {meta['seconds']:g} s measured"
    )
    head = f"{'':<34} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print(head)
    print("-" * len(head))
    print(
        f"{'API (httpx → gunicorn → Django)':<34} {api['rps']:>9.1f} {api['p50_ms']:>8.2f} {api['p99_ms']:>8.2f} "
        f"{api['errors']:>7}"
    )
    print(
        f"{'baseline (psycopg, 1 tx per order)':<34} {base['rps']:>9.1f} {base['p50_ms']:>8.2f} "
        f"{base['p99_ms']:>8.2f} {base['errors']:>7}"
    )
    r = orders["ratios"]
    print(
        f"{'ratio (API cost ÷ baseline cost)':<34} {fmt_ratio(r['throughput']):>9} {fmt_ratio(r['p50']):>8} "
        f"{fmt_ratio(r['p99']):>8}"
    )
    for sample in api["error_samples"]:
        print(f"  API error: {sample}")
    for sample in base["error_samples"]:
        print(f"  baseline error: {sample}")
    check = orders["check"]
    print(
        f"Check: {check['orders']} orders in the database for {check['answers_201']} answers 201 "
        f"(all answers, warm-up included: {api['answers_all']}); {check['lines']} lines, "
        f"{check['order_created_events']} order.created events; statuses {check['statuses']}: "
        f"{'OK' if check['ok'] else 'MISMATCH'}"
    )
    bcheck = base["check"]
    print(
        f"       baseline: {bcheck['orders']} orders for {bcheck['answers_201']} commits, {bcheck['lines']} lines, "
        f"{bcheck['order_created_events']} events: {'OK' if bcheck['ok'] else 'MISMATCH'}"
    )
    print(f"CPU during the measured windows, % of one core ({meta['cpus']} cores = {100 * meta['cpus']}%):")
    head = f"{'':<10} " + " ".join(f"{g:>9}" for g in CPU_GROUPS)
    print(head)
    for name, row in (("API", api), ("baseline", base)):
        print(f"{name:<10} " + " ".join(f"{row['cpu_pct'][g]:>9}" for g in CPU_GROUPS))
    per_order = api["cpu_pct"]["gunicorn"] / 100 / api["rps"] * 1000 if api["rps"] else float("nan")
    pg_api = api["cpu_pct"]["postgres"] / 100 / api["rps"] * 1000 if api["rps"] else float("nan")
    pg_base = base["cpu_pct"]["postgres"] / 100 / base["rps"] * 1000 if base["rps"] else float("nan")
    print(
        f"gunicorn CPU per order {per_order:.2f} ms; PostgreSQL CPU per order: API {pg_api:.2f} ms, "
        f"baseline {pg_base:.2f} ms"
    )
    print()
    sapi, chosen = stock["api"], stock["baseline_method"]
    sbase = stock["baselines"][chosen]
    print(
        f"(b) Stock push POST {INVENTORY}, {sapi['rows']} items, {meta['pushes']} pushes one after the other "
        f"(the 1st inserts the levels, the others update every row)"
    )
    head = f"{'':<34} {'median s':>9} {'max s':>8} {'1st s':>8} {'upd. s':>8} {'rows/s':>8}"
    print(head)
    print("-" * len(head))

    def stock_row(label, row):
        print(
            f"{label:<34} {row['median_s']:>9.3f} {row['max_s']:>8.3f} {row['first_s']:>8.3f} "
            f"{row['update_median_s'] or float('nan'):>8.3f} {row['rows_per_s']:>8}"
        )

    stock_row("API (httpx → gunicorn → Django)", sapi)
    stock_row(f"baseline (psycopg, {chosen})", sbase)
    r = stock["ratios"]
    print(
        f"{'ratio (API ÷ baseline)':<34} {fmt_ratio(r['median']):>9} {fmt_ratio(r['max']):>8} "
        f"{fmt_ratio(r['first']):>8} {fmt_ratio(r['update_median']):>8}"
    )
    print(f"  baseline: {sbase['how']}, one transaction per push")
    print("  other psycopg ways, for reference (not the ratio's baseline):")
    for method, row in stock["baselines"].items():
        if method != chosen:
            stock_row(f"    {method}", row)
    checks = [sapi["check"], *(row["check"] for row in stock["baselines"].values())]
    print(
        f"Check: the API's location holds {sapi['check']['levels']} levels, {sapi['check']['wrong']} differing "
        f"from the last push; every baseline location likewise: {'OK' if all(c['ok'] for c in checks) else 'MISMATCH'}"
    )
    cpu = sapi["cpu_s_per_push"]
    print(
        "CPU seconds per API push: "
        + ", ".join(f"{g} {cpu[g]:.3f}" for g in CPU_GROUPS)
        + f"; baseline ({chosen}): postgres {sbase['cpu_s_per_push']['postgres']:.3f}, "
        f"client {sbase['cpu_s_per_push']['client']:.3f}"
    )
    print()
    print("(d) SQL in-process (django.test.Client, CaptureQueriesContext), by verb:")
    order = queries["order_post"]
    print_queries("one order POST", order, listing=40)
    print(f"    (mean of {order['calls']} in-process order POSTs: {order['ms_mean_of_calls']:.2f} ms)")
    print_queries(
        f"one {meta['items']}-item inventory POST, first (inserts)", queries["inventory_post_insert"], 20
    )
    print_queries(
        f"one {meta['items']}-item inventory POST, again (updates)", queries["inventory_post_update"], 20
    )


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds of each order load (10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds of each order load (2)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients / threads (8)")
    parser.add_argument("--pushes", type=int, default=5, help="stock pushes, API and each baseline way (5)")
    parser.add_argument(
        "--items", type=int, default=5000, help="items per stock push (5000, API.md's maximum)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker (4)")
    parser.add_argument("--order-calls", type=int, default=50, help="in-process order POSTs timed (50)")
    parser.add_argument(
        "--stock-baseline",
        choices=list(STOCK_METHODS),
        default="copy",
        help="the psycopg way the stock push's ratio divides by (copy); all are measured",
    )
    add_common_arguments(
        parser,
        RESULTS,
        leaves="keeps one more organization with its integrations, keys, products, locations, orders and stock",
    )
    args = parser.parse_args(argv)
    if args.items < 1 or args.pushes < 1 or args.concurrency < 1:
        parser.error("--items, --pushes and --concurrency must be at least 1")
    return args


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    """Start the services, measure, and return the report (the stack stops what was started)."""
    started = Started()
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    database_url, redis_url = start_services(stack, started, args.reuse_env)
    env = django_env(database_url, redis_url, folder / "var")

    product_count = max(args.items, LINES)
    print(f"Migrating; creating an organization, a channel and a 3PL with keys, {product_count} products…")
    setup_django(env)
    fixture = create_fixture(product_count)

    print("Counting queries in-process (one order POST, two stock pushes)…")
    queries = in_process(fixture, args.items, args.order_calls)
    from django.db import connections

    connections.close_all()  # the server gets the database to itself

    base, server = start_gunicorn(stack, started, env, args.workers, args.threads, folder)
    loadavg_before = loadavg()

    print(f"(a) POST {ORDERS}: {args.concurrency} clients, {args.warmup:g} + {args.seconds:g} s…")
    api = api_orders(base, fixture, args, started)
    print(
        f"  {api['rps']:.1f} orders/s, p50 {api['p50_ms']} ms, p99 {api['p99_ms']} ms, {api['errors']} errors"
    )
    check = check_orders(fixture, f"load-{fixture.tag}", int(api["answers_all"].get("201", 0)))
    print(f"(a) baseline: psycopg, {args.concurrency} threads, {args.warmup:g} + {args.seconds:g} s…")
    baseline = baseline_orders(database_url, fixture, args, started)
    print(f"  {baseline['rps']:.1f} orders/s, p50 {baseline['p50_ms']} ms, p99 {baseline['p99_ms']} ms")
    baseline["check"] = check_orders(fixture, f"base-{fixture.tag}", baseline["committed_all"])

    print(
        f"(b) POST {INVENTORY}: {args.pushes} pushes of {args.items} items, each followed by the psycopg ways'…"
    )
    stock_api, stock_baselines = stock_pushes(base, database_url, fixture, args, started)
    chosen = stock_baselines[args.stock_baseline]
    problems = server_log_problems(folder)

    return {
        "meta": {
            **run_meta("orders.py", started, args.reuse_env, server),
            "loadavg_before": loadavg_before,
            "loadavg_after": loadavg(),
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "seconds": args.seconds,
            "pushes": args.pushes,
            "items": args.items,
            "products": product_count,
            "lines_per_order": LINES,
            "api_rate_limit": RATE_LIMIT,
            "server_errors_logged": len(problems),
        },
        "orders": {
            "api": api,
            "baseline": {
                "how": "per order one transaction: INSERT orders_order … RETURNING id; one 3-row INSERT "
                "orders_orderline; INSERT integrations_outboxevent (order.created); one connection per thread",
                **baseline,
            },
            "ratios": {
                # Each > 1 means the API costs that many times the baseline.
                "throughput": ratio(baseline["rps"], api["rps"]),
                "p50": ratio(api["p50_ms"], baseline["p50_ms"]),
                "p99": ratio(api["p99_ms"], baseline["p99_ms"]),
            },
            "check": check,
        },
        "stock": {
            "api": stock_api,
            "baseline_method": args.stock_baseline,
            "baselines": stock_baselines,
            "ratios": {
                name: ratio(stock_api[key], chosen[key])
                for name, key in (
                    ("median", "median_s"),
                    ("max", "max_s"),
                    ("first", "first_s"),
                    ("update_median", "update_median_s"),
                )
            },
        },
        "queries": queries,
    }


def main(argv=None) -> int:
    return harness_main(parse_args(argv), run, print_report)


if __name__ == "__main__":
    sys.exit(main())
