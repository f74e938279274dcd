"""
The load test with a ledger (bench/load.py), short: ~300 orders from three channels, two 3PLs shipping them,
stock pushes — while the worker is SIGKILLed once, Redis is stopped for 10 s and PostgreSQL restarted. The
driver starts its own PostgreSQL and Redis (it stops and restarts them), gunicorn, worker, beat and a webhook
receiver. Nothing here is timed: the figures go to the report, the assertions are the reconciliation's.
"""

import contextlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def _driver():
    """bench/load.py as a module (the bench folder is not a package; its _harness must be importable)."""
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_load", BENCH / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    load = _driver()
    with contextlib.ExitStack() as stack:
        result = load.run_scenario(load.Config.short(), stack, tmp_path_factory.mktemp("load"))
    load.print_report(result)  # shown with -s, and on failure in the captured output
    return result


def test_the_chaos_happened(report):
    chaos = report["chaos"]
    happened = [entry["what"] for entry in chaos["timeline"]]
    assert chaos["worker_kills"] >= 1
    assert "Redis stopped" in happened and "Redis back" in happened
    assert "PostgreSQL back" in happened
    # the clients met the outages and retried through them
    retried = sum(e["retried_calls"] for e in report["endpoints"].values())
    assert retried > 0, report["endpoints"]


def test_the_hub_drained(report):
    assert report["drain"]["drained"], report["drain"]


def test_orders_none_lost_none_duplicated(report):
    orders = report["reconciliation"]["orders"]
    assert orders["expected"] >= 250, orders  # acknowledged by the hub (a client may give up on a few)
    assert orders["lost_count"] == 0, orders["lost"]
    assert orders["duplicated_count"] == 0, orders["duplicated"]
    assert orders["unexpected_count"] == 0, orders["unexpected"]
    assert orders["other_id_or_lines_count"] == 0, orders["other_id_or_lines"]
    assert orders["by_status"] == {"fulfilled": orders["found"] + orders["unacknowledged_found"]}
    assert orders["by_mode"].get("retry") and orders["by_mode"].get("resend"), orders["by_mode"]


def test_fulfillments_none_lost_none_duplicated(report):
    fulfillments = report["reconciliation"]["fulfillments"]
    assert fulfillments["expected"] > 0
    assert fulfillments["lost_count"] == 0, fulfillments["lost"]
    assert fulfillments["duplicated_count"] == 0
    assert fulfillments["unexpected_count"] == 0, fulfillments["unexpected"]
    assert fulfillments["requests_shipped_twice"] == 0
    assert fulfillments["order_lines_not_requested_exactly"] == 0
    assert set(fulfillments["requests_by_status"]) == {"fulfilled"}, fulfillments["requests_by_status"]


def test_stock_as_last_acknowledged(report):
    stock = report["reconciliation"]["stock"]
    assert stock["pushes_acknowledged"] > 0
    assert stock["wrong_count"] == 0, stock["wrong"]
    assert stock["committed_left"] == 0


def test_every_event_delivered_once_per_subscription(report):
    events = report["reconciliation"]["events"]
    assert events["outbox_undispatched"] == 0
    assert events["deliveries"] > 0
    assert set(events["deliveries_by_status"]) == {"succeeded"}, events["deliveries_by_status"]
    assert events["pairs_with_more_than_one_delivery"] == 0
    assert events["not_received_count"] == 0, events["not_received"]
    assert events["unknown_ids_count"] == 0, events["unknown_ids"]
    assert events["bad_signatures"] == 0, events["bad_signature_samples"]
    assert events["at_wrong_subscription"] == 0
    assert events["pairs_with_several_ids_at_receiver"] == 0


def test_every_order_fulfillment_and_request_told_with_one_webhook_id(report):
    told = report["reconciliation"]["events"]["told"]
    assert set(told) == {"ch1", "ch2", "ch3", "tpl1", "tpl2"}
    for tag, per_kind in told.items():
        for kind, check in per_kind.items():
            assert check["expected"] > 0, (tag, kind, check)
            assert check["lost_count"] == 0, (tag, kind, check["lost"])
            assert check["several_ids"] == 0, (tag, kind, check)


def test_answers_kept_the_contract(report):
    assert report["mismatches"] == [], report["mismatches"]
    assert report["client_errors"] == []
    assert all(report["checks"].values()), report["checks"]
