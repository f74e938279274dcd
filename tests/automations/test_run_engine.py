"""`manage.py run_engine`: each engine run now, per organization, with skipped and failed ones reported."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from automations.choices import Engine, RunOutcome, RunTrigger
from automations.engine_settings import engine_settings
from automations.engines import hold
from automations.models import EngineSettings, EngineStatus, SyncException
from core.sync_exceptions import ExceptionKind
from inventory.models import ChannelInventory
from orders.choices import OrderStatus
from orders.models import Order


def run(*args):
    """(stdout, stderr) of the command."""
    out, err = StringIO(), StringIO()
    call_command("run_engine", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def switch_off(org, engine):
    settings = engine_settings(org)
    setattr(settings, f"{engine}_enabled", False)
    settings.save()


def test_hold_lets_new_orders_through_and_reports_per_organization(org, other_org, new_order):
    out, _ = run("hold")

    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY
    assert out.splitlines()[0].startswith("acme: ") and "1 " in out.splitlines()[0]
    assert out.splitlines()[1].startswith("globex: nothing to do")
    assert out.splitlines()[-1].startswith("Hold engine: ")
    assert "Organizations: 2 ran, 0 skipped, 0 failed." in out
    status = EngineStatus.objects.get(organization=org, engine=Engine.HOLD)
    assert (status.last_trigger, status.last_outcome) == (RunTrigger.COMMAND, RunOutcome.OK)


def test_org_option_runs_one_organization_only(org, other_org, new_order):
    out, _ = run("hold", "--org", "globex")

    assert "acme" not in out
    assert Order.objects.get(pk=new_order.pk).status == OrderStatus.NEW
    assert not EngineStatus.objects.filter(organization=org).exists()


def test_switched_off_engine_is_skipped_and_nothing_changes(org, new_order):
    switch_off(org, Engine.HOLD)

    out, _ = run("hold", "--org", "acme")

    assert out.splitlines() == [
        "acme: skipped (switched off)",
        "Hold engine: nothing to do. Organizations: 0 ran, 1 skipped, 0 failed.",
    ]
    assert Order.objects.get(pk=new_order.pk).status == OrderStatus.NEW
    assert not EngineStatus.objects.exists()


def test_routing_routes_ready_orders(org, ready_order, stock):
    order = ready_order(("MUG", 2))

    out, _ = run("routing", "--org", "acme")

    order.refresh_from_db()
    assert order.status == OrderStatus.SENT_TO_FULFILLMENT
    assert out.startswith("acme: ") and "nothing to do" not in out.splitlines()[0]


def test_inventory_recomputes_what_channels_may_sell(org, integration, stock, products):
    out, _ = run("inventory", "--org", "acme")

    available = dict(
        ChannelInventory.objects.filter(channel=integration).values_list("product__sku", "available")
    )
    assert available == {"TSHIRT-S": 10, "TSHIRT-M": 10, "MUG": 10}
    assert out.startswith("acme: ") and "nothing to do" not in out.splitlines()[0]


def test_exceptions_raises_stuck_orders(org, ready_order, stock):
    order = ready_order(("MUG", 1))
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(days=5))
    EngineSettings.objects.filter(organization=org).update(stuck_after_hours=1)

    out, _ = run("exceptions", "--org", "acme")

    assert SyncException.objects.filter(organization=org, kind=ExceptionKind.STUCK_ORDER).exists()
    assert "stuck" in out.splitlines()[0]


def test_json_output(org, other_org, new_order):
    switch_off(other_org, Engine.HOLD)

    out, _ = run("hold", "--json")

    data = json.loads(out)
    assert data["engine"] == "hold"
    assert [(r["organization"], r["outcome"]) for r in data["organizations"]] == [
        ("acme", "ok"),
        ("globex", "skipped"),
    ]
    assert (data["ran"], data["skipped"], data["failed"]) == (1, 1, 0)
    assert data["totals"] == data["organizations"][0]["counts"] and data["totals"]


def test_a_failing_organization_is_reported_the_others_still_run_and_the_exit_is_non_zero(
    org, other_org, new_order, monkeypatch
):
    real = hold.run_now

    def flaky(organization=None, **options):
        if organization.slug == "acme":
            raise RuntimeError("database went away")
        return real(organization, **options)

    monkeypatch.setattr(hold, "run_now", flaky)
    out = StringIO()

    with pytest.raises(CommandError, match="failed in acme"):
        call_command("run_engine", "hold", stdout=out, stderr=StringIO())

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("acme: FAILED") and "RuntimeError: database went away" in lines[0]
    assert lines[1].startswith("globex: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["teleport"], "Unknown engine 'teleport'; one of: hold, routing, inventory, exceptions."),
        (["hold", "--org", "nope"], "Unknown organization 'nope'."),
    ],
)
def test_bad_input_is_a_clear_error(db, args, message):
    with pytest.raises(CommandError) as error:
        run(*args)

    assert str(error.value) == message
    assert not EngineStatus.objects.exists()


def test_engine_name_is_case_insensitive_and_no_organizations_is_said(db):
    out, _ = run("HOLD")

    assert out.strip() == "No organizations."
