"""The catalog and stock admin: scoping, forms that keep one organization, CSV import/export by SKU."""

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations import configuration
from integrations.models import OutboxEvent
from inventory.models import (
    ChannelInventory,
    ChannelLocation,
    InventoryBuffer,
    InventoryLevel,
    Location,
    Product,
    SkuMapping,
)
from organizations.choices import Role
from tests.fixtures.organizations import join


def url(model, view="changelist", *args):
    return reverse(f"admin:inventory_{model._meta.model_name}_{view}", args=args)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def csv_file(text, name="data.csv"):
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def import_csv(client, model, org, text):
    """Upload, then confirm: the two steps of django-import-export. Returns (preview, confirmation or None)."""
    preview = client.post(
        url(model, "import"),
        {"organization": org.pk, "format": "0", "resource": "0", "import_file": csv_file(text)},
    )
    confirm = preview.context.get("confirm_form") if preview.context else None
    if confirm is None:
        return preview, None
    data = {name: confirm.initial.get(name, "") for name in confirm.fields}
    return preview, client.post(url(model, "process_import"), data)


def export_csv(client, model, fields):
    prefix = f"{'product' if model is Product else 'stock'}resource_"
    data = {"format": "0", "resource": "0", **{prefix + f: "on" for f in fields}}
    response = client.post(url(model, "export"), data)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


@pytest.fixture
def acme_client(admin_client_for, org_admin):
    return admin_client_for(org_admin)


@pytest.fixture
def acme(org, integration, products, warehouse, stock):
    """One row of every inventory model in Acme."""
    return {
        Product: products["MUG"],
        SkuMapping: SkuMapping.objects.create(
            integration=integration, external_sku="shop-mug", product=products["MUG"]
        ),
        Location: warehouse,
        InventoryLevel: stock["MUG"],
        InventoryBuffer: InventoryBuffer.objects.create(
            organization=org, product=products["MUG"], quantity=2
        ),
        ChannelLocation: ChannelLocation.objects.create(channel=integration, location=warehouse),
        ChannelInventory: ChannelInventory.objects.create(
            channel=integration, product=products["MUG"], available=8
        ),
    }


@pytest.fixture
def globex(other_org, other_integration, tpl_connector):
    """The same in Globex, with its own 3PL."""
    tpl = configuration.create_integration(other_org, tpl_connector, "Globex 3PL")
    product = Product.objects.create(organization=other_org, sku="MUG", name="Globex mug", price="99.00")
    location = Location.objects.create(organization=other_org, name="Globex DC", managed_by=tpl)
    return {
        Product: product,
        SkuMapping: SkuMapping.objects.create(
            integration=other_integration, external_sku="g-mug", product=product
        ),
        Location: location,
        InventoryLevel: InventoryLevel.objects.create(product=product, location=location, on_hand=40),
        InventoryBuffer: InventoryBuffer.objects.create(
            organization=other_org, location=location, quantity=1
        ),
        ChannelLocation: ChannelLocation.objects.create(channel=other_integration, location=location),
        ChannelInventory: ChannelInventory.objects.create(
            channel=other_integration, product=product, available=39
        ),
    }


# --- scoping --------------------------------------------------------------------------------------------

MODELS = [Product, SkuMapping, Location, InventoryLevel, InventoryBuffer, ChannelLocation, ChannelInventory]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_shows_only_own_rows_and_other_orgs_row_is_404(acme_client, acme, globex, model):
    page = acme_client.get(url(model))

    assert page.status_code == 200
    shown = {row.pk for row in page.context["cl"].result_list}
    assert acme[model].pk in shown and globex[model].pk not in shown
    assert b"Globex" not in page.content  # neither rows nor filter choices name Globex's things
    assert acme_client.get(url(model, "change", globex[model].pk)).status_code == 404


def test_channel_inventory_is_read_only(acme_client, acme):
    row = acme[ChannelInventory]

    assert acme_client.get(url(ChannelInventory, "add")).status_code == 403
    assert acme_client.post(url(ChannelInventory, "change", row.pk), {"available": 1000}).status_code == 403
    assert ChannelInventory.objects.get(pk=row.pk).available == 8


def test_level_filters_by_location_and_its_3pl(acme_client, acme, globex, warehouse_integration):
    page = acme_client.get(url(InventoryLevel), {"location__managed_by__id__exact": warehouse_integration.pk})

    assert page.context["cl"].result_count == 3  # the stock fixture: three SKUs at East
    assert b"Acme 3PL" in page.content


def test_location_list_badges_active(acme_client, acme):
    html = acme_client.get(url(Location)).content.decode()

    assert 'class="sy-badge sy-badge-green" data-status="True">Active<' in html


@pytest.mark.parametrize("count", [3, 30])
def test_product_and_level_changelists_query_count_is_bounded(
    acme_client, org, warehouse, count, django_assert_max_num_queries
):
    products = Product.objects.bulk_create(
        [Product(organization=org, sku=f"SKU-{i:03d}", name=f"Thing {i}") for i in range(count)]
    )
    InventoryLevel.objects.bulk_create(
        [InventoryLevel(product=p, location=warehouse, on_hand=1) for p in products]
    )

    with django_assert_max_num_queries(8):
        products_page = acme_client.get(url(Product))
    with django_assert_max_num_queries(10):
        levels_page = acme_client.get(url(InventoryLevel))

    assert products_page.context["cl"].result_count == count
    assert levels_page.context["cl"].result_count == count


# --- forms keep one organization; saves go through the services -------------------------------------------


def test_sku_mapping_refuses_another_orgs_product(
    admin_client_for, org_admin, other_org, integration, globex
):
    join(org_admin, other_org, Role.ADMIN)  # an admin of both: Globex's product is among the choices
    client = admin_client_for(org_admin)

    response = client.post(
        url(SkuMapping, "add"),
        {"integration": integration.pk, "external_sku": "X", "product": globex[Product].pk},
    )

    assert response.status_code == 200
    assert "must all belong to the same organization" in response.content.decode()
    assert not SkuMapping.objects.filter(external_sku="X").exists()


def test_sku_mapping_product_choices_are_scoped(acme_client, integration, globex):
    response = acme_client.post(
        url(SkuMapping, "add"),
        {"integration": integration.pk, "external_sku": "X", "product": globex[Product].pk},
    )

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_product_added_by_hand_emits_product_created(acme_client, org):
    response = acme_client.post(
        url(Product, "add"), {"organization": org.pk, "sku": "NEW-1", "name": "New thing", "active": "on"}
    )

    assert response.status_code == 302
    product = Product.objects.get(organization=org, sku="NEW-1")
    assert OutboxEvent.objects.filter(type="product.created", object_id=str(product.pk)).exists()


def test_stock_edited_by_hand_goes_through_set_stock(acme_client, acme):
    level = acme[InventoryLevel]

    response = acme_client.post(url(InventoryLevel, "change", level.pk), {"on_hand": 4})

    assert response.status_code == 302
    level.refresh_from_db()
    assert level.on_hand == 4
    event = OutboxEvent.objects.get(type="inventory.updated")
    assert event.payload["sku"] == "MUG" and event.payload["previous_on_hand"] == 10


# --- product CSV ----------------------------------------------------------------------------------------


def test_product_export_contains_only_own_products(acme_client, acme, globex):
    text = export_csv(acme_client, Product, ["sku", "name", "price", "active"])

    lines = text.strip().splitlines()
    assert lines[0] == "sku,name,price,active"
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["MUG", "TSHIRT-M", "TSHIRT-S"]
    assert "Globex" not in text and "99.00" not in text


def test_product_import_creates_and_updates_by_sku_in_own_org(acme_client, org, acme, globex):
    csv = "sku,name,price,active\nMUG,Big mug,9.50,1\nCAP,Cap,15.00,1\nTSHIRT-S,T-shirt S,12.50,1\n"

    preview, done = import_csv(acme_client, Product, org, csv)

    assert preview.status_code == 200 and done is not None and done.status_code == 302
    assert Product.objects.get(organization=org, sku="MUG").name == "Big mug"
    assert Product.objects.get(organization=org, sku="CAP").price == 15
    assert (
        globex[Product].name == Product.objects.get(pk=globex[Product].pk).name == "Globex mug"
    )  # untouched
    assert ("success", "Import finished: 1 new, 1 updated, 0 deleted and 1 skipped products.") in messages_of(
        done
    )
    types = set(OutboxEvent.objects.filter(object_type="product").values_list("type", flat=True))
    assert types == {"product.created", "product.updated"}


def test_product_import_cannot_target_another_org(acme_client, other_org, globex):
    preview, done = import_csv(acme_client, Product, other_org, "sku,name\nEVIL,Planted\n")

    assert done is None
    assert "Select a valid choice" in preview.content.decode()
    assert not Product.objects.filter(sku="EVIL").exists()


def test_product_import_confirmation_cannot_be_redirected_to_another_org(acme_client, org, other_org):
    preview = acme_client.post(
        url(Product, "import"),
        {
            "organization": org.pk,
            "format": "0",
            "resource": "0",
            "import_file": csv_file("sku,name\nEVIL,Planted\n"),
        },
    )
    confirm = preview.context["confirm_form"]
    data = {name: confirm.initial.get(name, "") for name in confirm.fields}
    data["organization"] = other_org.pk  # tampered hidden field

    response = acme_client.post(url(Product, "process_import"), data)

    assert response.status_code == 200  # the confirmation form is re-shown with its error
    assert not Product.objects.filter(sku="EVIL").exists()


def test_admin_of_two_orgs_imports_into_the_chosen_one(admin_client_for, org_admin, org, other_org, globex):
    join(org_admin, other_org, Role.ADMIN)
    client = admin_client_for(org_admin)

    _, done = import_csv(client, Product, other_org, "sku,name\nMUG,Renamed Globex mug\nBOLT,Bolt\n")

    assert done.status_code == 302
    assert Product.objects.get(pk=globex[Product].pk).name == "Renamed Globex mug"
    assert set(Product.objects.filter(sku__in=["MUG", "BOLT"]).values_list("organization_id", flat=True)) == {
        other_org.pk
    }


def test_member_cannot_import(admin_client_for, member):
    assert admin_client_for(member).get(url(InventoryLevel, "import")).status_code == 403


# --- stock CSV ------------------------------------------------------------------------------------------


def test_stock_export_is_by_sku_and_location(acme_client, acme, globex):
    text = export_csv(acme_client, InventoryLevel, ["sku", "location", "on_hand", "committed", "available"])

    lines = text.strip().splitlines()
    assert lines[0] == "sku,location,on_hand,committed,available"
    assert "MUG,East,10,0,10" in lines
    assert "Globex" not in text


def test_stock_import_sets_on_hand_and_reports_unknown_skus(acme_client, org, acme):
    csv = "sku,location,on_hand\nMUG,East,7\nTSHIRT-S,East,10\nNOPE,East,3\n"

    preview, done = import_csv(acme_client, InventoryLevel, org, csv)

    assert 'id="sy-unknown-skus"' in preview.content.decode() and "NOPE" in preview.content.decode()
    assert done.status_code == 302
    assert InventoryLevel.objects.get(pk=acme[InventoryLevel].pk).on_hand == 7
    assert ("warning", "1 unknown SKU(s) skipped and raised as an exception: NOPE") in messages_of(done)
    exception = SyncException.objects.get(organization=org, kind=ExceptionKind.UNKNOWN_SKU)
    assert exception.data == {"skus": ["NOPE"]}
    events = OutboxEvent.objects.filter(type="inventory.updated")
    assert [e.payload["sku"] for e in events] == ["MUG"]  # unchanged TSHIRT-S is not published


def test_stock_import_creates_a_level_at_another_location(acme_client, org, acme):
    west = Location.objects.create(organization=org, name="West")

    _, done = import_csv(acme_client, InventoryLevel, org, "sku,location,on_hand\nMUG,West,5\n")

    assert done.status_code == 302
    assert InventoryLevel.objects.get(product=acme[Product], location=west).on_hand == 5


def test_stock_import_refuses_unknown_location_and_bad_counts(acme_client, org, acme, globex):
    csv = "sku,location,on_hand\nMUG,Globex DC,5\nMUG,East,-1\n"

    preview, done = import_csv(acme_client, InventoryLevel, org, csv)

    html = preview.content.decode()
    assert done is None
    assert "No location named" in html and "A whole number, 0 or more." in html
    assert InventoryLevel.objects.get(pk=globex[InventoryLevel].pk).on_hand == 40
    assert InventoryLevel.objects.get(pk=acme[InventoryLevel].pk).on_hand == 10


def test_exported_csv_imports_back_unchanged(acme_client, org, acme):
    products = export_csv(acme_client, Product, ["sku", "name", "barcode", "price", "weight", "active"])
    stock = export_csv(acme_client, InventoryLevel, ["sku", "location", "on_hand", "committed", "available"])

    _, products_done = import_csv(acme_client, Product, org, products)
    _, stock_done = import_csv(acme_client, InventoryLevel, org, stock)

    assert ("success", "Import finished: 0 new, 0 updated, 0 deleted and 3 skipped products.") in messages_of(
        products_done
    )
    assert "0 new, 0 updated, 0 deleted and 3 skipped" in messages_of(stock_done)[0][1]
    assert not OutboxEvent.objects.filter(object_type__in=["product", "inventory_level"]).exists()
