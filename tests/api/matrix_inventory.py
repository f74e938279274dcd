"""
The catalog and stock routes in the tenant-boundary matrix (tests/api/test_tenant_matrix.py): `ENTRIES`
joins (or replaces the same keys of) its REGISTRY, and `build(world)` runs at the end of its `world`
fixture. Import this module after `Tenancy` is defined there: it uses the class.

Tenant A (the web shop and its 3PL) gets canaries no outsider may see: its own SKUs (SKU mappings, which
show in its GET /inventory and /availability rows), and the organization's own hub (managed by no
integration: org keys only) with stock. The outsiders get stock of their own, so their lists are not
vacuous, and Globex's writes get past the workflow switches to meet the scope itself.

The catalog belongs to the organization, not to an integration (docs/connectors/01-concepts.md, "Data
ownership": "products — the org's catalog (read)"). Acme's sibling integrations read it legitimately, so
product rows are declared `org=` only: hidden from other organizations, not from siblings. For the same reason
no product of Acme may carry a canary string (a sibling sees "CANARY" in every product list otherwise).
Locations and stock are the managing integration's: hidden from siblings too (`tenant=`).
"""

from django.db.models import Q

from integrations.models import Integration
from inventory.models import InventoryLevel, Location, Product, SkuMapping
from tests.api.test_tenant_matrix import Tenancy

A_SKU = "TSHIRT-S"  # a product of Acme's catalog (tests/fixtures/commerce.py), stocked at A's warehouse
A_SHOP_SKU = "CANARY-A-SHOP-TEE"  # the web shop's own SKU for it
A_3PL_SKU = "CANARY-A-3PL-TEE"  # the 3PL's own SKU for it
A_HUB = "CANARY-ORG-A hub"  # Acme's own location, managed by no integration


def build(world):
    """
    Tenant A's canaries, the outsiders' own stock, and Globex's write switches on. Runs before or after
    matrix_orders.build: what both may make (Globex DC, levels the orders commit) is got or created.
    """
    tee = Product.objects.get(organization=world.org_a, sku=A_SKU)
    SkuMapping.objects.create(integration=world.channel, external_sku=A_SHOP_SKU, product=tee)
    SkuMapping.objects.create(integration=world.tpl, external_sku=A_3PL_SKU, product=tee)
    hub = Location.objects.create(organization=world.org_a, name=A_HUB, kind="store")
    InventoryLevel.objects.create(product=tee, location=hub, on_hand=5)

    # The sibling 3PL: stock at its own location, under its own SKU.
    sibling_tpl = world.keys["sibling-3pl-key"].key.integration
    west = Location.objects.filter(managed_by=sibling_tpl).first() or Location.objects.create(
        organization=world.org_a, name="West", kind="3pl", managed_by=sibling_tpl
    )
    InventoryLevel.objects.update_or_create(product=tee, location=west, defaults={"on_hand": 7})
    SkuMapping.objects.create(integration=sibling_tpl, external_sku="WEST-TEE", product=tee)

    # Globex: a product, a location its integration manages, stock there.
    mug, _ = Product.objects.get_or_create(
        organization=world.org_b, sku="GLOBEX-MUG", defaults={"name": "Mug"}
    )
    globex_dc, _ = Location.objects.get_or_create(
        organization=world.org_b, name="Globex DC", defaults={"kind": "3pl", "managed_by": world.b}
    )
    InventoryLevel.objects.update_or_create(product=mug, location=globex_dc, defaults={"on_hand": 3})
    # Writes reach the scope check rather than stopping at a switched-off flow.
    Integration.objects.filter(pk=world.b.pk).update(flow_products_in=True, flow_inventory_in=True)


# --- rows of tenant A (hidden from every outsider) and of organization A (hidden from other orgs) -------


def catalog_of_a(w):
    return Product.objects.filter(organization=w.org_a)


def locations_of_a(w):
    # An integration key sees only the locations it manages: A's integrations' and Acme's unmanaged ones
    # are hidden from the siblings.
    return Location.objects.filter(organization=w.org_a).filter(
        Q(managed_by__in=w.tenant_a) | Q(managed_by=None)
    )


def locations_of_org_a(w):
    return Location.objects.filter(organization=w.org_a)


def stock_of_a(w):
    return InventoryLevel.objects.filter(location__in=locations_of_a(w))


def stock_of_org_a(w):
    return InventoryLevel.objects.filter(location__organization=w.org_a)


def a_product(w):
    return Product.objects.get(organization=w.org_a, sku=A_SKU)


def by_sku(row):
    """Availability rows have no id: one per SKU (the channel's own where mapped)."""
    return row["sku"] if isinstance(row, dict) else row.sku


# A's SKU and price, sent by an outsider: an upsert must land in the outsider's own organization, if at all.
HIJACK_PRODUCT = {"sku": A_SKU, "name": "Hijacked", "price": "0.01"}

ENTRIES: dict[str, Tenancy] = {
    "api:product-list": Tenancy(org=catalog_of_a, body=lambda w: HIJACK_PRODUCT),
    "api:product-bulk": Tenancy(org=catalog_of_a, body=lambda w: {"products": [HIJACK_PRODUCT]}),
    # Siblings may read A's product (the org's catalog); their PATCH stops at products:write's workflow.
    "api:product-detail": Tenancy(org=catalog_of_a, obj=a_product, body=lambda w: {"name": "Hijacked"}),
    # The name of A's warehouse: a sibling's POST clashes (400), another organization's makes its own.
    "api:location-list": Tenancy(
        tenant=locations_of_a,
        org=locations_of_org_a,
        body=lambda w: {"name": w.warehouse.name, "kind": "3pl"},
    ),
    "api:location-detail": Tenancy(tenant=locations_of_a, org=locations_of_org_a, obj=lambda w: w.warehouse),
    "api:inventory": Tenancy(
        tenant=stock_of_a,
        org=stock_of_org_a,
        # A stock push to A's warehouse, in A's own SKU and the hub SKU: 404 for every outsider.
        body=lambda w: {
            "location": str(w.warehouse.pk),
            "items": [{"sku": A_SKU, "on_hand": 999}, {"sku": A_3PL_SKU, "on_hand": 999}],
        },
        names_a=True,
    ),
    # Channel keys only (the 3PLs and org keys get 404); a channel sees its own organization's catalog.
    "api:availability": Tenancy(org=catalog_of_a, key=by_sku),
}
