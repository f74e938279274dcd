# ruff: noqa: S311 — random picks SKUs and counts (no secrets); SQL is built from constants and
# placeholders only, every value travels as a parameter.
"""
bench/orders.py's fixture (an organization with a channel, a 3PL location and its catalog), the request
bodies it sends, and the SQL one request costs, captured in this process.
"""

import json
import random
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal

from _harness import (
    quiet_logging,
    sql_verb,
    verb_counts,
)

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
    """A POST /api/v1/orders body (docs/connectors/contract.md, "Orders") with these lines."""
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
