"""
DELETE /products/{id} archives (issue 16, item 6): kept and readable by id, hidden from the list unless asked
for, product.deleted recorded, stock pushes for it refused per row; DELETE /locations/{id} deactivates.
Refusals (409, 404, 403) change nothing.
"""

import json

from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations.models import OutboxEvent, WebhookDelivery
from integrations.webhooks import outbox
from inventory.models import InventoryLevel, Location
from orders import services as order_services
from tests.api.helpers import assert_error
from tests.fixtures.deliveries import make_subscription
from tests.inventory.helpers import switch
from tokens import issuing as key_services
from tokens.choices import KeyKind


def deleted_events(product):
    return OutboxEvent.objects.filter(
        type="product.deleted", object_type="product", object_id=str(product.pk)
    )


def test_delete_archives_the_product_keeps_it_readable_and_emits_product_deleted(erp_client, erp, products):
    mug = products["MUG"]

    response = erp_client.delete(f"/api/v1/products/{mug.pk}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["sku"]) == (str(mug.pk), "MUG")
    assert body["archived_at"] is not None and body["archived_at"].endswith("Z")
    mug.refresh_from_db()
    assert mug.archived_at is not None and mug.active  # kept, with its SKU: archived, not discontinued
    detail = erp_client.get(f"/api/v1/products/{mug.pk}")
    assert detail.status_code == 200 and detail.json()["archived_at"] == body["archived_at"]
    (event,) = deleted_events(mug)
    assert event.integration_id == erp.pk
    # A subscriber's body is the product as GET answers it: archived_at included.
    rendered = outbox.render("product", erp, [str(mug.pk)])
    assert rendered[str(mug.pk)]["archived_at"] == body["archived_at"]


def test_archiving_an_archived_product_is_409_and_changes_nothing(erp_client, products):
    mug = products["MUG"]
    first = erp_client.delete(f"/api/v1/products/{mug.pk}")
    mug.refresh_from_db()
    archived_at, updated_at = mug.archived_at, mug.updated_at

    again = erp_client.delete(f"/api/v1/products/{mug.pk}")

    assert first.status_code == 200
    assert_error(again, 409, "conflict")
    assert again.json()["error"]["details"] == {"sku": ["MUG"]}
    mug.refresh_from_db()
    assert (mug.archived_at, mug.updated_at) == (archived_at, updated_at)
    assert deleted_events(mug).count() == 1


def test_another_organizations_product_is_404_and_unchanged(erp_client, globex_product):
    response = erp_client.delete(f"/api/v1/products/{globex_product.pk}")
    missing = erp_client.delete("/api/v1/products/999999")

    assert_error(response, 404, "not_found")
    assert_error(missing, 404, "not_found")
    globex_product.refresh_from_db()
    assert globex_product.archived_at is None
    assert not deleted_events(globex_product).exists()


def test_archiving_needs_products_write_and_the_products_in_flow(channel_client, erp_client, erp, products):
    mug = products["MUG"]

    no_grant = channel_client.delete(f"/api/v1/products/{mug.pk}")
    switch(erp, "products_in", False)
    flow_off = erp_client.delete(f"/api/v1/products/{mug.pk}")

    assert_error(no_grant, 403, "missing_grant")
    assert_error(flow_off, 403, "workflow_disabled")
    mug.refresh_from_db()
    assert mug.archived_at is None and not deleted_events(mug).exists()


def test_the_org_key_archives_too(org_client, products):
    response = org_client.delete(f"/api/v1/products/{products['TSHIRT-S'].pk}")

    assert response.status_code == 200, response.content
    assert deleted_events(products["TSHIRT-S"]).get().integration_id is None


def test_archived_products_are_left_out_of_the_list_unless_asked_for(
    channel_client, erp_client, products, django_assert_max_num_queries
):
    erp_client.delete(f"/api/v1/products/{products['MUG'].pk}")

    default = channel_client.get("/api/v1/products").json()["results"]
    with django_assert_max_num_queries(6):
        everything = channel_client.get("/api/v1/products", {"include_archived": "true"})
    without = channel_client.get("/api/v1/products", {"include_archived": "false"}).json()["results"]
    by_sku = channel_client.get("/api/v1/products", {"sku": "MUG"}).json()["results"]
    bad = channel_client.get("/api/v1/products", {"include_archived": "maybe"})

    assert {row["sku"] for row in default} == {row["sku"] for row in without} == {"TSHIRT-S", "TSHIRT-M"}
    assert {row["sku"] for row in everything.json()["results"]} == {"TSHIRT-S", "TSHIRT-M", "MUG"}
    assert by_sku == []
    assert_error(bad, 400, "validation_error")


def test_a_stock_push_naming_an_archived_sku_refuses_that_row_only(tpl_client, warehouse, stock, products):
    products["MUG"].archived_at = products["MUG"].updated_at
    products["MUG"].save(update_fields=["archived_at"])
    events_before = OutboxEvent.objects.filter(type="inventory.updated").count()

    response = tpl_client.post(
        "/api/v1/inventory",
        {
            "location": str(warehouse.pk),
            "items": [{"sku": "MUG", "on_hand": 99}, {"sku": "TSHIRT-S", "on_hand": 4}],
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 1, "errors": [{"sku": "MUG", "code": "archived_sku"}]}
    assert InventoryLevel.objects.get(product=products["MUG"], location=warehouse).on_hand == 10
    assert InventoryLevel.objects.get(product=products["TSHIRT-S"], location=warehouse).on_hand == 4
    assert OutboxEvent.objects.filter(type="inventory.updated").count() == events_before + 1
    assert not SyncException.objects.filter(kind=ExceptionKind.UNKNOWN_SKU).exists()  # known, refused


def test_a_push_of_only_archived_skus_changes_nothing(tpl_client, warehouse, stock, products):
    products["MUG"].archived_at = products["MUG"].updated_at
    products["MUG"].save(update_fields=["archived_at"])

    response = tpl_client.post(
        "/api/v1/inventory",
        {"location": str(warehouse.pk), "items": [{"sku": "MUG", "on_hand": 0}]},
        format="json",
    )

    assert response.json() == {"updated": 0, "errors": [{"sku": "MUG", "code": "archived_sku"}]}
    assert InventoryLevel.objects.get(product=products["MUG"], location=warehouse).on_hand == 10
    assert not OutboxEvent.objects.filter(type="inventory.updated").exists()


# --- locations ----------------------------------------------------------------------------------------


def test_delete_deactivates_the_location_and_again_is_409(tpl_client, warehouse, stock):
    response = tpl_client.delete(f"/api/v1/locations/{warehouse.pk}")
    again = tpl_client.delete(f"/api/v1/locations/{warehouse.pk}")

    assert response.status_code == 200, response.content
    assert response.json()["active"] is False
    assert_error(again, 409, "conflict")
    warehouse.refresh_from_db()
    assert not warehouse.active
    assert InventoryLevel.objects.filter(location=warehouse).count() == 3  # its stock rows are kept
    assert tpl_client.get(f"/api/v1/locations/{warehouse.pk}").json()["active"] is False


def test_a_location_with_open_shipping_requests_is_not_deactivated(
    tpl_client, warehouse, stock, ingest, order_body, standard_method
):
    order, _ = ingest(order_body)
    request = order_services.create_shipping_request(order, warehouse)

    response = tpl_client.delete(f"/api/v1/locations/{warehouse.pk}")

    assert_error(response, 409, "conflict")
    assert response.json()["error"]["details"] == {"shipping_requests": [str(request.pk)]}
    warehouse.refresh_from_db()
    assert warehouse.active


def test_another_integrations_or_organizations_location_is_404(
    tpl_client, org_client, org, warehouse, globex_location
):
    hub = Location.objects.create(organization=org, name="Org hub")  # managed by no integration

    unmanaged = tpl_client.delete(f"/api/v1/locations/{hub.pk}")
    other_org = org_client.delete(f"/api/v1/locations/{globex_location.pk}")

    assert_error(unmanaged, 404, "not_found")
    assert_error(other_org, 404, "not_found")
    assert Location.objects.filter(pk__in=[hub.pk, globex_location.pk], active=True).count() == 2


def test_deactivating_needs_locations_write(api_client, issue_key, org, org_admin, warehouse):
    reader = api_client(
        issue_key(
            kind=KeyKind.ORG, name="Reader", organization=org, user=org_admin, grants=["locations:read"]
        )
    )

    response = reader.delete(f"/api/v1/locations/{warehouse.pk}")

    assert_error(response, 403, "missing_grant")
    warehouse.refresh_from_db()
    assert warehouse.active


# --- what subscribers and channels are told ----------------------------------------------------------


def test_product_deleted_reaches_a_subscriber_with_the_archived_product(erp_client, integration, products):
    key_services.issue_key(kind=KeyKind.INTEGRATION, name="Shop key", integration=integration)
    make_subscription(integration, events=["product.deleted"])

    erp_client.delete(f"/api/v1/products/{products['MUG'].pk}")
    while outbox.dispatch_outbox()[0]:
        pass

    (delivery,) = WebhookDelivery.objects.filter(integration=integration)
    body = json.loads(delivery.body)
    assert body["type"] == "product.deleted"
    assert (body["data"]["sku"], body["data"]["archived_at"] is not None) == ("MUG", True)


def test_subscribing_to_product_deleted_needs_products_read(api_client, issue_key, integration):
    key = issue_key(
        kind=KeyKind.INTEGRATION, name="Hooks only", integration=integration, grants=["webhooks:write"]
    )

    response = api_client(key).post(
        "/api/v1/webhooks",
        {"url": "https://shop.example.test/hooks", "events": ["product.deleted"]},
        format="json",
    )

    assert_error(response, 403, "missing_grant")
    assert response.json()["error"]["details"] == {"required": ["products:read"]}


def test_the_channel_reads_an_archived_product_as_zero_available(channel_client, erp_client, stock, products):
    erp_client.delete(f"/api/v1/products/{products['MUG'].pk}")

    rows = channel_client.get("/api/v1/availability").json()["results"]

    assert {row["sku"]: row["available"] for row in rows} == {"MUG": 0, "TSHIRT-M": 10, "TSHIRT-S": 10}


def test_upserting_an_archived_sku_updates_it_but_keeps_it_archived(erp_client, products):
    erp_client.delete(f"/api/v1/products/{products['MUG'].pk}")

    again = erp_client.post("/api/v1/products", {"sku": "MUG", "name": "Mug, blue"}, format="json")

    assert again.status_code == 200, again.content
    assert again.json()["name"] == "Mug, blue" and again.json()["archived_at"] is not None
