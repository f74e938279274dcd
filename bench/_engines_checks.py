"""
What bench/engines.py reads back and checks: each order's outcome against its prediction, the stock
figures, the latency spread; what each engine step costs in this process; and two sweeps that overlap.
"""

import contextlib
import statistics
import threading
import time
from collections import Counter, defaultdict
from functools import partial

from _engines_fixture import OUTCOMES, REVIEW, Fixture, Spec
from _engines_traffic import Posted
from _harness import (
    percentile,
)

# --- what the database says happened -------------------------------------------------------------------


def outcomes(fixture: Fixture, specs: list[Spec]) -> dict[str, dict]:
    """Per external id: status, outcome, locations, server timestamps, rule runs and request count."""
    from django.db.models import Count, Min

    from automations.choices import RuleTrigger
    from automations.models import RuleRun
    from orders.choices import OrderStatus
    from orders.models import Order, ShippingRequest
    from orders.services import UNROUTABLE_REASON

    wanted = [s.external_id for s in specs]
    orders = Order.objects.filter(source_id=fixture.channel_id, external_id__in=wanted)
    rows = {
        r["pk"]: r
        for r in orders.values(
            "pk", "external_id", "status", "hold_reason", "created_at", "updated_at", "total"
        )
    }
    requests = defaultdict(list)
    first_request = {}
    for order_id, location_id, created_at in ShippingRequest.objects.filter(order__in=orders).values_list(
        "order_id", "location_id", "created_at"
    ):
        requests[order_id].append(location_id)
        first_request[order_id] = min(first_request.get(order_id, created_at), created_at)
    runs = {
        r["order_id"]: r
        for r in RuleRun.objects.filter(order__in=orders, trigger=RuleTrigger.ORDER_CREATED, dry_run=False)
        .values("order_id")
        .annotate(n=Count("pk"), first=Min("created_at"))
    }
    found = {}
    for order_id, row in rows.items():
        reasons = row["hold_reason"].split("; ") if row["hold_reason"] else []
        if row["status"] == OrderStatus.SENT_TO_FULFILLMENT:
            outcome, decided = "routed", first_request.get(order_id)
        elif row["status"] == OrderStatus.ON_HOLD and REVIEW in reasons:
            outcome, decided = "held_review", row["updated_at"]
        elif row["status"] == OrderStatus.ON_HOLD and UNROUTABLE_REASON in reasons:
            outcome, decided = "held_unroutable", row["updated_at"]
        else:
            outcome, decided = f"{row['status']}: {row['hold_reason']}".rstrip(": "), None
        run = runs.get(order_id, {})
        found[row["external_id"]] = {
            "id": order_id,
            "status": row["status"],
            "outcome": outcome,
            "total": row["total"],
            "locations": requests.get(order_id, []),
            "created_at": row["created_at"],
            "hold_engine_at": run.get("first"),
            "decided_at": decided,
            "rule_runs": run.get("n", 0),
        }
    return found


def compare(specs: list[Spec], found: dict[str, dict], names: dict[int, str]) -> dict:
    """Actual against predicted: counts of each, and each order that differs (with why)."""
    predicted, actual, mismatches = Counter(), Counter(), []
    for spec in specs:
        row = found.get(spec.external_id)
        predicted[spec.outcome] += 1
        if row is None:
            mismatches.append(f"{spec.external_id}: not in the database")
            continue
        actual[row["outcome"]] += 1
        where = frozenset(row["locations"])
        problems = []
        if row["outcome"] != spec.outcome:
            problems.append(f"{row['outcome']}, predicted {spec.outcome}")
        if row["total"] != spec.total:
            problems.append(f"total {row['total']}, sent {spec.total}")
        if where != spec.locations:
            problems.append(
                f"routed to {sorted(names[i] for i in row['locations'])}, predicted "
                f"{sorted(names[i] for i in spec.locations)}"
            )
        if len(row["locations"]) != len(where):
            problems.append(f"{len(row['locations'])} shipping requests for {len(where)} locations")
        if row["rule_runs"] != 1:
            problems.append(f"{row['rule_runs']} order.created rule runs, not 1")
        if problems:
            mismatches.append(f"{spec.external_id}: " + "; ".join(problems))
    return {
        "predicted": {k: predicted[k] for k in OUTCOMES},
        "actual": {
            **{k: actual[k] for k in OUTCOMES},
            **{k: v for k, v in actual.items() if k not in OUTCOMES},
        },
        "split": sum(1 for s in specs if len(s.locations) > 1),
        "mismatches": len(mismatches),
        "mismatch_samples": mismatches[:15],
        "ok": not mismatches,
    }


def stock_checks(fixture: Fixture) -> dict:
    """Org-wide: duplicate requests, lines routed ≠ ordered, Σ committed vs open request lines, buffer."""
    from django.db.models import Count, Sum

    from inventory.models import InventoryBuffer, InventoryLevel
    from orders.models import OrderLine, ShippingRequest, ShippingRequestLine
    from orders.services import OPEN_REQUEST

    org = fixture.org_id
    duplicates = (
        ShippingRequest.objects.filter(organization_id=org)
        .values("order_id", "location_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    )
    routed = dict(
        ShippingRequestLine.objects.filter(request__organization_id=org)
        .values("order_line_id")
        .annotate(q=Sum("quantity"))
        .values_list("order_line_id", "q")
    )
    ordered = dict(
        OrderLine.objects.filter(order__shipping_requests__organization_id=org)
        .distinct()
        .values_list("pk", "quantity")
    )
    lines_off = sum(1 for pk, qty in ordered.items() if routed.get(pk, 0) != qty)
    open_lines = {
        (r["product_id"], r["request__location_id"]): r["q"]
        for r in ShippingRequestLine.objects.filter(
            request__organization_id=org, request__status__in=OPEN_REQUEST
        )
        .values("product_id", "request__location_id")
        .annotate(q=Sum("quantity"))
    }
    levels = list(
        InventoryLevel.objects.filter(location__organization_id=org).values_list(
            "product_id", "location_id", "on_hand", "committed"
        )
    )
    buffer = InventoryBuffer.objects.filter(
        organization_id=org, location=None, product=None, channel=None
    ).first()
    committed = {(p, loc): c for p, loc, _, c in levels}
    unequal = sorted(
        key for key in set(committed) | set(open_lines) if committed.get(key, 0) != open_lines.get(key, 0)
    )
    over = [
        (p, loc, on_hand, c)
        for p, loc, on_hand, c in levels
        if c > on_hand - (buffer.held_back(on_hand) if buffer else 0)
    ]
    return {
        "duplicate_requests": duplicates,
        "order_lines_not_routed_exactly": lines_off,
        "levels": len(levels),
        "committed_units": sum(committed.values()),
        "open_request_units": sum(open_lines.values()),
        "levels_committed_ne_open_lines": len(unequal),
        "levels_over_on_hand_less_buffer": len(over),
        "over_samples": [list(x) for x in over[:5]],
        "ok": not (duplicates or lines_off or unequal or over),
    }


def seconds(later, earlier) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


def spread(values: list[float]) -> dict:
    values = sorted(v for v in values if v is not None)
    return {
        "n": len(values),
        "p50_s": round(percentile(values, 0.50), 3),
        "p95_s": round(percentile(values, 0.95), 3),
        "p99_s": round(percentile(values, 0.99), 3),
        "max_s": round(values[-1], 3) if values else float("nan"),
    }


def latency(specs: list[Spec], found: dict, posted: Posted, seen: dict[int, float]) -> dict:
    """Server-side ingest → decided (overall and per outcome, and the hold engine's step); client-side bound."""
    rows = [found[s.external_id] for s in specs if s.external_id in found]
    by_outcome = defaultdict(list)
    for row in rows:
        by_outcome[row["outcome"]].append(seconds(row["decided_at"], row["created_at"]))
    client = [
        seen[posted.ids[s.external_id]] - posted.acked[s.external_id]
        for s in specs
        if s.external_id in posted.ids and posted.ids[s.external_id] in seen
    ]
    return {
        "ingest_to_decided": spread([seconds(r["decided_at"], r["created_at"]) for r in rows]),
        "by_outcome": {k: spread(v) for k, v in sorted(by_outcome.items())},
        "ingest_to_hold_engine": spread([seconds(r["hold_engine_at"], r["created_at"]) for r in rows]),
        "hold_engine_to_routed": spread(
            [seconds(r["decided_at"], r["hold_engine_at"]) for r in rows if r["outcome"] == "routed"]
        ),
        "client_201_to_seen_decided": spread(client),
    }


# --- (0) in-process: what each engine step costs ------------------------------------------------------


def _step(work) -> tuple[object, dict]:
    """(result, {wall ms, CPU ms of this process, queries}) of one call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return result, {"ms": wall * 1000, "cpu_ms": cpu * 1000, "queries": len(captured.captured_queries)}


def in_process(fixture: Fixture, specs: list[Spec]) -> dict:
    """
    Each order's steps one after the other in this process, triggers off: ingest, the hold engine's
    process_order, the routing engine's route_order_by_id, the inventory engine's process_changes (which
    retries the routing of orders held for the products that moved). Median and mean of each step.
    """
    from automations.choices import RuleTrigger
    from automations.engines import hold, inventory, routing
    from integrations.models import Integration
    from orders import services as order_services
    from orders.choices import OrderStatus

    channel = Integration.objects.get(pk=fixture.channel_id)
    steps = defaultdict(list)
    with triggers_off():
        inventory.process_changes(fixture.org_id)  # the setup's stock and buffer marks: not an order's cost
        for spec in specs:
            (order, _), cost = _step(partial(order_services.ingest_order, channel, spec.body()))
            steps["ingest_order"].append(cost)
            _, cost = _step(partial(hold.process_order, order.pk, trigger=RuleTrigger.ORDER_CREATED))
            steps["hold.process_order"].append(cost)
            order.refresh_from_db(fields=["status"])
            if order.status == OrderStatus.READY:
                _, cost = _step(partial(routing.route_order_by_id, order.pk))
                steps["routing.route_order_by_id"].append(cost)
            _, cost = _step(partial(inventory.process_changes, fixture.org_id))
            steps["inventory.process_changes"].append(cost)
    found = outcomes(fixture, specs)
    return {
        "orders": len(specs),
        "steps": {
            name: {
                "n": len(costs),
                **{
                    f"{stat}_{key}": round(fn([c[key] for c in costs]), 2)
                    for key in ("ms", "cpu_ms", "queries")
                    for stat, fn in (("median", statistics.median), ("mean", statistics.fmean))
                },
            }
            for name, costs in steps.items()
        },
        "check": compare(specs, found, fixture.names),
    }


# --- (6) overlapping sweeps ---------------------------------------------------------------------------


@contextlib.contextmanager
def triggers_off():
    """Mute the engines' on-commit triggers in this process, so only the sweeps move the orders."""
    from core import triggers

    with contextlib.ExitStack() as stack:
        for trigger in (triggers.ORDER_RECEIVED, triggers.ORDER_READY, triggers.AVAILABILITY_CHANGED):
            stack.enter_context(triggers.handled_by(trigger, lambda **facts: None))
        yield


def _sweep_pair(org_id: int) -> tuple[list[dict], float]:
    """Two threads, one connection each, released together: hold.run_now() then routing.run_now()."""
    from django.db import connection

    from automations.engines import hold, routing

    barrier, results = threading.Barrier(2), [None, None]

    def one(index):
        try:
            barrier.wait()
            results[index] = {"hold": hold.run_now(org_id), "routing": routing.run_now(org_id)}
        except Exception as error:  # reported as the thread's result: the check fails with the reason
            results[index] = {"error": f"{type(error).__name__}: {error}"}
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - began


def overlapping_sweeps(fixture: Fixture, specs: list[Spec]) -> dict:
    """Ingest `specs` with no triggers, then two overlapping sweeps, twice; compare with one sweep's result."""
    from django.db import transaction

    from automations.engines import hold, routing
    from integrations.models import Integration
    from orders import services as order_services
    from orders.choices import OrderStatus

    channel = Integration.objects.get(pk=fixture.channel_id)
    with triggers_off():
        began = time.perf_counter()
        with transaction.atomic():
            for spec in specs:
                order_services.ingest_order(channel, spec.body())
        ingest_s = time.perf_counter() - began
        before = Counter(row["status"] for row in outcomes(fixture, specs).values())
        if before != Counter({OrderStatus.NEW: len(specs)}):
            raise SystemExit(f"The sweep's orders are not all new after ingest: {dict(before)}")
        rounds = []
        for _ in range(2):
            results, took = _sweep_pair(fixture.org_id)
            rounds.append({"seconds": round(took, 3), "threads": results})
    found = outcomes(fixture, specs)
    check = compare(specs, found, fixture.names)
    every = [t for r in rounds for t in r["threads"]]
    processed = sum(t.get("hold", {}).get("lost_messages", 0) for t in every)
    routed = sum(t.get("routing", {}).get("routed", 0) for t in every)
    errors = [t["error"] for t in every if "error" in t]
    predicted_routed = check["predicted"]["routed"]
    same = check["ok"] and processed == len(specs) and routed == predicted_routed and not errors
    return {
        "orders": len(specs),
        "ingest_s": round(ingest_s, 3),
        "grace": {
            "hold_new_order_s": hold.GRACE.total_seconds(),
            "routing_lost_ready_s": routing.LOST_MESSAGE_AFTER.total_seconds(),
            "used": "run_now(organization): the sweeps without grace periods (beat's sweep waits them out)",
        },
        "rounds": rounds,
        "hold_processed": processed,
        "routing_routed": routed,
        "errors": errors,
        "check": check,
        "same_as_one_sweep": same,
    }
