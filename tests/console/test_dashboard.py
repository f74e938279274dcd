"""The organization dashboard: integrations, orders, open exceptions, held orders and engines, per tenant."""

import pytest
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from automations import exceptions
from automations.choices import Engine, RunOutcome, RunTrigger
from automations.models import EngineSettings, EngineStatus
from core.sync_exceptions import ExceptionKind
from orders.choices import OrderStatus
from orders.models import Order
from tests.fixtures.organizations import make_user

DASHBOARD = reverse("admin:automations_dashboard")


def make_order(org, source, number, status=OrderStatus.NEW, total="10.00", **fields):
    return Order.objects.create(
        organization=org,
        source=source,
        external_id=number,
        number=f"#{number}",
        status=status,
        total=total,
        **fields,
    )


def counts(rows):
    return {row["status"]: row["count"] for row in rows if row["count"]}


@pytest.fixture
def acme(org, integration, make_integration, tpl_connector):
    """Acme: three integrations, four orders (two held), two open exceptions and a resolved one."""
    warehouse = make_integration(org, tpl_connector, "Acme 3PL", status="connected")
    broken = make_integration(org, tpl_connector, "Acme old 3PL", status="error")
    orders = [
        make_order(
            org, integration, "A1", OrderStatus.ON_HOLD, "612.00", hold_reason="Order over 500: review"
        ),
        make_order(org, integration, "A2", OrderStatus.ON_HOLD, "20.00", hold_reason="Unmapped SKU X"),
        make_order(org, integration, "A3", OrderStatus.FULFILLED),
        make_order(org, integration, "A4", OrderStatus.SENT_TO_FULFILLMENT),
    ]
    exceptions.raise_exception(
        org, ExceptionKind.UNMAPPED_SKU, "SKU X is not mapped", integration=integration
    )
    exceptions.raise_exception(
        org, ExceptionKind.UNROUTABLE_ORDER, "No location can ship #A1", integration=integration, entity_id=1
    )
    exceptions.raise_exception(
        org, ExceptionKind.INTEGRATION_ERROR, "Old 3PL answered 500", integration=broken
    )
    exceptions.resolve(org, ExceptionKind.INTEGRATION_ERROR, integration=broken)
    return {"integrations": [integration, warehouse, broken], "orders": orders}


@pytest.fixture
def globex(other_org, other_integration):
    make_order(other_org, other_integration, "G1", OrderStatus.ON_HOLD, "999.00", hold_reason="Globex review")
    make_order(other_org, other_integration, "G2", OrderStatus.READY)
    exceptions.raise_exception(
        other_org, ExceptionKind.UNMAPPED_SKU, "Globex SKU Y is not mapped", integration=other_integration
    )
    exceptions.raise_exception(other_org, ExceptionKind.UNKNOWN_SKU, "Globex stock push named NOPE")
    return other_org


@pytest.fixture
def acme_client(admin_client_for, org_admin):
    return admin_client_for(org_admin)


def test_org_admin_sees_their_organization_only(acme_client, acme, globex, integration):
    page = acme_client.get(DASHBOARD)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Globex" not in html
    assert page.context["selected"].slug == "acme"
    assert counts(page.context["integrations"]) == {"connecting": 1, "connected": 1, "error": 1}
    assert counts(page.context["orders"]) == {"on_hold": 2, "fulfilled": 1, "sent_to_fulfillment": 1}
    [row] = page.context["exceptions"]
    assert (row["integration_id"], row["count"]) == (integration.pk, 2)
    assert row["message"] == "No location can ship #A1"  # the latest seen
    assert {o.number for o in page.context["held_orders"]} == {"#A1", "#A2"}


def test_other_organization_is_404_and_a_bad_id_too(acme_client, acme, globex):
    assert acme_client.get(DASHBOARD, {"org": globex.pk}).status_code == 404
    assert acme_client.get(DASHBOARD, {"org": "globex"}).status_code == 404
    assert acme_client.get(DASHBOARD, {"org": 10**9}).status_code == 404


def test_superuser_sees_all_and_picks_one(admin_client_for, superuser, org, acme, globex):
    client = admin_client_for(superuser)

    everything = client.get(DASHBOARD)
    only_globex = client.get(DASHBOARD, {"org": globex.pk})

    assert everything.context["selected"] is None
    assert counts(everything.context["orders"]) == {
        "on_hold": 3,
        "ready": 1,
        "fulfilled": 1,
        "sent_to_fulfillment": 1,
    }
    assert len(everything.context["exceptions"]) == 3  # acme's shop, globex's shop, globex without one
    assert f'<option value="{globex.pk}" selected>Globex Supply</option>' in only_globex.content.decode()
    assert counts(only_globex.context["orders"]) == {"on_hold": 1, "ready": 1}
    assert {o.number for o in only_globex.context["held_orders"]} == {"#G1"}
    assert "Acme" not in "".join(str(r["organization__name"]) for r in only_globex.context["exceptions"])


def test_counts_link_to_the_changelists_filtered_the_same_way(acme_client, acme, globex, integration):
    page = acme_client.get(DASHBOARD)
    html = page.content.decode()

    held = next(row for row in page.context["orders"] if row["status"] == "on_hold")
    connected = next(row for row in page.context["integrations"] if row["status"] == "connected")
    [exceptions] = page.context["exceptions"]

    for row in (held, connected, exceptions):
        assert f'href="{row["url"].replace("&", "&amp;")}"' in html
        assert acme_client.get(row["url"]).context["cl"].result_count == row["count"]
    assert "status__exact=on_hold" in held["url"]
    assert f"integration__id__exact={integration.pk}" in exceptions["url"]
    assert 'class="sy-highlight"' in html  # orders on hold stand out


def test_exceptions_without_an_integration_link_to_their_organization(admin_client_for, superuser, globex):
    client = admin_client_for(superuser)

    page = client.get(DASHBOARD, {"org": globex.pk})

    row = next(r for r in page.context["exceptions"] if r["integration_id"] is None)
    assert row["message"] == "Globex stock push named NOPE"
    assert client.get(row["url"]).context["cl"].result_count == 1


def test_held_orders_panel_lists_number_total_reason_and_link(acme_client, acme):
    html = acme_client.get(DASHBOARD).content.decode()
    held = acme["orders"][0]

    assert f'href="{reverse("admin:orders_order_change", args=[held.pk])}">#A1</a>' in html
    assert "612.00 USD" in html and "Order over 500: review" in html


def test_engines_show_switch_last_run_outcome_counts_and_error(acme_client, org, acme):
    EngineSettings.objects.create(organization=org, routing_enabled=False)
    now = timezone.now()
    EngineStatus.objects.create(
        organization=org,
        engine=Engine.HOLD,
        last_run_at=now,
        last_trigger=RunTrigger.EVENT,
        last_outcome=RunOutcome.OK,
        last_duration_ms=17,
        last_counts={"held": 2, "released": 1},
    )
    EngineStatus.objects.create(
        organization=org,
        engine=Engine.INVENTORY,
        last_run_at=now,
        last_trigger=RunTrigger.SCHEDULE,
        last_outcome=RunOutcome.FAILED,
        last_error="TimeoutError: channel push",
        last_error_at=now,
    )

    page = acme_client.get(DASHBOARD)

    engines = {row["engine"]: row for row in page.context["engines"]}
    assert 'data-status="False"' in str(engines["routing"]["switch"])
    assert 'data-status="True"' in str(engines["hold"]["switch"])
    assert engines["hold"]["counts"] == "2 held, 1 released"
    assert 'data-status="failed"' in str(engines["inventory"]["outcome"])
    html = page.content.decode()
    assert "TimeoutError: channel push" in html and "17 ms" in html and "On an event" in html
    assert engines["exceptions"]["status"] is None


def test_all_organizations_view_summarizes_engines(admin_client_for, superuser, org, other_org):
    EngineSettings.objects.create(organization=other_org, hold_enabled=False)
    EngineStatus.objects.create(
        organization=other_org,
        engine=Engine.HOLD,
        last_run_at=timezone.now(),
        last_trigger=RunTrigger.COMMAND,
        last_outcome=RunOutcome.FAILED,
        last_error="boom",
    )
    EngineStatus.objects.create(
        organization=org,
        engine=Engine.HOLD,
        last_run_at=timezone.now() - timezone.timedelta(hours=1),
        last_outcome=RunOutcome.OK,
    )

    page = admin_client_for(superuser).get(DASHBOARD)

    hold = next(row for row in page.context["engines"] if row["engine"] == "hold")
    assert (hold["on"], hold["total"], hold["failing"]) == (1, 2, 1)
    assert hold["status"].organization_id == other_org.pk  # the latest run
    assert "on in 1 of 2" in page.content.decode()


def test_member_views_the_dashboard_of_the_integrations_they_may_see(
    admin_client_for, member, acme, integration
):
    client = admin_client_for(member)

    before = client.get(DASHBOARD)
    assign_perm("integrations.view_integration", member, integration)
    after = client.get(DASHBOARD)

    assert before.status_code == 200
    assert counts(before.context["integrations"]) == {} and before.context["held_orders"] == []
    assert counts(after.context["integrations"]) == {"connecting": 1}
    assert counts(after.context["orders"]) == {"on_hold": 2, "fulfilled": 1, "sent_to_fulfillment": 1}


def test_staff_outside_any_organization_is_refused(admin_client_for, db):
    assert admin_client_for(make_user("nobody")).get(DASHBOARD).status_code == 403


def test_dashboard_is_linked_from_the_admin_home_and_every_page(acme_client):
    home = acme_client.get(reverse("admin:index")).content.decode()
    orders = acme_client.get(reverse("admin:orders_order_changelist")).content.decode()

    assert f'href="{DASHBOARD}"' in home and 'id="sy-dashboard-module"' in home
    assert f'<a href="{DASHBOARD}" id="sy-dashboard-link">Dashboard</a>' in orders


@pytest.mark.parametrize("size", [2, 25])
def test_query_count_does_not_grow_with_the_data(
    admin_client_for,
    superuser,
    org,
    other_org,
    channel_connector,
    make_integration,
    size,
    django_assert_max_num_queries,
):
    # given: `size` integrations per organization, each with orders and open exceptions
    for org_ in (org, other_org):
        for i in range(size):
            shop = make_integration(org_, channel_connector, f"Shop {i}")
            make_order(org_, shop, f"{org_.slug}-{i}", OrderStatus.ON_HOLD, hold_reason="review")
            make_order(org_, shop, f"{org_.slug}-{i}-b", OrderStatus.READY)
            exceptions.raise_exception(org_, ExceptionKind.UNMAPPED_SKU, f"SKU {i}", integration=shop)
    client = admin_client_for(superuser)

    # then: the same fixed number of queries, whatever the size, for all organizations and for one
    with django_assert_max_num_queries(12):
        everything = client.get(DASHBOARD)
    with django_assert_max_num_queries(12):
        one = client.get(DASHBOARD, {"org": org.pk})

    assert len(everything.context["exceptions"]) == 2 * size
    assert counts(one.context["orders"]) == {"on_hold": size, "ready": size}
