"""Fixtures of the catalog and stock API tests: keys of each kind and another organization's rows."""

import pytest

from integrations.models import Connector
from inventory.models import Location, Product
from tests.inventory.helpers import ALL_GRANTS
from tokens.choices import KeyKind

# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def key_for(issue_key):
    """`key_for(integration, *grants)` → an integration key; no grants: the connector's recommended ones."""

    def make(integration, *grants):
        return issue_key(
            kind=KeyKind.INTEGRATION,
            name=f"{integration.name} key",
            integration=integration,
            grants=list(grants) or None,
        )

    return make


@pytest.fixture
def channel_client(api_client, integration_key):
    """The custom channel "Acme web shop": products:read and inventory:read, no writes here."""
    return api_client(integration_key)


@pytest.fixture
def tpl_client(api_client, key_for, warehouse_integration):
    """The 3PL that manages `warehouse`: locations and inventory read/write, products:read."""
    return api_client(key_for(warehouse_integration))


@pytest.fixture
def erp(org, make_integration):
    integration = make_integration(
        org, Connector.objects.get(organization=None, key="custom-erp"), "Acme ERP"
    )
    assert integration.flow_products_in  # an ERP is a catalog source by default
    return integration


@pytest.fixture
def erp_client(api_client, key_for, erp):
    return api_client(key_for(erp))


@pytest.fixture
def org_client(api_client, issue_key, org, org_admin):
    return api_client(
        issue_key(kind=KeyKind.ORG, name="Acme ops", organization=org, user=org_admin, grants=ALL_GRANTS)
    )


@pytest.fixture
def globex_product(other_org):
    return Product.objects.create(organization=other_org, sku="GLOBEX-1", name="Globex widget")


@pytest.fixture
def globex_location(other_org):
    return Location.objects.create(organization=other_org, name="Globex DC")
