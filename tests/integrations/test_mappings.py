"""The JSON mappings of an integration (connector-specific kinds only; SKU and shipping-method mappings are rows)."""

import pytest
from django.core.exceptions import ValidationError

from integrations import configuration, connector_settings
from integrations.choices import IntegrationStatus
from integrations.models import Integration, IntegrationEvent

# --- mapping_errors ------------------------------------------------------------------------------------------


def test_valid_mappings_have_no_errors(strict_connector):
    mappings = {"locations": {"WH-EAST": "East", "WH-WEST": "West"}}

    assert connector_settings.mapping_errors(strict_connector, mappings) == {}
    assert connector_settings.mapping_errors(strict_connector, {}) == {}


def test_unknown_mapping_kind_is_rejected(strict_connector):
    errors = connector_settings.mapping_errors(
        strict_connector, {"locations": {"A": "B"}, "warehouses": {"W1": "L1"}}
    )

    assert set(errors) == {"mappings"}
    assert len(errors["mappings"]) == 1
    assert "warehouses" in errors["mappings"][0]  # names the offending kind


@pytest.mark.parametrize(
    "pairs",
    [{"A": 1}, {"A": None}, {"A": ["B"]}, {"": "B"}, {"A": ""}, ["A", "B"], "A=B"],
    ids=["int-value", "null-value", "list-value", "empty-key", "empty-value", "list", "text"],
)
def test_non_string_mapping_pairs_are_rejected(strict_connector, pairs):
    errors = connector_settings.mapping_errors(strict_connector, {"locations": pairs})

    assert set(errors) == {"mappings"}
    assert "locations" in errors["mappings"][0]


def test_mappings_must_be_an_object(strict_connector):
    assert set(connector_settings.mapping_errors(strict_connector, [("locations", {})])) == {"mappings"}


@pytest.mark.parametrize(
    ("kind", "section"), [("skus", "SKU mappings"), ("shipping_methods", "Shipping method mappings")]
)
def test_row_mapping_kinds_are_refused_in_the_json_with_where_to_edit_them(strict_connector, kind, section):
    # the connector declares the kind, yet the JSON is not where it lives: the order flow reads the rows
    assert kind in strict_connector.mapping_kinds

    errors = connector_settings.mapping_errors(strict_connector, {kind: {"EXT-1": "SKU-1"}})

    assert set(errors) == {"mappings"} and len(errors["mappings"]) == 1
    message = errors["mappings"][0]
    assert repr(kind) in message and f"“{section}” section" in message and "rows, not JSON" in message


def test_saving_json_skus_saves_nothing(strict_integration):
    before = Integration.objects.filter(pk=strict_integration.pk).values().get()

    with pytest.raises(ValidationError) as invalid:
        configuration.save_integration(strict_integration, mappings={"skus": {"EXT-1": "SKU-1"}})

    assert "“SKU mappings” section" in invalid.value.message_dict["mappings"][0]
    assert Integration.objects.filter(pk=strict_integration.pk).values().get() == before


def test_save_with_invalid_mappings_saves_nothing(strict_integration):
    before = Integration.objects.filter(pk=strict_integration.pk).values().get()
    events_before = IntegrationEvent.objects.count()

    with pytest.raises(ValidationError) as invalid:
        configuration.save_integration(strict_integration, mappings={"locations": {"A": 1}})

    assert set(invalid.value.message_dict) == {"mappings"}
    assert Integration.objects.filter(pk=strict_integration.pk).values().get() == before
    assert IntegrationEvent.objects.count() == events_before


def test_settings_and_mapping_errors_are_reported_together(org, strict_connector):
    with pytest.raises(ValidationError) as invalid:
        configuration.create_integration(
            org, strict_connector, "Strict shop", settings={"page_size": "x"}, mappings={"nope": {}}
        )

    assert set(invalid.value.message_dict) == {"page_size", "mappings"}


def test_valid_mappings_are_stored(strict_integration):
    configuration.save_integration(strict_integration, mappings={"locations": {"WH-EAST": "East"}})

    stored = Integration.objects.get(pk=strict_integration.pk)
    assert stored.mappings == {"locations": {"WH-EAST": "East"}}
    assert stored.status == IntegrationStatus.CONNECTING  # settings untouched: no re-check
