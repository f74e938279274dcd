import json
import re
from datetime import datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from integrations import configuration, lifecycle
from integrations.choices import EventKind, IntegrationStatus
from integrations.models import (
    Integration,
)
from inventory.models import Product, SkuMapping
from orders.models import (
    ShippingMethod,
    ShippingMethodMapping,
)
from tests.fixtures.integrations import GOOD_SETTINGS

Status = IntegrationStatus
SECRET = GOOD_SETTINGS["api_token"]


def run(command, *args, **options):
    out = StringIO()
    call_command(command, *args, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def strict_integration(org, strict_connector, make_integration):
    """Complete settings with a secret, some mappings and flows switched away from the defaults."""
    integration = make_integration(org, strict_connector, "Strict shop", settings=GOOD_SETTINGS)
    configuration.save_integration(integration, mappings={"locations": {"WH-EAST": "East"}})
    product = Product.objects.create(organization=org, sku="SKU-1", name="SKU 1")
    SkuMapping.objects.create(integration=integration, external_sku="EXT-1", product=product)
    method = ShippingMethod.objects.create(organization=org, code="y", name="Y")
    ShippingMethodMapping.objects.create(integration=integration, external_code="x", method=method)
    Integration.objects.filter(pk=integration.pk).update(flow_inventory_out=False, flow_products_in=True)
    integration.refresh_from_db()
    return integration


# --- integration_status ---------------------------------------------------------------------------------


def test_integration_status_table_lists_every_integration(integration, other_integration):
    out = run("integration_status")

    header, *rows = out.splitlines()
    assert header.split()[:3] == ["ID", "ORG", "NAME"]
    assert len(rows) == 2
    assert "Acme web shop" in out and "Globex web shop" in out
    assert re.search(rf"^{integration.pk}\s+acme\s+Acme web shop\s+custom-channel\s+connecting\s", out, re.M)


def test_integration_status_truncates_the_last_error_to_one_short_line(integration):
    lifecycle.report_error(integration, "Connection refused\nwhile calling " + "x" * 200)

    out = run("integration_status")

    assert "Connection refused while calling" in out
    assert "x" * 100 not in out
    assert "…" in out


def test_integration_status_filters_by_org_and_status(
    org, channel_connector, make_integration, other_integration
):
    make_integration(org, channel_connector, "Shop A")
    make_integration(org, channel_connector, "Shop B", status=Status.DISABLED)

    by_org = run("integration_status", org="acme")
    by_both = run("integration_status", org="acme", status="disabled")

    assert "Shop A" in by_org and "Shop B" in by_org and "Globex" not in by_org
    assert "Shop B" in by_both and "Shop A" not in by_both


def test_integration_status_says_so_when_nothing_matches(integration):
    assert run("integration_status", status="error").strip() == "No integrations."
    assert json.loads(run("integration_status", status="error", json=True)) == []


def test_integration_status_json_has_full_fields_and_no_settings(strict_integration):
    lifecycle.report_error(strict_integration, "HTTP 401 from the shop")

    rows = json.loads(run("integration_status", json=True))

    (row,) = rows
    assert row["id"] == strict_integration.pk
    assert (row["organization"], row["name"], row["connector"]) == ("acme", "Strict shop", "strict-shop")
    assert (row["status"], row["last_error"]) == ("error", "HTTP 401 from the shop")
    for field in ("status_changed_at", "last_error_at", "last_activity_at", "created_at", "updated_at"):
        assert datetime.fromisoformat(row[field]).tzinfo is not None
    assert row["workflows"]["products_in"] is True
    assert "settings" not in row
    assert SECRET not in json.dumps(rows)


def test_integration_status_refuses_an_unknown_org(integration):
    with pytest.raises(CommandError, match="Unknown organization 'nope'"):
        run("integration_status", org="nope")


def test_integration_status_refuses_an_unknown_status(integration):
    with pytest.raises(CommandError, match="Unknown status 'broken'; one of: not_configured"):
        run("integration_status", status="broken")


@pytest.mark.parametrize("count", [3, 30])
def test_integration_status_runs_a_bounded_number_of_queries(
    org, other_org, channel_connector, tpl_connector, make_integration, django_assert_max_num_queries, count
):
    for i in range(count):
        make_integration(
            org if i % 2 else other_org, channel_connector if i % 3 else tpl_connector, f"Integration {i}"
        )

    with django_assert_max_num_queries(1):
        table = run("integration_status")
    with django_assert_max_num_queries(1):
        listing = json.loads(run("integration_status", json=True))
    with django_assert_max_num_queries(2):  # the organization, then the listing
        run("integration_status", org="acme")

    assert len(table.splitlines()) == count + 1
    assert len(listing) == count


# --- set_integration_status -----------------------------------------------------------------------------


def test_set_integration_status_moves_and_records_the_reason(integration):
    out = run("set_integration_status", str(integration.pk), "disabled", reason="Shop closed for inventory")

    integration.refresh_from_db()
    assert integration.status == Status.DISABLED
    assert integration.status_reason == "Shop closed for inventory"
    assert out.strip().endswith("connecting → disabled")
    event = integration.events.filter(kind=EventKind.STATUS_CHANGED).latest("pk")
    assert (event.actor, event.data["to"]) == ("command", "disabled")


def test_set_integration_status_refuses_an_illegal_move_with_the_services_message(
    org, strict_connector, make_integration
):
    integration = make_integration(org, strict_connector, "Half set up")
    assert integration.status == Status.NOT_CONFIGURED

    with pytest.raises(CommandError, match="must pass through Connecting"):
        run("set_integration_status", str(integration.pk), "connected", reason="Looks fine to me")

    integration.refresh_from_db()
    assert integration.status == Status.NOT_CONFIGURED


def test_set_integration_status_refuses_the_status_it_already_has(integration):
    with pytest.raises(CommandError, match="already there"):
        run("set_integration_status", str(integration.pk), "connecting", reason="Again")


def test_set_integration_status_refuses_an_unknown_id(db):
    with pytest.raises(CommandError, match="No integration with id 999999"):
        run("set_integration_status", "999999", "disabled", reason="Gone")


def test_set_integration_status_refuses_an_unknown_status(integration):
    with pytest.raises(CommandError, match="Unknown status 'paused'"):
        run("set_integration_status", str(integration.pk), "paused", reason="Holidays")


@pytest.mark.parametrize("options", [{}, {"reason": "   "}], ids=["missing", "blank"])
def test_set_integration_status_needs_a_reason(integration, options):
    with pytest.raises(CommandError, match="--reason"):
        run("set_integration_status", str(integration.pk), "disabled", **options)

    integration.refresh_from_db()
    assert integration.status == Status.CONNECTING
