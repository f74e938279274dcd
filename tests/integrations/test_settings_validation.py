"""Settings validation against a connector's JSON Schema; secrets never echoed, kept, and kept out of sight."""

import importlib.util
import json

import pytest
from django.core.exceptions import ValidationError

from integrations import configuration, connector_settings
from integrations.models import Connector, Integration, IntegrationEvent
from tests.fixtures.integrations import GOOD_SETTINGS

STORED_TOKEN = GOOD_SETTINGS["api_token"]


def all_messages(errors: dict) -> list[str]:
    return [message for messages in errors.values() for message in messages]


def counts():
    return Integration.objects.count(), IntegrationEvent.objects.count()


# --- settings_errors ----------------------------------------------------------------------------------


def test_good_settings_have_no_errors(strict_connector):
    assert connector_settings.settings_errors(strict_connector, dict(GOOD_SETTINGS)) == {}


@pytest.mark.parametrize("missing", ["base_url", "api_token"])
def test_missing_required_setting_is_keyed_by_the_field(strict_connector, missing):
    values = {k: v for k, v in GOOD_SETTINGS.items() if k != missing}

    errors = connector_settings.settings_errors(strict_connector, values)

    assert set(errors) == {missing}
    assert len(errors[missing]) == 1


def test_every_missing_required_setting_is_reported(strict_connector):
    errors = connector_settings.settings_errors(strict_connector, {"page_size": 10})

    assert set(errors) == {"base_url", "api_token"}


def test_missing_required_settings_are_allowed_when_completeness_is_not_required(strict_connector):
    assert (
        connector_settings.settings_errors(strict_connector, {"page_size": 10}, require_complete=False) == {}
    )


def test_types_are_checked_even_when_completeness_is_not_required(strict_connector):
    errors = connector_settings.settings_errors(
        strict_connector, {"page_size": "ten"}, require_complete=False
    )

    assert set(errors) == {"page_size"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("page_size", "50"),  # string for integer
        ("page_size", 5.5),  # number for integer
        ("page_size", True),  # boolean for integer
        ("base_url", 42),  # integer for string
        ("region", 1),  # integer for string (and outside the enum)
        ("dry_run", "yes"),  # string for boolean
        ("dry_run", 1),  # integer for boolean
        ("dry_run", None),  # null for boolean
    ],
    ids=lambda v: repr(v),
)
def test_wrong_type_is_keyed_by_the_field(strict_connector, field, value):
    errors = connector_settings.settings_errors(strict_connector, {**GOOD_SETTINGS, field: value})

    assert set(errors) == {field}
    assert errors[field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("region", "asia"),  # enum
        ("base_url", "not a url"),  # format: uri
        ("base_url", "shop.example.test/no-scheme"),  # format: uri needs a scheme
        ("page_size", 0),  # minimum 1
        ("page_size", -5),
        ("page_size", 501),  # maximum 500
        ("api_token", "short"),  # minLength 8
    ],
)
def test_constraint_violation_is_keyed_by_the_field(strict_connector, field, value):
    errors = connector_settings.settings_errors(strict_connector, {**GOOD_SETTINGS, field: value})

    assert set(errors) == {field}


@pytest.mark.parametrize(
    "values",
    [
        {"page_size": 1},
        {"page_size": 500},
        {"region": "eu"},
        {"region": "us"},
        {"dry_run": False},
        {"api_token": "12345678"},
    ],
    ids=lambda v: repr(v),
)
def test_boundary_values_are_accepted(strict_connector, values):
    assert connector_settings.settings_errors(strict_connector, {**GOOD_SETTINGS, **values}) == {}


def test_enum_message_lists_the_choices(strict_connector):
    errors = connector_settings.settings_errors(strict_connector, {**GOOD_SETTINGS, "region": "asia"})

    assert "eu" in errors["region"][0]
    assert "us" in errors["region"][0]


def test_unknown_settings_are_each_keyed_by_their_name(strict_connector):
    errors = connector_settings.settings_errors(
        strict_connector, {**GOOD_SETTINGS, "colour": "red", "shoe_size": 44}
    )

    assert set(errors) == {"colour", "shoe_size"}


def test_settings_must_be_an_object(strict_connector):
    errors = connector_settings.settings_errors(strict_connector, ["base_url"])

    assert set(errors) == {"__all__"}


def test_a_connector_without_schema_accepts_any_object(org):
    connector = Connector.objects.create(key="loose", name="Loose", type="erp", organization=org)

    assert connector_settings.settings_errors(connector, {"anything": [1, 2, 3]}) == {}


# --- secrets are never echoed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [(12345678901, "12345678901"), ("abc", "abc"), ("xyzzy", "xyzzy")],
    ids=["integer-secret", "short-secret", "short-secret-2"],
)
def test_messages_never_contain_a_secret_value(strict_connector, value, shown):
    errors = connector_settings.settings_errors(strict_connector, {**GOOD_SETTINGS, "api_token": value})

    assert set(errors) == {"api_token"}
    assert all(shown not in message for message in all_messages(errors))


def test_save_error_never_contains_a_secret_value(strict_integration):
    with pytest.raises(ValidationError) as invalid:
        configuration.save_integration(
            strict_integration, settings={**GOOD_SETTINGS, "api_token": 12345678901}
        )

    assert set(invalid.value.message_dict) == {"api_token"}
    assert "12345678901" not in str(invalid.value)
    assert "12345678901" not in json.dumps(invalid.value.message_dict)


@pytest.fixture
def vault_connector(db):
    """A secret with more constraints than STRICT_SCHEMA's, and a schema-level rule over several fields."""
    return Connector.objects.create(
        key="vault",
        name="Vault",
        type="erp",
        settings_schema={
            "type": "object",
            "properties": {
                "secret_key": {
                    "type": "string",
                    "writeOnly": True,
                    "pattern": "^sk_[a-z_]+$",
                    "maxLength": 16,
                    "not": {"const": "sk_do_not_use"},
                },
                "password": {"type": "string", "writeOnly": True, "enum": ["never-listed"]},
                "username": {"type": "string"},
            },
            # Either a key, or a username with a password.
            "anyOf": [{"required": ["secret_key"]}, {"required": ["username", "password"]}],
            "maxProperties": 2,
        },
    )


@pytest.mark.parametrize(
    "values",
    [
        {"secret_key": "hunter2-but-much-too-long"},  # pattern + maxLength
        {"secret_key": "sk_do_not_use"},  # `not`: jsonschema's own message would quote it
        {"password": "hunter2-password"},  # enum on a secret
        {
            "secret_key": "sk_fine",
            "username": "bob",
            "password": "hunter2-password",
        },  # too many, at object level
        {"username": "bob", "password": 1234567},  # type on a secret
    ],
    ids=["pattern", "not", "enum", "object-level", "type"],
)
def test_messages_never_contain_a_secret_value_whatever_the_rule(vault_connector, values):
    errors = connector_settings.settings_errors(vault_connector, values)

    assert errors
    secret_values = [str(values[k]) for k in ("secret_key", "password") if k in values]
    for message in all_messages(errors):
        for secret in secret_values:
            assert secret not in message


# --- nothing saved on invalid input ------------------------------------------------------------------------


def test_create_with_missing_required_setting_saves_nothing(org, strict_connector):
    before = counts()

    with pytest.raises(ValidationError) as invalid:
        configuration.create_integration(
            org, strict_connector, "Strict shop", settings={"api_token": STORED_TOKEN}, require_complete=True
        )

    assert set(invalid.value.message_dict) == {"base_url"}
    assert counts() == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("page_size", "50"), ("region", "asia"), ("base_url", "nope"), ("page_size", 501), ("colour", "red")],
)
def test_create_with_invalid_setting_saves_nothing_even_when_incomplete_is_allowed(
    org, strict_connector, field, value
):
    before = counts()

    with pytest.raises(ValidationError) as invalid:
        configuration.create_integration(org, strict_connector, "Strict shop", settings={field: value})

    assert set(invalid.value.message_dict) == {field}
    assert counts() == before


@pytest.mark.parametrize(
    ("submitted", "field"),
    [
        ({"api_token": STORED_TOKEN}, "base_url"),  # required base_url left out
        ({**GOOD_SETTINGS, "page_size": "fifty"}, "page_size"),
        ({**GOOD_SETTINGS, "dry_run": "no"}, "dry_run"),
        ({**GOOD_SETTINGS, "region": "mars"}, "region"),
        ({**GOOD_SETTINGS, "base_url": "::"}, "base_url"),
        ({**GOOD_SETTINGS, "page_size": 0}, "page_size"),
        ({**GOOD_SETTINGS, "unknown": 1}, "unknown"),
        ({**GOOD_SETTINGS, "api_token": "abc"}, "api_token"),
    ],
    ids=["missing", "type", "boolean", "enum", "format", "minimum", "unknown", "secret-too-short"],
)
def test_save_with_invalid_settings_leaves_the_row_unchanged(strict_integration, submitted, field):
    # given a configured integration and a snapshot of its row and audit trail
    before = Integration.objects.filter(pk=strict_integration.pk).values().get()
    events_before = IntegrationEvent.objects.count()

    # when invalid settings are saved
    with pytest.raises(ValidationError) as invalid:
        configuration.save_integration(strict_integration, settings=submitted)

    # then the error is keyed by the field, and neither the row nor the in-memory settings nor the trail changed
    assert set(invalid.value.message_dict) == {field}
    assert Integration.objects.filter(pk=strict_integration.pk).values().get() == before
    assert connector_settings.full_settings(strict_integration) == GOOD_SETTINGS
    assert IntegrationEvent.objects.count() == events_before


def test_save_refuses_a_connector_private_to_another_organization(org, other_org):
    connector = Connector.objects.create(key="theirs", name="Theirs", type="channel", organization=other_org)
    before = counts()

    with pytest.raises(ValidationError) as invalid:
        configuration.create_integration(org, connector, "Borrowed")

    assert set(invalid.value.message_dict) == {"connector"}
    assert counts() == before


def test_own_private_connector_is_accepted(org):
    connector = Connector.objects.create(key="ours", name="Ours", type="channel", organization=org)

    integration = configuration.create_integration(org, connector, "Own")

    assert integration.pk is not None


# --- secrets are kept, and kept out of sight ----------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", None])
def test_blank_secret_on_save_keeps_the_stored_secret(strict_integration, blank):
    configuration.save_integration(
        strict_integration, settings={**GOOD_SETTINGS, "api_token": blank, "page_size": 7}
    )

    stored = Integration.objects.get(pk=strict_integration.pk)
    assert connector_settings.full_settings(stored) == {**GOOD_SETTINGS, "page_size": 7}


def test_blank_secret_left_out_entirely_keeps_the_stored_secret(strict_integration):
    configuration.save_integration(strict_integration, settings={"base_url": GOOD_SETTINGS["base_url"]})

    assert (
        connector_settings.full_settings(Integration.objects.get(pk=strict_integration.pk))["api_token"]
        == STORED_TOKEN
    )


def test_new_secret_replaces_the_stored_one_and_the_event_names_it_without_the_value(strict_integration):
    mark = IntegrationEvent.objects.order_by("-pk").values_list("pk", flat=True).first()

    configuration.save_integration(
        strict_integration, settings={**GOOD_SETTINGS, "api_token": "tok-new-987654"}
    )

    assert (
        connector_settings.full_settings(Integration.objects.get(pk=strict_integration.pk))["api_token"]
        == "tok-new-987654"
    )
    events = IntegrationEvent.objects.filter(integration=strict_integration, pk__gt=mark)
    config = events.get(kind="config_changed")
    assert config.data["settings"] == ["api_token"]
    for event in events:
        assert "tok-new-987654" not in json.dumps(event.data)
        assert "tok-new-987654" not in event.message
        assert STORED_TOKEN not in event.message


def test_blank_non_secret_setting_is_removed(strict_integration):
    configuration.save_integration(strict_integration, settings={**GOOD_SETTINGS, "page_size": ""})

    assert "page_size" not in Integration.objects.get(pk=strict_integration.pk).settings


def test_merge_settings(strict_connector):
    current = {"base_url": "https://old.example.test", "api_token": "tok-old-123", "page_size": 10}

    merged = connector_settings.merge_settings(
        strict_connector, current, {"base_url": "https://new.example.test", "api_token": "", "region": None}
    )

    # submitted values win, blank secret keeps the stored one, a left-out or blank non-secret is gone
    assert merged == {"base_url": "https://new.example.test", "api_token": "tok-old-123"}


def test_merge_settings_does_not_invent_a_secret(strict_connector):
    assert connector_settings.merge_settings(strict_connector, {}, {"api_token": ""}) == {}


def test_public_settings_strips_secrets(strict_integration):
    public = connector_settings.public_settings(strict_integration)

    assert public == {k: v for k, v in GOOD_SETTINGS.items() if k != "api_token"}
    assert STORED_TOKEN not in json.dumps(public)


def test_secret_fields_are_the_write_only_properties(strict_connector, vault_connector):
    assert strict_connector.secret_fields == {"api_token"}
    assert vault_connector.secret_fields == {"secret_key", "password"}


# --- check_settings_schema -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"type": "object"},
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    ],
    ids=["empty", "bare-object", "with-properties"],
)
def test_check_settings_schema_accepts_object_schemas(schema):
    connector_settings.check_settings_schema(schema)


def test_check_settings_schema_accepts_the_fixture_schema(strict_connector):
    connector_settings.check_settings_schema(strict_connector.settings_schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "nonsense"},
        {"type": "object", "properties": {"a": {"minLength": -1}}},
        {"type": "object", "required": "a"},
        {"type": "object", "properties": ["a"]},
    ],
    ids=["unknown-type", "negative-min-length", "required-not-list", "properties-not-object"],
)
def test_check_settings_schema_rejects_invalid_schemas(schema):
    with pytest.raises(ValidationError):
        connector_settings.check_settings_schema(schema)


@pytest.mark.parametrize(
    "schema",
    [{"type": "array"}, {"type": "string"}, {"type": ["object", "null"]}, True, False, "object", [], 7],
    ids=["array", "string", "object-or-null", "true", "false", "text", "list", "number"],
)
def test_check_settings_schema_rejects_non_object_schemas(schema):
    with pytest.raises(ValidationError):
        connector_settings.check_settings_schema(schema)


# --- format checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("uri", "https://shop.example.test/api", "::"),
        ("email", "ops@example.test", "not an address"),
        ("date-time", "2026-12-07T12:00:00Z", "yesterday"),
        ("hostname", "shop.example.test", "-bad-.example"),
    ],
)
def test_connector_schemas_have_their_format_checks_without_the_iri_grammar(fmt, good, bad):
    """
    The formats a connector's schema may name are checked with the packages listed one by one in
    pyproject.toml, not jsonschema's format-nongpl extra: that extra also installs rfc3987-syntax, whose grammar
    cost every process importing jsonschema 2 s of CPU, for the "iri" formats nobody uses.
    """
    connector = Connector(key="formats", name="Formats", type="channel")
    connector.settings_schema = {"type": "object", "properties": {"value": {"type": "string", "format": fmt}}}

    assert connector_settings.settings_errors(connector, {"value": good}) == {}
    assert set(connector_settings.settings_errors(connector, {"value": bad})) == {"value"}
    assert importlib.util.find_spec("rfc3987_syntax") is None
