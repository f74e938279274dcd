"""
bench/load.py's drain and reconciliation: waiting until the hub has nothing left to do, then comparing the
clients' ledger with the database and with what the receiver got; the verdict and the timelines.
"""

import itertools
import time
from collections import Counter, defaultdict

from _load_clients import ORDER_STOCK, PUSH_INITIAL, STEADY_GAP, Run, Tally
from _load_receiver import TRUNCATED, Receiver
from _load_traffic import Chaos

# --- the database's side (psycopg: the drain and the reconciliation) ------------------------------------


def db_rows(database_url: str, sql: str, params=None) -> list[tuple]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def progress(database_url: str, org: int) -> dict:
    """What is still in flight in the hub."""
    (row,) = db_rows(
        database_url,
        """
        SELECT
          (SELECT count(*) FROM orders_order WHERE organization_id = %(org)s AND status <> 'fulfilled'),
          (SELECT count(*) FROM orders_order WHERE organization_id = %(org)s),
          (SELECT count(*) FROM integrations_outboxevent WHERE dispatched_at IS NULL),
          (SELECT count(*) FROM integrations_webhookdelivery WHERE status IN ('pending', 'failed')),
          (SELECT count(*) FROM integrations_webhookdelivery WHERE status = 'succeeded'),
          (SELECT count(*) FROM inventory_availabilitychange),
          (SELECT coalesce(max(id), 0) FROM integrations_outboxevent)
        """,
        {"org": org},
    )
    keys = (
        "open_orders",
        "orders",
        "undispatched",
        "owed",
        "succeeded",
        "availability_changes",
        "last_event",
    )
    return dict(zip(keys, row, strict=True))


def drain(run: Run, database_url: str, receiver: Receiver, timeout: float) -> dict:
    """Until nothing is in flight and the receiver holds every succeeded delivery (stable twice in a row)."""
    began, previous, state = time.monotonic(), None, {}
    while time.monotonic() - began < timeout:
        try:
            state = progress(database_url, run.fixture["org"])
        except Exception as exc:  # PostgreSQL may still be coming back
            state = {"error": str(exc)}
        received = len({r["webhook_id"] for r in receiver.fetch()})
        state["received_ids"] = received
        idle = (
            "error" not in state
            and state["open_orders"] == 0
            and state["undispatched"] == 0
            and state["owed"] == 0
            and state["availability_changes"] == 0
            and received >= state["succeeded"]
        )
        if idle and state == previous:
            return {"drained": True, "seconds": round(time.monotonic() - began, 1), "state": state}
        previous = state if idle else None
        time.sleep(2.0)
    return {"drained": False, "seconds": round(time.monotonic() - began, 1), "state": state}


def compare_sets(expected: set, found: set) -> dict:
    return {
        "expected": len(expected),
        "found": len(found),
        "lost": sorted(expected - found)[:20],
        "lost_count": len(expected - found),
        "unexpected": sorted(found - expected)[:20],
        "unexpected_count": len(found - expected),
    }


def reconcile(run: Run, database_url: str, receiver: Receiver) -> dict:
    ledger, fixture = run.ledger, run.fixture
    org = fixture["org"]
    channel_tag = {ch["id"]: ch["tag"] for ch in fixture["channels"]}
    tpl_tag = {tpl["id"]: tpl["tag"] for tpl in fixture["tpls"]}
    sub_tag = {item["subscription"]: item["tag"] for item in [*fixture["channels"], *fixture["tpls"]]}
    unacknowledged = set(ledger.orders_unacknowledged)

    # Orders: (channel, external_id) as the ledger has them, against the database.
    rows = db_rows(
        database_url,
        """
        SELECT o.id, o.source_id, o.external_id, o.status,
               array_agg(l.sku || ':' || l.quantity ORDER BY l.sku)
        FROM orders_order o JOIN orders_orderline l ON l.order_id = o.id
        WHERE o.organization_id = %s GROUP BY o.id
        """,
        (org,),
    )
    db_orders = Counter((channel_tag.get(source), ext) for _, source, ext, _, _ in rows)
    by_key = {
        (channel_tag.get(source), ext): (str(pk), status, lines) for pk, source, ext, status, lines in rows
    }
    expected = {(entry["channel"], ext) for ext, entry in ledger.orders.items()}
    found = {key for key in db_orders if key[1] not in unacknowledged}
    orders = compare_sets(expected, found)
    orders["duplicated"] = sorted(k for k, n in db_orders.items() if n > 1)[:20]
    orders["duplicated_count"] = sum(n - 1 for n in db_orders.values() if n > 1)
    orders["unacknowledged_by_client"] = len(unacknowledged)
    orders["unacknowledged_found"] = sum(1 for k in db_orders if k[1] in unacknowledged)
    wrong = []
    for ext, entry in ledger.orders.items():
        got = by_key.get((entry["channel"], ext))
        if got is None:
            continue
        lines = sorted(tuple(x.rsplit(":", 1)) for x in got[2])
        if got[0] != str(entry["id"]) or [(s, int(q)) for s, q in lines] != [
            tuple(x) for x in entry["lines"]
        ]:
            wrong.append(ext)
    orders["other_id_or_lines"] = wrong[:20]
    orders["other_id_or_lines_count"] = len(wrong)
    orders["by_status"] = dict(Counter(status for _, _, _, status, _ in rows))
    orders["first_answers"] = dict(Counter(str(e["status"]) for e in ledger.orders.values()))
    orders["first_answers_replayed"] = sum(1 for e in ledger.orders.values() if e["replayed"])
    orders["by_mode"] = dict(Counter(e["mode"] for e in ledger.orders.values()))

    # Fulfillments and shipping requests.
    rows = db_rows(
        database_url,
        """
        SELECT f.id, f.integration_id, f.external_id, f.shipping_request_id,
               array_agg(p.sku || ':' || fl.quantity ORDER BY p.sku)
        FROM orders_fulfillment f JOIN orders_fulfillmentline fl ON fl.fulfillment_id = f.id
        JOIN inventory_product p ON p.id = fl.product_id
        WHERE f.organization_id = %s GROUP BY f.id
        """,
        (org,),
    )
    db_fulfillments = Counter((tpl_tag.get(integration), ext) for _, integration, ext, _, _ in rows)
    per_request = Counter(request for _, _, _, request, _ in rows)
    fulfillments = compare_sets(set(ledger.fulfillments), set(db_fulfillments))
    fulfillments["duplicated_count"] = sum(n - 1 for n in db_fulfillments.values() if n > 1)
    fulfillments["requests_shipped_twice"] = sum(1 for n in per_request.values() if n > 1)
    fulfillments["first_answers"] = dict(Counter(str(e["status"]) for e in ledger.fulfillments.values()))
    requests = db_rows(
        database_url,
        """
        SELECT r.id, r.status, r.location_id, r.order_id,
               (SELECT count(*) FROM orders_shippingrequestline l WHERE l.request_id = r.id
                AND l.fulfilled_quantity <> l.quantity)
        FROM orders_shippingrequest r WHERE r.organization_id = %s
        """,
        (org,),
    )
    fulfillments["requests_by_status"] = dict(Counter(status for _, status, _, _, _ in requests))
    fulfillments["request_lines_not_fully_shipped"] = sum(n for *_, n in requests)
    (uncovered,) = db_rows(
        database_url,
        """
        SELECT count(*) FROM orders_orderline ol JOIN orders_order o ON o.id = ol.order_id
        WHERE o.organization_id = %s AND ol.quantity <> coalesce(
            (SELECT sum(rl.quantity) FROM orders_shippingrequestline rl
             JOIN orders_shippingrequest r ON r.id = rl.request_id
             WHERE rl.order_line_id = ol.id AND r.status <> 'canceled'), 0)
        """,
        (org,),
    )
    fulfillments["order_lines_not_requested_exactly"] = uncovered[0]

    # Stock: push SKUs at the last acknowledged count, order SKUs at the start less the ledger's shipments.
    levels = db_rows(
        database_url,
        """
        SELECT p.sku, l.location_id, l.on_hand, l.committed FROM inventory_inventorylevel l
        JOIN inventory_product p ON p.id = l.product_id WHERE p.organization_id = %s
        """,
        (org,),
    )
    shipped: Counter = Counter()
    for entry in ledger.fulfillments.values():
        for sku, quantity in entry["lines"]:
            shipped[(sku, entry["location"])] += quantity
    stock_wrong, ambiguous_skipped, committed = [], 0, 0
    for sku, location, on_hand, held in levels:
        committed += held
        if (sku, location) in ledger.stock_ambiguous:
            ambiguous_skipped += 1
            continue
        if sku.startswith("LOAD-P-"):
            want = ledger.stock.get((sku, location), PUSH_INITIAL)
        else:
            want = ORDER_STOCK - shipped[(sku, location)]
        if on_hand != want:
            stock_wrong.append({"sku": sku, "location": location, "on_hand": on_hand, "ledger": want})
    stock = {
        "levels": len(levels),
        "pushes_acknowledged": ledger.pushes,
        "levels_pushed": len(ledger.stock),
        "wrong": stock_wrong[:20],
        "wrong_count": len(stock_wrong),
        "ambiguous_skipped": ambiguous_skipped,
        "committed_left": committed,
    }

    # Events: the database's deliveries against the receiver's records.
    deliveries = db_rows(
        database_url,
        """
        SELECT d.event_id, d.outbox_event_id, d.subscription_id, d.status, d.event_type, d.attempts,
               extract(epoch FROM e.created_at)
        FROM integrations_webhookdelivery d JOIN integrations_outboxevent e ON e.id = d.outbox_event_id
        """,
    )
    (undispatched,) = db_rows(
        database_url, "SELECT count(*) FROM integrations_outboxevent WHERE dispatched_at IS NULL"
    )
    records = receiver.fetch()
    truncated = [r for r in records if r["error"].startswith(TRUNCATED)]
    bad = [r for r in records if r["error"] and not r["error"].startswith(TRUNCATED)]
    received: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if not record["error"]:  # only a whole, verified request counts as received
            received[record["webhook_id"]].append(record)
    per_pair = Counter((outbox, sub) for _, outbox, sub, *_ in deliveries)
    by_id = {event_id: (outbox, sub, status) for event_id, outbox, sub, status, *_ in deliveries}
    ours = {event_id for event_id, _, sub, *_ in deliveries if sub in sub_tag}
    not_received = sorted(event_id for event_id in ours if event_id not in received)
    wrong_place = sorted(
        event_id
        for event_id in ours
        if event_id in received and any(r["tag"] != sub_tag[by_id[event_id][1]] for r in received[event_id])
    )
    # Distinct webhook-ids per (event, subscription) as the receiver saw them.
    seen_ids_per_pair: dict[tuple, set] = defaultdict(set)
    for webhook_id in received:
        if webhook_id in by_id:
            outbox, sub, _ = by_id[webhook_id]
            seen_ids_per_pair[(outbox, sub)].add(webhook_id)
    events = {
        "outbox_undispatched": undispatched[0],
        "deliveries": len(deliveries),
        "deliveries_by_status": dict(Counter(status for _, _, _, status, *_ in deliveries)),
        "deliveries_by_type": dict(Counter(kind for _, _, _, _, kind, *_ in deliveries)),
        "attempts_over_one": sum(1 for *_, attempts, _ in deliveries if attempts > 1),
        "pairs_with_more_than_one_delivery": sum(1 for n in per_pair.values() if n > 1),
        "received_requests": len(records),
        "received_ids": len(received),
        "received_again": sum(len(v) - 1 for v in received.values()),  # at-least-once: same id, sent again
        "bad_signatures": len(bad),
        "bad_signature_samples": [r["error"] for r in bad][:3],
        "truncated_by_a_killed_sender": len(truncated),
        "not_received": not_received[:20],
        "not_received_count": len(not_received),
        "unknown_ids": sorted(set(received) - set(by_id))[:20],
        "unknown_ids_count": len(set(received) - set(by_id)),
        "at_wrong_subscription": len(wrong_place),
        "pairs_with_several_ids_at_receiver": sum(1 for ids in seen_ids_per_pair.values() if len(ids) > 1),
    }

    # The ledger's view: each order, fulfillment and shipping request told once to whom it concerns.
    def distinct_ids(tag: str, kind: str, attribute: str) -> dict[str, set]:
        out: dict[str, set] = defaultdict(set)
        for record in records:
            if record["tag"] == tag and record["type"] == kind and not record["error"]:
                out[record[attribute]].add(record["webhook_id"])
        return out

    told = {}
    channel_of_order = {str(e["id"]): e["channel"] for e in ledger.orders.values()}
    for channel in fixture["channels"]:
        tag = channel["tag"]
        created = distinct_ids(tag, "order.created", "external_id")
        fulfilled = distinct_ids(tag, "fulfillment.created", "data_id")
        want_orders = {ext for ext, e in ledger.orders.items() if e["channel"] == tag}
        want_fulfillments = {
            str(e["id"]) for e in ledger.fulfillments.values() if channel_of_order.get(e["order"]) == tag
        }
        told[tag] = {
            "order.created": {
                **compare_sets(want_orders, set(created)),
                "several_ids": sum(1 for ids in created.values() if len(ids) > 1),
            },
            "fulfillment.created": {
                **compare_sets(want_fulfillments, set(fulfilled)),
                "several_ids": sum(1 for ids in fulfilled.values() if len(ids) > 1),
            },
        }
    for tpl in fixture["tpls"]:
        tag = tpl["tag"]
        created = distinct_ids(tag, "shipping_request.created", "data_id")
        want = {str(pk) for pk, _, location, _, _ in requests if location == tpl["location"]}
        told[tag] = {
            "shipping_request.created": {
                **compare_sets(want, set(created)),
                "several_ids": sum(1 for ids in created.values() if len(ids) > 1),
            }
        }
    events["told"] = told
    return {"orders": orders, "fulfillments": fulfillments, "stock": stock, "events": events}


def verdict(reconciliation: dict, run: Run) -> dict[str, bool]:
    """The reconciliation's pass/fail checks (issue 7): what tests/load asserts."""
    orders, fulfillments = reconciliation["orders"], reconciliation["fulfillments"]
    stock, events = reconciliation["stock"], reconciliation["events"]
    told = events["told"]
    return {
        "orders: 0 lost": orders["lost_count"] == 0,
        "orders: 0 duplicated": orders["duplicated_count"] == 0 and orders["unexpected_count"] == 0,
        "orders: ids and lines as acknowledged": orders["other_id_or_lines_count"] == 0,
        "orders: all fulfilled": set(orders["by_status"]) == {"fulfilled"},
        "fulfillments: 0 lost": fulfillments["lost_count"] == 0,
        "fulfillments: 0 duplicated": fulfillments["duplicated_count"] == 0
        and fulfillments["unexpected_count"] == 0
        and fulfillments["requests_shipped_twice"] == 0,
        "shipping requests: each order line requested exactly": fulfillments[
            "order_lines_not_requested_exactly"
        ]
        == 0,
        "stock: as last acknowledged": stock["wrong_count"] == 0 and stock["committed_left"] == 0,
        "answers: as the contract says": not run.ledger.mismatches,
        "events: all dispatched and delivered": events["outbox_undispatched"] == 0
        and set(events["deliveries_by_status"]) <= {"succeeded"},
        "events: one delivery per event and subscription": events["pairs_with_more_than_one_delivery"] == 0,
        "events: every delivery received, signed": events["not_received_count"] == 0
        and events["bad_signatures"] == 0
        and events["unknown_ids_count"] == 0
        and events["at_wrong_subscription"] == 0,
        "events: one webhook-id per event and subscription": events["pairs_with_several_ids_at_receiver"] == 0
        and all(check.get("several_ids", 0) == 0 for per_tag in told.values() for check in per_tag.values()),
        "events: every order, fulfillment and request told": all(
            check["lost_count"] == 0 for per_tag in told.values() for check in per_tag.values()
        ),
        "clients: no thread crashed": not run.errors,
    }


# --- timing around the outages ----------------------------------------------------------------------------


def resumption(chaos: Chaos, records: list[dict], deliveries_created: dict[str, float]) -> dict:
    """After Redis came back: the first delivery, a steady flow again, the outage's deliveries all in."""
    marks = {entry["what"]: entry["at"] for entry in chaos.timeline}
    stopped, back = marks.get("Redis stopped"), marks.get("Redis back")
    if stopped is None or back is None:
        return {}
    arrivals = sorted(r["arrived"] for r in records)
    after = [a for a in arrivals if a >= back]
    first = after[0] - back if after else None
    # Steady: from this arrival on, no pause of more than STEADY_GAP s between deliveries for a minute (or
    # until the last delivery). Deliveries come in batches, so "every second" would be too strict a flow.
    steady = None
    for index, start in enumerate(after):
        window = [a for a in after[index:] if a <= start + 60]
        if all(b - a <= STEADY_GAP for a, b in itertools.pairwise(window)):
            steady = round(start - back, 2)
            break
    # Events committed while Redis was down: when the last of them had reached the receiver.
    first_arrival: dict[str, float] = {}
    for record in records:
        first_arrival.setdefault(record["webhook_id"], record["arrived"])
    during = [wid for wid, created in deliveries_created.items() if stopped <= created <= back]
    done = [first_arrival[w] for w in during if w in first_arrival]
    bins = Counter(int((a - stopped) // 5) * 5 for a in arrivals if stopped - 20 <= a <= back + 120)
    return {
        "down_seconds": round(back - stopped, 1),
        "first_delivery_after_s": round(first, 2) if first is not None else None,
        "steady_after_s": steady,
        "outage_events_deliveries": len(during),
        "outage_events_all_delivered_after_s": round(max(done) - back, 1)
        if done and len(done) == len(during)
        else None,
        "arrivals_per_5s_from_stop": {str(k): v for k, v in sorted(bins.items())},
    }


def recovery_after(chaos: Chaos, tally: Tally, what: str, endpoint: str = "POST /orders") -> float | None:
    """Seconds from a chaos mark to the next 2xx of `endpoint`."""
    mark = next((e["at"] for e in chaos.timeline if e["what"] == what), None)
    if mark is None:
        return None
    later = [t for t in tally.ok_times[endpoint] if t >= mark]
    return round(min(later) - mark, 2) if later else None


def timeline(database_url: str, t0: float, records: list[dict], step: int = 5) -> list[list]:
    """
    Per `step` s from the traffic's start: orders received, shipping requests made (routing), outbox events,
    delivery rows made (dispatch) and deliveries received — where the flow stalls when something is down.
    """
    tables = [
        "orders_order",
        "orders_shippingrequest",
        "integrations_outboxevent",
        "integrations_webhookdelivery",
    ]
    counts: dict[int, list[int]] = defaultdict(lambda: [0] * (len(tables) + 1))
    for index, table in enumerate(tables):
        bucket = "floor((extract(epoch FROM created_at) - %s) / %s)::int"
        binned = f"SELECT {bucket}, count(*) FROM {table} GROUP BY 1"  # noqa: S608 - fixed table names
        for slot, count in db_rows(database_url, binned, (t0, step)):
            counts[slot][index] = count
    for record in records:
        counts[int((record["arrived"] - t0) // step)][len(tables)] += 1
    return [[slot * step, *counts[slot]] for slot in sorted(counts)]
