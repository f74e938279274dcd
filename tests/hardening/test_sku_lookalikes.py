"""
Look-alike SKUs (#14, finding 10e): "café-1" composed (U+00E9) and decomposed (e + U+0301), "sku\\u200b1"
with a zero-width space, full-width "ＳＫＵ１". SKUs are stored NFC without format characters, so the first
two pairs are one SKU wherever a SKU comes in; a SKU whose compatibility form (NFKC) is an existing one's is
refused with a 400 naming the existing SKU.
"""

import importlib
import io
import json

import pytest
from django.apps import apps as registry

from inventory.models import InventoryLevel, Product, SkuMapping
from inventory.skus import lookalike_key, normalize_sku
from orders.choices import OrderStatus
from orders.models import Order
from tests.api.helpers import assert_error
from tokens import grants
from tokens import issuing as key_services
from tokens.choices import KeyKind

COMPOSED = "caf\u00e9-1"
DECOMPOSED = "cafe\u0301-1"
FULL_WIDTH = "ＳＫＵ１"


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (DECOMPOSED, COMPOSED),
        (COMPOSED, COMPOSED),
        ("sku\u200b1", "sku1"),
        ("sku\u200c1\u200d", "sku1"),
        ("\ufeffsku1", "sku1"),
        ("sku\u20601", "sku1"),
        ("sku\u00ad1", "sku1"),  # soft hyphen
        (FULL_WIDTH, FULL_WIDTH),  # visible, and kept: it is the look-alike check that refuses it
        ("Sku-1", "Sku-1"),  # case is kept
    ],
)
def test_normalize_sku(raw, stored):
    assert normalize_sku(raw) == stored


def test_lookalike_key_folds_compatibility_forms_but_not_case():
    assert lookalike_key(FULL_WIDTH) == lookalike_key("SKU1") == "SKU1"
    assert lookalike_key("\ufb01t-1") == lookalike_key("fit-1")  # the ligature ﬁ
    assert lookalike_key("sku1") != lookalike_key("SKU1")


@pytest.fixture
def catalog(org):
    return {
        sku: Product.objects.create(organization=org, sku=sku, name=sku)
        for sku in [COMPOSED, "SKU1", "sku1", "fit-1"]
    }


@pytest.fixture
def shop(api_client, integration):
    integration.__class__.objects.filter(pk=integration.pk).update(
        **{f.name: True for f in integration._meta.fields if f.name.startswith("flow_")}
    )
    issued = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="shop key", integration=integration, grants=grants.GRANTS
    )
    return api_client(issued)


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


# --- products ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sku", [DECOMPOSED, COMPOSED, f"{COMPOSED}\u200b"])
def test_the_same_sku_in_another_form_updates_the_product(shop, catalog, sku):
    response = post(shop, "/api/v1/products", {"sku": sku, "name": "Renamed"})

    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(catalog[COMPOSED].pk)
    assert response.json()["sku"] == COMPOSED
    assert Product.objects.count() == len(catalog)
    assert Product.objects.get(pk=catalog[COMPOSED].pk).name == "Renamed"


def test_a_new_sku_is_stored_normalised(shop, catalog):
    response = post(shop, "/api/v1/products", {"sku": "the\u200bcafe\u0301", "name": "New"})

    assert response.status_code == 201, response.content
    product = Product.objects.get(pk=response.json()["id"])
    assert product.sku == "thecaf\u00e9"
    assert product.sku_key == "thecaf\u00e9"


@pytest.mark.parametrize(("sku", "existing"), [(FULL_WIDTH, "SKU1"), ("\ufb01t-1", "fit-1")])
def test_a_lookalike_of_an_existing_sku_is_refused_naming_it(shop, catalog, sku, existing):
    response = post(shop, "/api/v1/products", {"sku": sku, "name": "Impostor"})

    details = assert_error(response, 400, "validation_error")
    assert existing in details["sku"][0]
    assert Product.objects.count() == len(catalog)


def test_an_sku_of_invisible_characters_only_is_refused(shop, catalog):
    details = assert_error(
        post(shop, "/api/v1/products", {"sku": "\u200b\u200b", "name": "X"}), 400, "validation_error"
    )
    assert "sku" in details
    assert Product.objects.count() == len(catalog)


def test_a_bulk_with_a_lookalike_is_refused_whole_naming_the_entry(shop, catalog):
    body = {"products": [{"sku": "NEW-1", "name": "New"}, {"sku": FULL_WIDTH, "name": "Impostor"}]}

    details = assert_error(post(shop, "/api/v1/products/bulk", body), 400, "validation_error")

    assert set(details) == {"products.1.sku"}
    assert "SKU1" in details["products.1.sku"][0]
    assert not Product.objects.filter(sku="NEW-1").exists()


def test_two_new_lookalikes_in_one_bulk_are_refused(shop, catalog):
    body = {"products": [{"sku": "ＡＢ-1", "name": "A"}, {"sku": "AB-1", "name": "B"}]}

    details = assert_error(post(shop, "/api/v1/products/bulk", body), 400, "validation_error")

    assert "products.1.sku" in details or "products.0.sku" in details
    assert Product.objects.count() == len(catalog)


def test_the_database_refuses_a_lookalike_too(org, catalog):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.create(organization=org, sku=FULL_WIDTH, name="Impostor")


def test_the_product_filter_reads_the_sku_the_same_way(shop, catalog):
    response = shop.get("/api/v1/products", {"sku": DECOMPOSED})
    assert [row["id"] for row in response.json()["results"]] == [str(catalog[COMPOSED].pk)]


# --- stock, orders and mappings ----------------------------------------------------------------------------


def test_a_stock_push_finds_the_product_under_another_form(
    api_client, catalog, warehouse, warehouse_integration
):
    warehouse_integration.__class__.objects.filter(pk=warehouse_integration.pk).update(flow_inventory_in=True)
    tpl = api_client(
        key_services.issue_key(
            kind=KeyKind.INTEGRATION, name="3pl", integration=warehouse_integration, grants=grants.GRANTS
        )
    )
    body = {
        "location": str(warehouse.pk),
        "items": [{"sku": DECOMPOSED, "on_hand": 7}, {"sku": "sku\u200b1", "on_hand": 2}],
    }

    response = post(tpl, "/api/v1/inventory", body)

    assert response.json() == {"updated": 2, "errors": []}
    assert InventoryLevel.objects.get(product=catalog[COMPOSED], location=warehouse).on_hand == 7
    assert InventoryLevel.objects.get(product=catalog["sku1"], location=warehouse).on_hand == 2


def test_an_order_line_maps_to_the_product_under_another_form(
    shop, catalog, integration, standard_method, order_body
):
    order_body["lines"] = [{"sku": DECOMPOSED, "quantity": 1, "unit_price": "1.00"}]

    response = post(shop, "/api/v1/orders", order_body)

    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["id"])
    assert order.status != OrderStatus.ON_HOLD, order.hold_reason
    assert order.lines.get().product == catalog[COMPOSED]
    assert response.json()["lines"][0]["sku"] == DECOMPOSED  # echoed as the channel sent it


def test_a_mapping_is_stored_normalised_and_found_under_another_form(
    shop, catalog, integration, standard_method, order_body
):
    mapping = SkuMapping.objects.create(
        integration=integration, external_sku="SHOP-\u00e9\u200b", product=catalog["fit-1"]
    )
    assert mapping.external_sku == "SHOP-\u00e9"
    order_body["lines"] = [{"sku": "SHOP-e\u0301", "quantity": 1, "unit_price": "1.00"}]

    response = post(shop, "/api/v1/orders", order_body)

    assert Order.objects.get(pk=response.json()["id"]).lines.get().product == catalog["fit-1"]


# --- the admin ----------------------------------------------------------------------------------------------


def test_the_admin_add_form_refuses_a_lookalike(admin_client_for, org_admin, org, catalog):
    response = admin_client_for(org_admin).post(
        "/admin/inventory/product/add/",
        {"organization": org.pk, "sku": FULL_WIDTH, "name": "Impostor", "active": "on"},
    )

    assert response.status_code == 200
    assert "SKU1" in str(response.context["adminform"].form.errors["sku"])
    assert Product.objects.count() == len(catalog)


def _import(client, org, resource, text):
    upload = io.BytesIO(text.encode())
    upload.name = "import.csv"
    return client.post(
        "/admin/inventory/product/import/",
        {"organization": org.pk, "resource": resource, "format": 0, "import_file": upload},
    )


def test_a_csv_import_refuses_a_lookalike_and_updates_the_same_sku(admin_client_for, org_admin, org, catalog):
    client = admin_client_for(org_admin)

    response = _import(client, org, 0, f"sku,name\n{FULL_WIDTH},Impostor\n{DECOMPOSED},Renamed\n")

    assert response.status_code == 200
    result = response.context["result"]
    assert result.has_validation_errors()
    errors = [str(row.error) for row in result.invalid_rows]
    assert any("SKU1" in error for error in errors), errors
    # The decomposed row is the existing product, not a new one.
    assert [row.import_type for row in result.valid_rows()] == ["update"]


def test_a_stock_csv_finds_the_product_under_another_form(
    admin_client_for, org_admin, org, catalog, warehouse
):
    client = admin_client_for(org_admin)
    upload = io.BytesIO(f"sku,location,on_hand\n{DECOMPOSED},{warehouse.name},4\n".encode())
    upload.name = "stock.csv"

    response = client.post(
        "/admin/inventory/inventorylevel/import/",
        {"organization": org.pk, "resource": 0, "format": 0, "import_file": upload},
    )

    assert response.status_code == 200
    assert [row.import_type for row in response.context["result"].valid_rows()] == ["new"]


# --- existing data ------------------------------------------------------------------------------------------


def test_the_migration_normalises_existing_skus_and_leaves_collisions(org, caplog):
    migration = importlib.import_module("inventory.migrations.0005_sku_normalisation")
    # Rows as they could be before: written straight to the table, as no code path writes them now.
    plain = Product.objects.create(organization=org, sku="plain-1", name="p")
    decomposed = Product.objects.create(organization=org, sku="x-d", name="d")
    twin_composed = Product.objects.create(organization=org, sku="twin-\u00e9", name="t1")
    twin_decomposed = Product.objects.create(organization=org, sku="y-t", name="t2")
    wide = Product.objects.create(organization=org, sku="y-w", name="w")
    Product.objects.filter(pk=decomposed.pk).update(sku=DECOMPOSED, sku_key=None)
    Product.objects.filter(pk=twin_decomposed.pk).update(sku="twin-e\u0301", sku_key=None)
    Product.objects.filter(pk=wide.pk).update(sku="ＰＬＡＩＮ-1", sku_key=None)
    Product.objects.filter(pk=plain.pk).update(sku="PLAIN-1", sku_key=None)

    migration.normalise_skus(registry, None)

    def row(product):
        product.refresh_from_db()
        return product.sku, product.sku_key

    assert row(decomposed) == (COMPOSED, COMPOSED)
    assert row(twin_composed) == ("twin-\u00e9", "twin-\u00e9")
    # Its normal form is another product's SKU: left as it was, and logged.
    assert row(twin_decomposed) == ("twin-e\u0301", None)
    # The first of two look-alikes keeps the key, the other is left without one, and logged.
    assert row(plain) == ("PLAIN-1", "PLAIN-1")
    assert row(wide) == ("ＰＬＡＩＮ-1", None)
    assert "twin-e\u0301" in caplog.text and "ＰＬＡＩＮ-1" in caplog.text
