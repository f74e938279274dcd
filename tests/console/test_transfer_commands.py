"""The export_integration and import_integration commands: console/transfer.py from the shell."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError

from console import transfer
from integrations import configuration
from integrations.choices import EventKind, IntegrationStatus, Workflow
from integrations.models import Connector, Integration
from inventory.models import Product, SkuMapping
from orders.models import ShippingMethod, ShippingMethodMapping
from tests.console.helpers import run
from tests.fixtures.integrations import GOOD_SETTINGS, STRICT_SCHEMA

Status = IntegrationStatus
SECRET = GOOD_SETTINGS["api_token"]


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


@pytest.fixture
def store_connector(org):
    return Connector.objects.create(
        organization=org,
        key="acme-store",
        name="Acme store (manifest)",
        type="channel",
        settings_schema=STRICT_SCHEMA,
        mapping_kinds=["skus"],
        manifest={"health": "/health", "orders": "/orders"},
    )


def test_export_integration_prints_json_without_secrets(strict_integration):
    out = run("export_integration", str(strict_integration.pk))

    data = json.loads(out)
    assert SECRET not in out
    assert data["settings"] == {"base_url": GOOD_SETTINGS["base_url"], "page_size": 50}
    assert data["connector"]["key"] == "strict-shop"
    assert data["mappings"] == {"locations": {"WH-EAST": "East"}}
    assert data["sku_mappings"] == [{"external_sku": "EXT-1", "sku": "SKU-1"}]
    assert data["shipping_method_mappings"] == [{"external_code": "x", "method": "y"}]
    assert strict_integration.events.filter(kind=EventKind.EXPORTED, actor="command").exists()


def test_export_integration_writes_to_a_file(strict_integration, tmp_path):
    path = tmp_path / "export.json"

    out = run("export_integration", str(strict_integration.pk), output=str(path))

    assert json.loads(path.read_text())["name"] == "Strict shop"
    assert SECRET not in path.read_text()
    assert str(path) in out and "{" not in out


def test_export_integration_refuses_an_unknown_id(db):
    with pytest.raises(CommandError, match="No integration with id 999999"):
        run("export_integration", "999999")


def test_export_integration_refuses_an_unwritable_file(integration, tmp_path):
    with pytest.raises(CommandError, match="Cannot write"):
        run("export_integration", str(integration.pk), output=str(tmp_path / "missing-dir" / "x.json"))


def test_export_import_round_trip_keeps_everything_but_secrets(strict_integration, other_org, tmp_path):
    # given an export of a configured integration whose connector requires a secret
    path = tmp_path / "export.json"
    run("export_integration", str(strict_integration.pk), output=str(path))

    # when it is imported into another organization
    out = run("import_integration", str(path), org="globex")

    # then everything but the secret came along, so it waits for the secret in not_configured
    imported = Integration.objects.get(organization=other_org)
    assert imported.status == Status.NOT_CONFIGURED
    assert imported.settings == {"base_url": GOOD_SETTINGS["base_url"], "page_size": 50}
    assert imported.mappings == strict_integration.mappings
    assert all(imported.workflow_enabled(f) == strict_integration.workflow_enabled(f) for f in Workflow)
    assert imported.connector == strict_integration.connector
    assert f"Imported integration {imported.pk} 'Strict shop' into globex: not_configured" in out
    # but Globex has neither SKU-1 nor method y: those mappings are left out, and the output says so
    assert not imported.sku_mappings.exists() and not imported.shipping_method_mappings.exists()
    assert "Skipped 1 SKU mapping: EXT-1 → SKU-1 (SKU-1 not in Globex Supply)." in out
    assert "Skipped 1 shipping method mapping: x → y (y not in Globex Supply)." in out
    assert "api_token" in out
    assert imported.events.filter(kind=EventKind.IMPORTED, actor="command").exists()


def test_import_integration_recreates_a_store_connector_in_the_target_org(
    org, other_org, store_connector, make_integration, tmp_path
):
    source = make_integration(org, store_connector, "Acme store", settings=GOOD_SETTINGS)
    path = tmp_path / "export.json"
    run("export_integration", str(source.pk), output=str(path))

    run("import_integration", str(path), org="globex")

    copy = Connector.objects.get(organization=other_org, key="acme-store")
    assert copy.pk != store_connector.pk
    assert (copy.name, copy.type) == ("Acme store (manifest)", "channel")
    assert (copy.manifest, copy.settings_schema) == (
        store_connector.manifest,
        store_connector.settings_schema,
    )
    imported = Integration.objects.get(organization=other_org)
    assert (imported.connector, imported.status) == (copy, Status.NOT_CONFIGURED)


def test_import_integration_reads_stdin_and_takes_a_new_name(strict_integration):
    exported = run("export_integration", str(strict_integration.pk))

    run("import_integration", "-", org="acme", name="Strict shop (copy)", stdin=StringIO(exported))

    copy = Integration.objects.get(organization__slug="acme", name="Strict shop (copy)")
    assert copy.mappings == strict_integration.mappings
    assert list(copy.sku_mappings.values_list("external_sku", "product__sku")) == [("EXT-1", "SKU-1")]
    assert list(copy.shipping_method_mappings.values_list("external_code", "method__code")) == [("x", "y")]


def test_import_integration_refuses_a_duplicate_name(strict_integration):
    exported = run("export_integration", str(strict_integration.pk))

    with pytest.raises(CommandError, match="already has an integration named 'Strict shop'"):
        run("import_integration", "-", org="acme", stdin=StringIO(exported))


def test_import_integration_refuses_bad_json(org):
    with pytest.raises(CommandError, match=r"standard input is not valid JSON.*line 1"):
        run("import_integration", "-", org="acme", stdin=StringIO("{not json"))


def test_import_integration_refuses_another_format(org, tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "something/2", "name": "X"}))

    with pytest.raises(CommandError, match="Not a Switchyard integration export"):
        run("import_integration", str(path), org="acme")


def test_import_integration_refuses_an_unknown_connector(org):
    data = {"format": transfer.EXPORT_FORMAT, "name": "X", "connector": {"key": "no-such-connector"}}

    with pytest.raises(CommandError, match="Unknown connector 'no-such-connector'"):
        run("import_integration", "-", org="acme", stdin=StringIO(json.dumps(data)))

    assert not Integration.objects.exists()


def test_import_integration_refuses_invalid_settings_with_the_field(org):
    data = {
        "format": transfer.EXPORT_FORMAT,
        "name": "X",
        "connector": {"key": "custom-channel"},
        "settings": {"store_url": 5},
    }

    with pytest.raises(CommandError, match="store_url: Must be text"):
        run("import_integration", "-", org="acme", stdin=StringIO(json.dumps(data)))


def test_import_integration_refuses_an_unknown_org(db):
    with pytest.raises(CommandError, match="Unknown organization 'nope'"):
        run("import_integration", "-", org="nope", stdin=StringIO("{}"))


def test_import_integration_refuses_a_missing_file(org, tmp_path):
    with pytest.raises(CommandError, match=r"Cannot read .*No such file"):
        run("import_integration", str(tmp_path / "absent.json"), org="acme")
