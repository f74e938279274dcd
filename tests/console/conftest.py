"""Fixtures of the transfer tests: a configured integration of a public connector, and one of a private connector."""

import copy

import pytest

from integrations import configuration
from integrations.models import Connector
from inventory.models import SkuMapping
from orders.models import ShippingMethodMapping
from tests.console.helpers import MAPPINGS, METHOD_MAPPINGS, SKU_MAPPINGS, WORKFLOWS, hub_catalog
from tests.fixtures.integrations import GOOD_SETTINGS, STRICT_SCHEMA


@pytest.fixture
def configured(org, strict_connector):
    """A fully configured integration of the public strict connector, with a secret, mappings and flows."""
    integration = configuration.create_integration(
        org,
        strict_connector,
        "Strict shop",
        settings={**GOOD_SETTINGS, "region": "eu", "dry_run": True},
        mappings=copy.deepcopy(MAPPINGS),
        notification_email="shop-alerts@acme.test",
        workflows=WORKFLOWS,
    )
    products, methods = hub_catalog(org)
    for entry in SKU_MAPPINGS:
        SkuMapping.objects.create(
            integration=integration, external_sku=entry["external_sku"], product=products[entry["sku"]]
        )
    for entry in METHOD_MAPPINGS:
        ShippingMethodMapping.objects.create(
            integration=integration, external_code=entry["external_code"], method=methods[entry["method"]]
        )
    return integration


@pytest.fixture
def private_connector(org):
    return Connector.objects.create(
        organization=org,
        key="acme-legacy-shop",
        name="Acme legacy shop",
        type="channel",
        description="The old PHP shop.",
        version="2.3",
        recommended_grants=["orders:read", "orders:write"],
        settings_schema=STRICT_SCHEMA,
        mapping_kinds=["skus", "locations"],
        manifest={"health": "/health", "orders": "/orders"},
    )


@pytest.fixture
def private_integration(org, private_connector):
    return configuration.create_integration(
        org,
        private_connector,
        "Legacy shop",
        settings=dict(GOOD_SETTINGS),
        mappings={"locations": {"A": "B"}},
    )
