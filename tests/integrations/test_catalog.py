"""The built-in catalog of connectors (data migration 0002) against the table of
docs/connectors/02-register.md."""

import pytest

from integrations import connector_settings
from integrations.models import Connector

# --- the built-in catalog (data migration 0002) ---------------------------------------------------------------

# Typed from docs/connectors/02-register.md's "The built-in connectors" table, not imported from
# integrations/catalog.py.
_CHANNEL = [
    "orders:read",
    "orders:write",
    "fulfillments:read",
    "products:read",
    "inventory:read",
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "exceptions:read",
    "exceptions:write",
]
_FULFILLER = [
    "locations:read",
    "locations:write",
    "inventory:read",
    "inventory:write",
    "shipping_requests:read",
    "shipping_requests:write",
    "fulfillments:read",
    "fulfillments:write",
    "products:read",
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "exceptions:read",
    "exceptions:write",
]
_ERP = [
    "products:read",
    "products:write",
    "orders:read",
    "inventory:read",
    "locations:read",
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "exceptions:read",
    "exceptions:write",
]
DESIGN_CATALOG = {
    "custom-channel": ("channel", _CHANNEL),
    "custom-marketplace": ("marketplace", _CHANNEL),
    "custom-3pl": ("3pl", _FULFILLER),
    "custom-wms": ("wms", _FULFILLER),
    "custom-erp": ("erp", _ERP),
}


def test_builtin_catalog_has_the_five_design_connectors(db):
    public = Connector.objects.filter(organization__isnull=True)

    assert set(public.values_list("key", flat=True)) == set(DESIGN_CATALOG)


@pytest.mark.parametrize("key", list(DESIGN_CATALOG))
def test_builtin_connector_type_and_recommended_grants_match_design(db, key):
    connector = Connector.objects.get(organization__isnull=True, key=key)
    expected_type, expected_grants = DESIGN_CATALOG[key]

    assert connector.type == expected_type
    assert sorted(connector.recommended_grants) == sorted(expected_grants)
    assert len(connector.recommended_grants) == len(set(connector.recommended_grants))  # no duplicates


@pytest.mark.parametrize("key", list(DESIGN_CATALOG))
def test_builtin_connector_schema_is_usable_and_needs_no_setting(db, key):
    # Custom connectors run outside the hub: a fresh integration must not wait for settings.
    connector = Connector.objects.get(organization__isnull=True, key=key)

    connector_settings.check_settings_schema(connector.settings_schema)
    assert connector_settings.settings_errors(connector, {}) == {}
    assert connector.secret_fields == set()
