"""
The inventory engine's full and incremental recompute (issue 6) beside a single SQL aggregate of the same
figures, run in the same process: seconds, rows/s, events emitted, the process's peak RSS.

Starts a throwaway PostgreSQL and Redis (or, with --reuse-env, uses DATABASE_URL and REDIS_URL), migrates,
and seeds one organization with --skus products × --locations locations (every level a row) × --channels
channels in SQL (generate_series), some channels with explicit locations, a few buffers of several scopes.
Then measures:

  floor        one SELECT summing on_hand − committed per channel × product over each channel's locations
  full         inventory.sync.recompute(org) with ChannelInventory empty: every figure written and emitted
  full again   the same with nothing changed: nothing written, 0 events
  incremental  1,000 levels changed (with their AvailabilityChange rows), then the engine's process_changes

Targets: full ≤ 3× floor and < 15 s, peak RSS < 1 GiB, incremental < 1 s, nothing emitted when nothing
changed.
"""

import argparse
import contextlib
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import (
    RESULTS_DIR,
    Started,
    add_common_arguments,
    django_env,
    loadavg,
    run_meta,
    setup_django,
    start_services,
)
from _harness import main as harness_main

RESULTS = RESULTS_DIR / "inventory.json"
CHANGED_LEVELS = 1000
TARGETS = {"full_ratio": 3.0, "full_s": 15.0, "rss_mib": 1024, "incremental_s": 1.0}


def seed(skus: int, locations: int, channels: int) -> dict:
    """One organization with its catalog, stock, channels, links and buffers; ids and seconds taken."""
    from django.db import connection

    from integrations import configuration
    from integrations.models import Connector
    from inventory.models import ChannelLocation, InventoryBuffer, Location, Product
    from organizations.models import Organization

    started = time.perf_counter()
    suffix = secrets.token_hex(4)
    org = Organization.objects.create(name=f"Inventory bench {suffix}", slug=f"inv-bench-{suffix}")
    connectors = [
        Connector.objects.get(organization=None, key="custom-channel"),
        Connector.objects.get(organization=None, key="custom-marketplace"),
    ]
    channel_rows = [
        configuration.create_integration(
            org,
            connectors[i % 2],
            f"Channel {i + 1}",
            settings={"sell_incoming_stock": True} if i == 2 else {},
        )
        for i in range(channels)
    ]
    location_rows = [
        Location.objects.create(organization=org, name=f"Warehouse {i + 1}", sells=i != locations - 1)
        for i in range(locations)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO inventory_product (organization_id, sku, name, barcode, active, created_at, updated_at)
            SELECT %s, 'SKU-' || lpad(g::text, 7, '0'), 'Product ' || g, '', g %% 97 <> 0, now(), now()
              FROM generate_series(1, %s) AS g
            """,
            [org.pk, skus],
        )
        # Deterministic, uneven stock: some levels empty, some over-committed, some with incoming units.
        cursor.execute(
            """
            INSERT INTO inventory_inventorylevel (product_id, location_id, on_hand, committed, incoming, updated_at)
            SELECT p.id, l.id, (p.id * 7919 + l.id * 104729) %% 120,
                   (p.id * 31 + l.id * 17) %% 15, (p.id + l.id) %% 9, now()
              FROM inventory_product p CROSS JOIN inventory_location l
             WHERE p.organization_id = %s AND l.organization_id = %s
            """,
            [org.pk, org.pk],
        )
    # Links: the second channel sells from the first half of the locations, the fourth from a middle band.
    links = []
    if channels >= 2:
        links += [(channel_rows[1], loc) for loc in location_rows[: max(1, locations // 2)]]
    if channels >= 4:
        links += [(channel_rows[3], loc) for loc in location_rows[2 : max(3, locations - 2)]]
    ChannelLocation.objects.bulk_create([ChannelLocation(channel=c, location=loc) for c, loc in links])
    products = list(Product.objects.filter(organization=org).order_by("pk").values_list("pk", flat=True)[:60])
    buffers = [
        InventoryBuffer(organization=org, quantity=2),
        InventoryBuffer(organization=org, location=location_rows[0], percent=10),
        InventoryBuffer(organization=org, channel=channel_rows[-1], quantity=5),
        InventoryBuffer(organization=org, location=location_rows[1], channel=channel_rows[0], quantity=4),
        *[InventoryBuffer(organization=org, product_id=pid, quantity=3) for pid in products[:30]],
        *[
            InventoryBuffer(organization=org, product_id=pid, channel=channel_rows[0], percent=25)
            for pid in products[20:40]
        ],
        *[
            InventoryBuffer(organization=org, product_id=pid, location=location_rows[0], quantity=1)
            for pid in products[35:60]
        ],
    ]
    InventoryBuffer.objects.bulk_create(buffers)
    with connection.cursor() as cursor:
        for table in ("inventory_product", "inventory_inventorylevel", "inventory_inventorybuffer"):
            cursor.execute(f"ANALYZE {table}")  # what autovacuum would do after such a load
    return {
        "org": org,
        "channels": channel_rows,
        "levels": skus * locations,
        "buffers": len(buffers),
        "links": len(links),
        "seconds": round(time.perf_counter() - started, 2),
    }


FLOOR_SQL = """
SELECT count(*), sum(available) FROM (
    SELECT cl.channel_id, lv.product_id, GREATEST(sum(lv.on_hand - lv.committed), 0) AS available
      FROM unnest(%s::bigint[], %s::bigint[]) AS cl(channel_id, location_id)
      JOIN inventory_inventorylevel lv ON lv.location_id = cl.location_id
     GROUP BY cl.channel_id, lv.product_id
) AS figures
"""


def floor(channels, work_mem: str | None, runs: int = 3) -> dict:
    """
    The SQL floor: the same sums without buffers, flags or writes; the median of `runs`. With `work_mem`
    the memory the recompute's statement gets (inventory.sync.WORK_MEM), else the server's default.
    """
    from django.db import connection, transaction

    from inventory import figures

    pairs = [
        (c.pk, loc) for c in channels for loc in figures.channel_locations(c).values_list("pk", flat=True)
    ]
    times = []
    for _ in range(runs):
        with transaction.atomic(), connection.cursor() as cursor:
            if work_mem:
                cursor.execute("SELECT set_config('work_mem', %s, true)", [work_mem])
            started = time.perf_counter()
            cursor.execute(FLOOR_SQL, [[c for c, _ in pairs], [loc for _, loc in pairs]])
            rows, _ = cursor.fetchone()
            times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {
        "seconds": round(seconds, 3),
        "runs": [round(t, 3) for t in times],
        "rows": rows,
        "rows_per_s": rate(rows, seconds),
        "work_mem": work_mem or "server default",
    }


def rate(rows, seconds) -> int:
    return int(rows / seconds) if seconds > 0 else 0


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def change_levels(org, count: int) -> list[int]:
    """`count` levels of distinct products of the org's first location get 7 more units, as set_stock would."""
    from django.db import connection, transaction

    from inventory import services

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE inventory_inventorylevel lv SET on_hand = lv.on_hand + 7, updated_at = now()
                 WHERE lv.id IN (
                       SELECT lv2.id FROM inventory_inventorylevel lv2
                         JOIN inventory_location l ON l.id = lv2.location_id
                        WHERE l.organization_id = %s AND l.name = 'Warehouse 1'
                        ORDER BY lv2.product_id LIMIT %s)
                RETURNING lv.product_id
                """,
                [org.pk, count],
            )
            products = [row[0] for row in cursor.fetchall()]
        services.mark_changed(org, products)
    return products


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--skus", type=int, default=100_000, help="products (100000)")
    parser.add_argument(
        "--locations", type=int, default=10, help="locations, each holding every product (10)"
    )
    parser.add_argument("--channels", type=int, default=5, help="sales channels (5)")
    add_common_arguments(
        parser,
        RESULTS,
        leaves="keeps one more organization with its catalog, stock, channels, figures and outbox rows",
    )
    args = parser.parse_args(argv)
    if args.skus < CHANGED_LEVELS or args.locations < 1 or args.channels < 1:
        parser.error(f"--skus must be at least {CHANGED_LEVELS}; --locations and --channels at least 1")
    return args


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    """Start the services, seed, measure, and return the report (the stack stops what was started)."""
    started = Started()
    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    database_url, redis_url = start_services(stack, started, args.reuse_env)
    setup_django(django_env(database_url, redis_url, folder / "var"))
    from django.db import connection

    from automations.engines import inventory as engine
    from integrations.models import OutboxEvent
    from inventory import sync

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        started.info.setdefault("postgres", cursor.fetchone()[0])
    print(f"Seeding {args.skus} SKUs × {args.locations} locations × {args.channels} channels…")
    seeded = seed(args.skus, args.locations, args.channels)
    org = seeded["org"]
    figures = args.skus * args.channels
    print(
        f"  {seeded['levels']} levels, {seeded['buffers']} buffers, {seeded['links']} links in {seeded['seconds']} s"
    )
    rss_after_seed = peak_rss_mib()

    print(
        f"Floor: one SQL aggregate per channel × product (median of 3), work_mem {sync.WORK_MEM} as the recompute…"
    )
    floor_figures = floor(seeded["channels"], sync.WORK_MEM)
    print(f"  {floor_figures['seconds']} s ({floor_figures['rows']} rows)")
    floor_default = floor(seeded["channels"], None)
    print(f"  at the server's default work_mem: {floor_default['seconds']} s")

    print("Full recompute, ChannelInventory empty…")
    first, first_s = timed(lambda: sync.recompute(org))
    print(f"  {first_s:.3f} s, {first['changed']} figures written, {first['events']} events")

    print("Full recompute again, nothing changed…")
    again, again_s = timed(lambda: sync.recompute(org))
    print(f"  {again_s:.3f} s, {again['changed']} written, {again['events']} events")

    print(f"Incremental: {CHANGED_LEVELS} levels changed, then the engine's process_changes…")
    outbox_before = OutboxEvent.objects.filter(organization=org).count()
    changed_products = change_levels(org, CHANGED_LEVELS)
    incremental, incremental_s = timed(lambda: engine.process_changes(org.pk))
    emitted = OutboxEvent.objects.filter(organization=org).count() - outbox_before
    print(f"  {incremental_s:.3f} s, {incremental.get('changed', 0)} figures changed, {emitted} events")
    rss = peak_rss_mib()

    full_ratio = round(first_s / floor_figures["seconds"], 2)
    again_ratio = round(again_s / floor_figures["seconds"], 2)
    return {
        "meta": {
            **run_meta("inventory.py", started, args.reuse_env, "in-process (no server)"),
            "loadavg_after": loadavg(),
            "skus": args.skus,
            "locations": args.locations,
            "channels": args.channels,
            "levels": seeded["levels"],
            "figures": figures,
            "buffers": seeded["buffers"],
            "links": seeded["links"],
            "seed_s": seeded["seconds"],
        },
        "floor": floor_figures,
        "floor_default_work_mem": floor_default,
        "full": {
            "seconds": round(first_s, 3),
            "rows_per_s": rate(figures, first_s),
            "ratio_to_floor": full_ratio,
            "written": first["changed"],
            "events": first["events"],
        },
        "full_unchanged": {
            "seconds": round(again_s, 3),
            "rows_per_s": rate(figures, again_s),
            "ratio_to_floor": again_ratio,
            "written": again["changed"],
            "events": again["events"],
        },
        "incremental": {
            "levels_changed": CHANGED_LEVELS,
            "products": len(set(changed_products)),
            "seconds": round(incremental_s, 3),
            "changed": incremental.get("changed", 0),
            "events": emitted,
        },
        "memory": {"peak_rss_mib": rss, "peak_rss_after_seed_mib": rss_after_seed},
        "targets": TARGETS,
        "met": {
            "full_ratio": full_ratio <= TARGETS["full_ratio"],
            "full_s": first_s < TARGETS["full_s"],
            "rss": rss < TARGETS["rss_mib"],
            "incremental_s": incremental_s < TARGETS["incremental_s"],
            "nothing_when_unchanged": again["events"] == 0,
        },
    }


def print_report(report: dict) -> None:
    meta, fl = report["meta"], report["floor"]
    print()
    print(
        f"PostgreSQL {meta['postgres']}, {meta['cpus']} cores, load average after {meta['loadavg_after']}. "
        f"{meta['skus']} SKUs × {meta['locations']} locations ({meta['levels']} levels) × {meta['channels']} "
        f"channels = {meta['figures']} figures; {meta['buffers']} buffers, {meta['links']} channel links."
    )
    head = f"{'':<36} {'seconds':>8} {'rows/s':>10} {'÷ floor':>8} {'written':>8} {'events':>8}"
    print(head)
    print("-" * len(head))
    print(
        f"{'floor (one SQL aggregate)':<36} {fl['seconds']:>8.3f} {fl['rows_per_s']:>10} {'1.00':>8} {'':>8} {'':>8}"
    )
    for label, key in (
        ("full, ChannelInventory empty", "full"),
        ("full again, nothing changed", "full_unchanged"),
    ):
        row = report[key]
        print(
            f"{label:<36} {row['seconds']:>8.3f} {row['rows_per_s']:>10} {row['ratio_to_floor']:>8.2f} "
            f"{row['written']:>8} {row['events']:>8}"
        )
    inc = report["incremental"]
    label = f"incremental ({inc['levels_changed']} levels changed)"
    print(f"{label:<36} {inc['seconds']:>8.3f} {'':>10} {'':>8} {inc['changed']:>8} {inc['events']:>8}")
    print(
        f"Floor at the server's default work_mem: {report['floor_default_work_mem']['seconds']:.3f} s "
        f"(the floor above and the recompute run with work_mem {fl['work_mem']})."
    )
    print(f"\nPeak RSS of this process: {report['memory']['peak_rss_mib']} MiB.")
    t, met = report["targets"], report["met"]
    print(
        f"Targets: full ≤ {t['full_ratio']}× floor {'met' if met['full_ratio'] else 'MISSED'}, "
        f"< {t['full_s']} s {'met' if met['full_s'] else 'MISSED'}; RSS < {t['rss_mib']} MiB "
        f"{'met' if met['rss'] else 'MISSED'}; incremental < {t['incremental_s']} s "
        f"{'met' if met['incremental_s'] else 'MISSED'}; nothing emitted when unchanged "
        f"{'met' if met['nothing_when_unchanged'] else 'MISSED'}."
    )


def main(argv=None) -> int:
    return harness_main(parse_args(argv), run, print_report)


if __name__ == "__main__":
    sys.exit(main())
