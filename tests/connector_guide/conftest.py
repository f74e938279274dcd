"""
The hub the connector guide's code runs against: real processes — gunicorn, a Celery worker and beat — on a
database of its own on DATABASE_URL's server and Redis db numbers of its own (harness/), so that
webhooks are really delivered and orders really routed while a chapter runs.

Each chapter gets an organization of its own, laid out as the guide assumes a reader's is (docs/connectors/
README.md, "Before you start"): a channel "Web shop", a 3PL "Warehouse" with a location and stock, an ERP
"Back office", the catalog of CATALOG, the hub shipping methods `standard` and `express`, and the web shop's
code `shop-standard` mapped to `standard`, its SKU `TS-SMALL` mapped to `TSHIRT-S` and its settings
`store_url` and `default_currency` set.
"""

import os

import pytest

from harness.fixtures import (  # noqa: F401 - fixtures and the report hook, registered by being here
    _log_mark,
    hub_on_own_database,
    pytest_runtest_makereport,
)
from harness.hub import Hub

# Redis db numbers of this hub: the suite uses 0 and 1, the journey 5 and 6.
REDIS_DBS = tuple(int(n) for n in os.environ.get("GUIDE_REDIS_DBS", "7,8").split(","))

INTEGRATIONS = [("Web shop", "custom-channel"), ("Warehouse", "custom-3pl"), ("Back office", "custom-erp")]
ROLES = {"channel": "Web shop", "3pl": "Warehouse", "erp": "Back office"}
CATALOG = [
    {"sku": "TSHIRT-S", "name": "T-shirt, small", "price": "12.50", "barcode": "4006381333931"},
    {"sku": "TSHIRT-M", "name": "T-shirt, medium", "price": "12.50"},
    {"sku": "MUG", "name": "Mug", "price": "8.00"},
]
STOCK = {"TSHIRT-S": 40, "TSHIRT-M": 25, "MUG": 10}

# Run in the hub's process after the organization exists (harness/hub.py's SETUP names it SLUG): the catalog,
# the shipping methods, the web shop's settings and mappings, through the services the admin uses.
CONFIGURE = """
from integrations import configuration
from integrations.models import Integration
from inventory import services as inventory
from inventory.models import SkuMapping
from orders.models import ShippingMethod, ShippingMethodMapping
from organizations.models import Organization
org = Organization.objects.get(slug=SLUG)
inventory.upsert_products(org, CATALOG)
standard = ShippingMethod.objects.create(organization=org, code="standard", name="Standard")
ShippingMethod.objects.create(organization=org, code="express", name="Express")
shop = Integration.objects.get(organization=org, name="Web shop")
configuration.save_integration(shop, settings={"store_url": "https://shop.example.com", "default_currency": "USD"})
ShippingMethodMapping.objects.create(integration=shop, external_code="shop-standard", method=standard)
SkuMapping.objects.create(integration=shop, external_sku="TS-SMALL", product=org.products.get(sku="TSHIRT-S"))
"""


@pytest.fixture(scope="session")
def guide_hub(tmp_path_factory):
    """The hub's processes, up, on a migrated database of their own."""
    with hub_on_own_database(tmp_path_factory.mktemp("guide"), "guide", REDIS_DBS) as hub:
        hub.start_processes()
        yield hub


def organization(hub: Hub, slug: str) -> dict:
    """
    A reader's organization, as conftest's docstring lays it out; returns its keys by role and the
    environment the guide's blocks see (SWITCHYARD_URL, SWITCHYARD_ORG and one key per role).
    """
    hub.setup_organization(slug, INTEGRATIONS, first=f"CATALOG = {CATALOG!r}\n", then=CONFIGURE)
    with hub.api("Warehouse") as api:
        answer = api.post("/locations", json={"name": "Main warehouse", "kind": "3pl"})
        assert answer.status_code == 201, answer.text
        items = [{"sku": sku, "on_hand": count} for sku, count in STOCK.items()]
        answer = api.post("/inventory", json={"location": answer.json()["id"], "items": items})
        assert answer.status_code == 200 and not answer.json()["errors"], answer.text
    keys = {role: hub.keys[name] for role, name in ROLES.items()}
    for name in ROLES.values():
        with hub.api(name) as api:
            assert api.post("/integration/connect").status_code == 200
    env = {
        "SWITCHYARD_URL": hub.url,
        "SWITCHYARD_ORG": slug,
        "SWITCHYARD_CHANNEL_KEY": keys["channel"],
        "SWITCHYARD_3PL_KEY": keys["3pl"],
        "SWITCHYARD_ERP_KEY": keys["erp"],
    }
    return {"keys": keys, "env": env, "integrations": dict(hub.integrations)}
