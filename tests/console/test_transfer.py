"""Export an integration's configuration (no secrets) and import it into an organization."""

import json

from console import transfer
from integrations import configuration, connector_settings
from integrations.choices import EventKind, IntegrationStatus, Workflow
from integrations.models import Connector, Integration
from inventory.models import SkuMapping
from tests.console.helpers import (
    MAPPINGS,
    METHOD_MAPPINGS,
    SECRET,
    SKU_MAPPINGS,
    WORKFLOWS,
    hub_catalog,
    row_mappings,
)
from tests.fixtures.integrations import GOOD_SETTINGS, STRICT_SCHEMA

# --- export --------------------------------------------------------------------------------------------------


def test_export_has_no_secret(configured):
    data = transfer.export_configuration(configured)

    dump = json.dumps(data)
    assert SECRET not in dump
    assert "api_token" not in data["settings"]


def test_export_describes_the_configuration(configured, strict_connector):
    data = transfer.export_configuration(configured)

    assert data["format"] == transfer.EXPORT_FORMAT
    assert data["name"] == "Strict shop"
    assert data["connector"] == {"key": "strict-shop", "version": strict_connector.version, "private": False}
    assert data["settings"] == {
        "base_url": GOOD_SETTINGS["base_url"],
        "page_size": 50,
        "region": "eu",
        "dry_run": True,
    }
    assert data["mappings"] == MAPPINGS
    assert data["sku_mappings"] == SKU_MAPPINGS
    assert data["shipping_method_mappings"] == METHOD_MAPPINGS
    assert data["workflows"] == WORKFLOWS
    assert data["notification_email"] == "shop-alerts@acme.test"


def test_export_does_not_change_the_integration(configured):
    before = Integration.objects.filter(pk=configured.pk).values().get()

    data = transfer.export_configuration(configured)
    data["mappings"]["locations"]["WH-EAST"] = "tampered"

    assert Integration.objects.filter(pk=configured.pk).values().get() == before
    assert configured.mappings == MAPPINGS


def test_export_of_private_connector_carries_the_connector_but_no_secret(
    private_integration, private_connector
):
    data = transfer.export_configuration(private_integration)

    assert data["connector"]["private"] is True
    assert data["connector"]["settings_schema"] == STRICT_SCHEMA
    assert data["connector"]["mapping_kinds"] == ["skus", "locations"]
    assert data["connector"]["manifest"] == private_connector.manifest
    assert SECRET not in json.dumps(data)


# --- import -------------------------------------------------------------------------------------------------


def test_round_trip_into_another_org_keeps_the_configuration(configured, other_org, strict_connector):
    # given an export made in one organization, passed through JSON as a file would be
    data = json.loads(json.dumps(transfer.export_configuration(configured)))

    # when it is imported into another
    imported = transfer.import_configuration(data, other_org)

    # then the copy has the same connector, public settings, mappings, flows and address, and no secret
    stored = Integration.objects.get(pk=imported.pk)
    assert stored.organization == other_org
    assert stored.connector == strict_connector
    assert stored.name == "Strict shop"
    assert connector_settings.full_settings(stored) == {
        k: v for k, v in connector_settings.full_settings(configured).items() if k != "api_token"
    }
    assert stored.mappings == MAPPINGS
    assert {flow.value: stored.workflow_enabled(flow) for flow in Workflow} == WORKFLOWS
    assert stored.notification_email == "shop-alerts@acme.test"
    # and the original is untouched
    assert connector_settings.full_settings(Integration.objects.get(pk=configured.pk))["api_token"] == SECRET


def test_round_trip_recreates_row_mappings_in_the_target_org_and_names_what_it_skipped(
    configured, other_org, org_admin
):
    # given an export, and a target org that has SKU-1 and the method but not SKU-2
    data = json.loads(json.dumps(transfer.export_configuration(configured)))
    products, _ = hub_catalog(other_org, skus=["SKU-1"])

    # when it is imported there
    imported = transfer.import_configuration(data, other_org, actor=org_admin)

    # then the mappings point at the target org's own product and method; the missing SKU is left out
    assert row_mappings(imported) == (
        [("EXT-1", "SKU-1", other_org.pk)],
        [("express", "dhl-exp", other_org.pk)],
    )
    assert SkuMapping.objects.get(integration=imported).product == products["SKU-1"]
    # and the import says so rather than failing
    event = imported.events.get(kind=EventKind.IMPORTED)
    assert "Skipped 1 SKU mapping: EXT-2 → SKU-2" in event.message and "Globex" in event.message
    assert event.data == {
        "skipped": {"sku_mappings": [{"external_sku": "EXT-2", "sku": "SKU-2", "reason": "missing"}]}
    }
    # and the source's rows are untouched
    assert row_mappings(configured)[0] == [
        ("EXT-1", "SKU-1", configured.organization_id),
        ("EXT-2", "SKU-2", configured.organization_id),
    ]


def test_import_skips_a_missing_method_and_duplicate_rows(configured, other_org):
    # given a hand-edited file: an unknown method, and a code and a SKU mapped twice
    data = transfer.export_configuration(configured)
    data["sku_mappings"] += [
        {"external_sku": "EXT-1", "sku": "SKU-2"},  # EXT-1 again
        {"external_sku": "EXT-3", "sku": "SKU-1"},  # SKU-1 again
    ]
    data["shipping_method_mappings"] = [{"external_code": "overnight", "method": "teleport"}]
    hub_catalog(other_org)

    imported = transfer.import_configuration(data, other_org)

    assert row_mappings(imported) == (
        [("EXT-1", "SKU-1", other_org.pk), ("EXT-2", "SKU-2", other_org.pk)],
        [],
    )
    skipped = imported.events.get(kind=EventKind.IMPORTED).data["skipped"]
    assert [(e["external_sku"], e["reason"]) for e in skipped["sku_mappings"]] == [
        ("EXT-1", "duplicate"),
        ("EXT-3", "duplicate"),
    ]
    assert skipped["shipping_method_mappings"] == [
        {"external_code": "overnight", "method": "teleport", "reason": "missing"}
    ]


def test_import_of_a_complete_export_names_nothing_skipped(configured, org):
    imported = transfer.import_configuration(transfer.export_configuration(configured), org, name="Copy")

    event = imported.events.get(kind=EventKind.IMPORTED)
    assert (event.message, event.data) == ("Imported from an exported configuration.", {})


def test_an_older_export_with_json_skus_is_imported_as_rows(configured, other_org):
    # given a file exported while SKU and shipping-method mappings still sat in the JSON
    data = transfer.export_configuration(configured)
    del data["sku_mappings"], data["shipping_method_mappings"]
    data["mappings"] = {
        **MAPPINGS,
        "skus": {"EXT-1": "SKU-1", "EXT-9": "NOPE"},
        "shipping_methods": {"express": "dhl-exp"},
    }
    hub_catalog(other_org)

    imported = transfer.import_configuration(data, other_org)

    assert imported.mappings == MAPPINGS
    assert row_mappings(imported) == (
        [("EXT-1", "SKU-1", other_org.pk)],
        [("express", "dhl-exp", other_org.pk)],
    )
    assert "EXT-9 → NOPE" in imported.events.get(kind=EventKind.IMPORTED).message


def test_import_without_the_secret_is_not_configured(configured, other_org):
    data = transfer.export_configuration(configured)

    imported = transfer.import_configuration(data, other_org)

    assert Integration.objects.get(pk=imported.pk).status == IntegrationStatus.NOT_CONFIGURED


def test_entering_the_secret_after_import_moves_to_connecting(configured, other_org):
    imported = transfer.import_configuration(transfer.export_configuration(configured), other_org)

    configuration.save_integration(imported, settings={**imported.settings, "api_token": "tok-other-org-1"})

    assert Integration.objects.get(pk=imported.pk).status == IntegrationStatus.CONNECTING


def test_import_of_connector_without_required_settings_goes_to_connecting(org, other_org, channel_connector):
    original = configuration.create_integration(
        org, channel_connector, "Custom shop", settings={"store_url": "https://shop.example.test"}
    )

    imported = transfer.import_configuration(transfer.export_configuration(original), other_org)

    assert Integration.objects.get(pk=imported.pk).status == IntegrationStatus.CONNECTING


def test_import_records_created_and_imported_events(configured, other_org, org_admin):
    imported = transfer.import_configuration(
        transfer.export_configuration(configured), other_org, actor=org_admin
    )

    kinds = list(imported.events.order_by("pk").values_list("kind", flat=True))
    assert kinds == [EventKind.CREATED, EventKind.IMPORTED]
    assert imported.events.get(kind=EventKind.IMPORTED).actor_user == org_admin


def test_import_into_the_same_org_under_another_name(configured, org):
    imported = transfer.import_configuration(
        transfer.export_configuration(configured), org, name="Strict shop 2"
    )

    assert imported.organization == org
    assert imported.name == "Strict shop 2"
    assert imported.mappings == MAPPINGS
    assert row_mappings(imported) == row_mappings(configured)  # every hub code is there


def test_private_connector_is_recreated_in_the_target_org(private_integration, private_connector, other_org):
    # given
    data = json.loads(json.dumps(transfer.export_configuration(private_integration)))

    # when
    imported = transfer.import_configuration(data, other_org)

    # then the integration uses a new connector private to the target org, a copy of the original
    connector = imported.connector
    assert connector.pk != private_connector.pk
    assert connector.organization == other_org
    for field in (
        "key",
        "name",
        "type",
        "description",
        "version",
        "recommended_grants",
        "settings_schema",
        "mapping_kinds",
        "manifest",
    ):
        assert getattr(connector, field) == getattr(private_connector, field), field
    assert imported.mappings == {"locations": {"A": "B"}}
    assert imported.status == IntegrationStatus.NOT_CONFIGURED
    # and the original connector is still the source org's own
    private_connector.refresh_from_db()
    assert private_connector.organization_id == private_integration.organization_id


def test_private_connector_is_reused_on_a_second_import(private_integration, other_org):
    # given a first import that created the connector in the target org
    data = transfer.export_configuration(private_integration)
    first = transfer.import_configuration(data, other_org)

    # when the same export is imported again under another name
    second = transfer.import_configuration(data, other_org, name="Legacy shop (copy)")

    # then both integrations share that one connector
    assert second.connector_id == first.connector_id
    assert Connector.objects.filter(organization=other_org).count() == 1
    assert Integration.objects.filter(organization=other_org).count() == 2


def test_private_connector_is_reused_in_its_own_org(private_integration, private_connector, org):
    before = Connector.objects.count()

    imported = transfer.import_configuration(
        transfer.export_configuration(private_integration), org, name="Legacy shop (copy)"
    )

    assert imported.connector_id == private_connector.pk
    assert Connector.objects.count() == before
