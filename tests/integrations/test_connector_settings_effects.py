"""
Issue 17, item 4: every setting of every built-in connector does what its description says, here, or is gone
(integrations/migrations/0019). Schema defaults hold on every path that creates an integration.
"""

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from automations.choices import ExceptionStatus
from automations.engines import exceptions as exceptions_engine
from automations.models import SyncException
from console import transfer
from core.sync_exceptions import ExceptionKind
from integrations import configuration
from integrations.catalog import BUILTIN_CONNECTORS
from integrations.connector_settings import setting
from integrations.models import Connector, Integration
from inventory import services as inventory
from inventory.models import Product
from orders import services as order_services
from orders.choices import ShippingRequestStatus
from orders.models import ShippingRequest
from tests.orders.helpers import ORDERS, REQUESTS, integration_key

migration = import_module("integrations.migrations.0019_connector_settings_that_work")

# Each built-in setting and the tests below that prove its effect (sell_incoming_stock: tests/inventory).
EFFECTS = {
    "store_url": "test_store_url_is_handed_to_the_connector",
    "default_currency": "test_default_currency_is_given_to_an_order_that_names_none",
    "order_number_prefix": "test_order_number_prefix_is_shown_wherever_the_number_is",
    "sell_incoming_stock": "tests/inventory/test_services.py::test_sell_incoming_stock_adds_incoming",
    "acknowledge_within_minutes": "test_a_request_not_acknowledged_in_time_raises_an_exception",
    "sync_prices": "test_sync_prices_off_keeps_the_hubs_prices",
}


def test_every_builtin_setting_has_a_proven_effect():
    names = {name for spec in BUILTIN_CONNECTORS for name in spec["settings_schema"]["properties"]}
    assert names == set(EFFECTS)
    for spec in BUILTIN_CONNECTORS:
        for name, prop in spec["settings_schema"]["properties"].items():
            assert prop.get("description"), f"{spec['key']}.{name} says nothing of what it does"
    here = globals()
    assert all(target in here or target.startswith("tests/") for target in EFFECTS.values())


@pytest.fixture
def erp_connector(db):
    return Connector.objects.get(organization=None, key="custom-erp")


# --- channel settings -------------------------------------------------------------------------------------


def test_store_url_is_handed_to_the_connector(api_client, org, channel_connector, make_integration):
    shop = make_integration(
        org, channel_connector, "Shop", settings={"store_url": "https://shop.example.test"}
    )

    me = api_client(integration_key(shop, grants=["orders:read"])).get("/api/v1/integration")

    assert me.status_code == 200, me.content
    assert me.json()["settings"]["store_url"] == "https://shop.example.test"


def test_default_currency_is_given_to_an_order_that_names_none(
    org, channel_connector, make_integration, order_body, products, standard_method
):
    shop = make_integration(org, channel_connector, "Euro shop", settings={"default_currency": "EUR"})
    no_currency = {k: v for k, v in order_body.items() if k != "currency"}

    named, _ = order_services.ingest_order(shop, {**order_body, "external_id": "A", "currency": "GBP"})
    unnamed, _ = order_services.ingest_order(shop, {**no_currency, "external_id": "B"})
    # an update that names none keeps the order's currency
    again, created = order_services.ingest_order(shop, {**no_currency, "external_id": "A"})

    assert (named.currency, unnamed.currency) == ("GBP", "EUR")
    assert not created and again.currency == "GBP"


def test_an_order_without_currency_from_a_channel_without_default_is_usd(
    ingest, order_body, products, standard_method
):
    order, _ = ingest({k: v for k, v in order_body.items() if k != "currency"})

    assert order.currency == "USD"


def test_default_currency_through_the_api(api_client, org, channel_connector, make_integration, products):
    shop = make_integration(org, channel_connector, "Euro shop", settings={"default_currency": "EUR"})
    client = api_client(integration_key(shop))

    response = client.post(
        ORDERS,
        {"external_id": "X1", "lines": [{"sku": "MUG", "quantity": 1, "unit_price": "8.00"}]},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["currency"] == "EUR"


def test_order_number_prefix_is_shown_wherever_the_number_is(
    api_client, org, channel_connector, make_integration, order_body, stock, standard_method, warehouse
):
    shop = make_integration(org, channel_connector, "Prefixed", settings={"order_number_prefix": "WEB-"})
    shop.shipping_method_mappings.create(external_code="shopify-std", method=standard_method)
    channel = api_client(integration_key(shop))

    created = channel.post(ORDERS, {**order_body, "number": "1001"}, format="json")
    resent = channel.post(ORDERS, {**order_body, "number": "1001"}, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["number"] == "WEB-1001"
    assert resent.status_code == 200 and resent.json()["number"] == "WEB-1001"  # added once
    order = order_services.make_ready(shop.orders.get())
    assert str(order) == "WEB-1001"  # the admin, exception messages
    request = order_services.create_shipping_request(order, warehouse)
    tpl = api_client(integration_key(warehouse.managed_by, grants=["shipping_requests:read"]))
    shown = tpl.get(f"{REQUESTS}/{request.pk}")
    assert shown.status_code == 200, shown.content
    assert shown.json()["order"]["number"] == "WEB-1001"


def test_a_number_already_prefixed_is_kept(org, channel_connector, make_integration, order_body, products):
    shop = make_integration(org, channel_connector, "Prefixed", settings={"order_number_prefix": "WEB-"})

    order, _ = order_services.ingest_order(shop, {**order_body, "number": "WEB-7"})

    assert order.number == "WEB-7"


# --- fulfiller settings -----------------------------------------------------------------------------------


def _age(request, minutes):
    ShippingRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes)
    )


def _unacknowledged(org):
    return SyncException.objects.filter(organization=org, kind=ExceptionKind.UNACKNOWLEDGED_REQUEST)


@pytest.fixture
def pending_request(ingest, order_body, stock, standard_method, warehouse):
    order, _ = ingest(order_body)
    return order_services.create_shipping_request(order, warehouse)


def test_a_request_not_acknowledged_in_time_raises_an_exception(org, pending_request, warehouse_integration):
    configuration.save_integration(warehouse_integration, settings={"acknowledge_within_minutes": 30})
    _age(pending_request, 29)

    assert exceptions_engine.sweep(org)["unacknowledged"] == 0

    _age(pending_request, 31)
    counts = exceptions_engine.sweep(org)
    again = exceptions_engine.sweep(org)

    assert counts["unacknowledged"] == 1 and again["unacknowledged"] == 0
    raised = _unacknowledged(org).get()
    assert raised.status == ExceptionStatus.OPEN and raised.integration == warehouse_integration
    assert (raised.entity_type, raised.entity_id) == ("shipping_request", str(pending_request.pk))
    assert "30 minutes" in raised.message and raised.occurrences == 1


def test_the_default_delay_is_the_schemas(org, pending_request, warehouse_integration):
    assert "acknowledge_within_minutes" not in warehouse_integration.settings
    assert setting(warehouse_integration, "acknowledge_within_minutes") == 60
    _age(pending_request, 59)
    assert exceptions_engine.sweep(org)["unacknowledged"] == 0

    _age(pending_request, 61)
    assert exceptions_engine.sweep(org)["unacknowledged"] == 1


def test_the_exception_is_resolved_once_acknowledged(org, pending_request):
    _age(pending_request, 120)
    exceptions_engine.sweep(org)

    ShippingRequest.objects.filter(pk=pending_request.pk).update(status=ShippingRequestStatus.ACKNOWLEDGED)
    counts = exceptions_engine.sweep(org)

    assert counts["unacknowledged"] == 0 and counts["resolved"] == 1
    assert _unacknowledged(org).get().status == ExceptionStatus.RESOLVED


def test_acknowledging_late_resolves_the_exception_at_once(org, api_client, pending_request):
    _age(pending_request, 120)
    exceptions_engine.sweep(org)
    tpl = api_client(integration_key(pending_request.fulfiller, grants=["shipping_requests:write"]))

    answer = tpl.post(f"{REQUESTS}/{pending_request.pk}/acknowledge")

    assert answer.status_code == 200, answer.content
    raised = _unacknowledged(org).get()
    assert raised.status == ExceptionStatus.RESOLVED and raised.resolved_at is not None


def test_another_orgs_requests_raise_nothing_here(org, other_org, pending_request):
    _age(pending_request, 120)

    assert exceptions_engine.sweep(other_org)["unacknowledged"] == 0
    assert not _unacknowledged(other_org).exists() and not _unacknowledged(org).exists()


# --- ERP settings -----------------------------------------------------------------------------------------


def test_sync_prices_off_keeps_the_hubs_prices(org, erp_connector, make_integration, products):
    erp = make_integration(org, erp_connector, "ERP", settings={"sync_prices": False})

    inventory.upsert_products(
        org,
        [{"sku": "MUG", "name": "Mug", "price": "99.00"}, {"sku": "NEW", "price": "5.00"}],
        integration=erp,
    )

    assert str(Product.objects.get(sku="MUG").price) == "8.00"
    assert Product.objects.get(sku="NEW").price is None


def test_sync_prices_by_default_takes_the_erps_prices(org, erp_connector, make_integration, products):
    erp = make_integration(org, erp_connector, "ERP")

    inventory.upsert_products(org, [{"sku": "MUG", "price": "99.00"}], integration=erp)

    assert str(Product.objects.get(sku="MUG").price) == "99.00"


# --- defaults on every path that creates an integration ----------------------------------------------------


def test_admin_form_starts_at_the_schemas_defaults_and_saves_them(
    admin_client_for, org_admin, org, erp_connector, tpl_connector
):
    client = admin_client_for(org_admin)
    add = reverse("admin:integrations_integration_add")

    page = client.get(add + f"?connector={erp_connector.pk}")
    form = page.context["adminform"].form
    assert form["setting__sync_prices"].value() is True
    tpl_form = client.get(add + f"?connector={tpl_connector.pk}").context["adminform"].form
    assert tpl_form["setting__acknowledge_within_minutes"].value() == 60

    # what a browser sends for the form as shown: the ticked box
    data = {"organization": org.pk, "name": "ERP", "notification_email": "", "mappings": "{}"}
    data.update({name: "on" for name in form.fields if name.startswith("flow_") and form[name].value()})
    data["setting__sync_prices"] = "on"
    response = client.post(add + f"?connector={erp_connector.pk}", data)

    assert response.status_code == 302, response.content[:2000]
    assert setting(Integration.objects.get(name="ERP"), "sync_prices") is True


def test_command_and_import_honour_the_defaults(org, org_admin, erp_connector, make_integration):
    call_command(
        "register_integration",
        "--org",
        org.slug,
        "--connector",
        "custom-erp",
        "--name",
        "ERP one",
        stdout=None,
    )
    made = Integration.objects.get(name="ERP one")
    source = make_integration(org, erp_connector, "ERP two")
    copy = transfer.import_configuration(transfer.export_configuration(source), org, name="ERP three")

    assert setting(made, "sync_prices") is True
    assert setting(copy, "sync_prices") is True


# --- the removed settings ---------------------------------------------------------------------------------


def test_migration_drops_removed_settings_and_updates_old_schemas(org, tpl_connector, erp_connector):
    old_3pl = Connector.objects.create(
        organization=org,
        key="custom-old-3pl",
        name="Old 3PL",
        type="3pl",
        settings_schema=migration.OLD_SCHEMAS["fulfiller"],
    )
    Connector.objects.filter(pk=erp_connector.pk).update(settings_schema=migration.OLD_SCHEMAS["erp"])
    old = Integration.objects.create(
        organization=org,
        connector=old_3pl,
        name="Old",
        settings={"warehouse_code": "N", "cutoff_time": "16:30", "acknowledge_within_minutes": 5},
    )
    erp = Integration.objects.create(
        organization=org, connector=erp_connector, name="ERP", settings={"company_code": "C1"}
    )

    migration.forward(apps, None)

    old.refresh_from_db()
    erp.refresh_from_db()
    assert old.settings == {"acknowledge_within_minutes": 5}
    assert erp.settings == {}
    assert Connector.objects.get(pk=old_3pl.pk).settings_schema == migration.NEW_SCHEMAS["fulfiller"]
    assert "company_code" not in Connector.objects.get(pk=erp_connector.pk).settings_schema["properties"]
