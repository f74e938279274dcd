"""An import that is refused names the field at fault and says why, and creates nothing."""

import pytest
from django.core.exceptions import ValidationError

from console import transfer
from integrations import configuration
from integrations.models import Connector
from tests.console.helpers import counts

NOT_AN_EXPORT = "Not a Switchyard integration export (expected format 'switchyard.integration/1')."


def _refused(data, organization, *, field, message, **kwargs):
    """
    Import `data`, expecting the refusal that names `field` (None: a refusal of the whole file, not tied to
    a field) and says `message` (a distinctive part of it), with nothing created.
    """
    before = counts()
    with pytest.raises(ValidationError) as refused:
        transfer.import_configuration(data, organization, **kwargs)
    assert counts() == before
    error = refused.value
    by_field = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    assert list(by_field) == [field], by_field
    assert any(message in text for text in by_field[field]), by_field
    return error


def test_import_refuses_a_wrong_format(configured, other_org):
    data = {**transfer.export_configuration(configured), "format": "someone-else/1"}

    _refused(data, other_org, field=None, message=NOT_AN_EXPORT)


@pytest.mark.parametrize(
    "data", [None, [], "switchyard.integration/1", {}], ids=["none", "list", "text", "empty"]
)
def test_import_refuses_what_is_not_an_export(other_org, data):
    _refused(data, other_org, field=None, message=NOT_AN_EXPORT)


def test_import_refuses_an_unknown_public_connector(configured, other_org):
    data = transfer.export_configuration(configured)
    data["connector"] = {**data["connector"], "key": "no-such-connector"}

    _refused(data, other_org, field=None, message="Unknown connector 'no-such-connector'.")


def test_import_does_not_reach_another_orgs_private_connector(private_integration, other_org):
    # an export that claims the private connector is public must not find it
    data = transfer.export_configuration(private_integration)
    data["connector"] = {"key": data["connector"]["key"], "version": "2.3", "private": False}

    _refused(data, other_org, field=None, message="Unknown connector 'acme-legacy-shop'.")


def test_import_refuses_an_export_without_connector(configured, other_org):
    data = transfer.export_configuration(configured)
    del data["connector"]

    _refused(data, other_org, field="__all__", message="file: 'connector' is a required property")


def test_import_refuses_a_duplicate_name(configured, org):
    _refused(
        transfer.export_configuration(configured),
        org,
        field=None,
        message=f"{org} already has an integration named 'Strict shop'.",
    )


def test_import_refuses_a_duplicate_name_without_creating_the_private_connector(
    private_integration, other_org
):
    # given the target org already has an integration with that name
    configuration.create_integration(other_org, Connector.objects.get(key="custom-channel"), "Legacy shop")

    # then the private connector is not left behind either
    _refused(
        transfer.export_configuration(private_integration),
        other_org,
        field=None,
        message=f"{other_org} already has an integration named 'Legacy shop'.",
    )
    assert not Connector.objects.filter(organization=other_org).exists()


def test_import_refuses_an_unknown_workflow(configured, other_org):
    data = transfer.export_configuration(configured)
    data["workflows"] = {**data["workflows"], "teleport_out": True}

    _refused(data, other_org, field="workflows", message="workflows: 'teleport_out' is not one of")


def test_import_refuses_an_unknown_workflow_without_creating_the_private_connector(
    private_integration, other_org
):
    data = transfer.export_configuration(private_integration)
    data["workflows"] = {"teleport_out": True}

    _refused(data, other_org, field="workflows", message="workflows: 'teleport_out' is not one of")
    assert not Connector.objects.filter(organization=other_org).exists()


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("settings", {"base_url": "not a url"}, "Must be a valid uri."),
        ("settings", {"colour": "red"}, "Unknown setting."),
        ("mappings", {"warehouses": {"W": "L"}}, "Unknown mapping kind 'warehouses'"),
        ("mappings", {"locations": {"A": 1}}, "mappings.locations.A: 1 is not of type 'string'"),
        ("sku_mappings", [{"external_sku": "EXT-1"}], "sku_mappings.0: 'sku' is a required property"),
        ("sku_mappings", {"EXT-1": "SKU-1"}, "sku_mappings: {'EXT-1': 'SKU-1'} is not of type 'array'"),
        (
            "shipping_method_mappings",
            [{"external_code": "", "method": "dhl-exp"}],
            "shipping_method_mappings.0.external_code: '' should be non-empty",
        ),
        (
            "shipping_method_mappings",
            [{"external_code": "x", "method": "dhl-exp", "id": 7}],
            "shipping_method_mappings.0: Additional properties are not allowed ('id' was unexpected)",
        ),
    ],
    ids=[
        "bad-format",
        "unknown-setting",
        "unknown-mapping-kind",
        "bad-pair",
        "sku-row-without-hub-sku",
        "sku-rows-not-a-list",
        "method-row-empty-code",
        "method-row-extra-key",
    ],
)
def test_import_refuses_invalid_settings_or_mappings(configured, other_org, section, value, message):
    data = transfer.export_configuration(configured)
    data[section] = value

    # a setting's refusal names the setting; any other section's names the section
    field = next(iter(value)) if section == "settings" else section
    error = _refused(data, other_org, field=field, message=message)
    assert set(error.message_dict) == {field}


def test_import_refuses_a_private_connector_with_an_invalid_schema(private_integration, other_org):
    data = transfer.export_configuration(private_integration)
    data["connector"]["settings_schema"] = {"type": "array"}

    _refused(
        data, other_org, field=None, message='The settings schema must describe an object ("type": "object").'
    )


@pytest.mark.parametrize("connector_type", [None, "spaceship"], ids=["missing", "unknown"])
def test_import_refuses_a_private_connector_of_no_known_type(private_integration, other_org, connector_type):
    data = transfer.export_configuration(private_integration)
    data["connector"]["type"] = connector_type

    _refused(data, other_org, field="connector", message=f"connector.type: {connector_type!r} is not one of")
