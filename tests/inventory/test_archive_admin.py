"""The admin archives and restores products and deactivates and reactivates locations (issue 16, item 6)."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from integrations.models import OutboxEvent
from inventory.models import Location, Product
from orders import services as order_services
from organizations.choices import Role
from tests.fixtures.organizations import join, make_user

pytestmark = pytest.mark.django_db


def url(model, view, *args):
    return reverse(f"admin:inventory_{model._meta.model_name}_{view}", args=args)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def acme_client(admin_client_for, org_admin):
    return admin_client_for(org_admin)


def test_archive_and_restore_buttons(acme_client, products):
    mug = products["MUG"]
    page = acme_client.get(url(Product, "change", mug.pk)).content.decode()
    assert 'id="sy-archive"' in page and 'id="sy-restore"' not in page

    archived = acme_client.post(url(Product, "archive", mug.pk))

    assert archived.status_code == 302
    mug.refresh_from_db()
    assert mug.archived_at is not None
    assert OutboxEvent.objects.filter(type="product.deleted", object_id=str(mug.pk)).count() == 1
    page = acme_client.get(url(Product, "change", mug.pk)).content.decode()
    assert 'id="sy-restore"' in page and 'id="sy-archive"' not in page
    assert 'data-status="archived">Archived<' in page

    restored = acme_client.post(url(Product, "restore", mug.pk))

    assert restored.status_code == 302
    mug.refresh_from_db()
    assert mug.archived_at is None


def test_archiving_an_archived_product_says_so_and_changes_nothing(acme_client, products):
    mug = products["MUG"]
    acme_client.post(url(Product, "archive", mug.pk))
    mug.refresh_from_db()
    archived_at = mug.archived_at

    again = acme_client.post(url(Product, "archive", mug.pk), follow=True)

    assert ("error", "Product MUG is already archived.") in messages_of(again)
    mug.refresh_from_db()
    assert mug.archived_at == archived_at
    assert OutboxEvent.objects.filter(type="product.deleted").count() == 1


def test_the_actions_are_post_only_scoped_and_need_change(
    acme_client, admin_client_for, org, other_org, products, warehouse
):
    globex_mug = Product.objects.create(organization=other_org, sku="MUG", name="Globex mug")
    member = admin_client_for(join(make_user("bob"), org, Role.MEMBER))

    assert acme_client.get(url(Product, "archive", products["MUG"].pk)).status_code == 405
    assert acme_client.post(url(Product, "archive", globex_mug.pk)).status_code == 404
    assert acme_client.post(url(Location, "deactivate", 999999)).status_code == 404
    refused = member.post(url(Product, "archive", products["MUG"].pk))
    assert refused.status_code in (403, 404)
    assert not Product.objects.filter(archived_at__isnull=False).exists()


def test_changelist_badges_and_filters_archived(acme_client, products, django_assert_max_num_queries):
    acme_client.post(url(Product, "archive", products["MUG"].pk))

    with django_assert_max_num_queries(8):
        page = acme_client.get(url(Product, "changelist"))
    archived = acme_client.get(url(Product, "changelist"), {"archived": "yes"})
    current = acme_client.get(url(Product, "changelist"), {"archived": "no"})

    assert page.content.decode().count('data-status="archived">Archived<') == 1
    assert [p.sku for p in archived.context["cl"].result_list] == ["MUG"]
    assert {p.sku for p in current.context["cl"].result_list} == {"TSHIRT-S", "TSHIRT-M"}


def test_bulk_archive(acme_client, products):
    ids = [products["MUG"].pk, products["TSHIRT-S"].pk]

    acme_client.post(
        url(Product, "changelist"), {"action": "archive_product_selected", "_selected_action": ids}
    )

    assert set(Product.objects.filter(archived_at__isnull=False).values_list("pk", flat=True)) == set(ids)


def test_deactivate_and_reactivate_a_location(acme_client, warehouse):
    page = acme_client.get(url(Location, "change", warehouse.pk)).content.decode()
    assert 'id="sy-deactivate"' in page

    acme_client.post(url(Location, "deactivate", warehouse.pk))
    warehouse.refresh_from_db()
    assert not warehouse.active
    assert 'id="sy-reactivate"' in acme_client.get(url(Location, "change", warehouse.pk)).content.decode()

    acme_client.post(url(Location, "reactivate", warehouse.pk))
    warehouse.refresh_from_db()
    assert warehouse.active


def test_a_location_with_open_requests_is_not_deactivated(
    acme_client, warehouse, stock, ingest, order_body, standard_method
):
    order, _ = ingest(order_body)
    order_services.create_shipping_request(order, warehouse)

    response = acme_client.post(url(Location, "deactivate", warehouse.pk), follow=True)

    assert any(level == "error" and "open shipping request" in text for level, text in messages_of(response))
    warehouse.refresh_from_db()
    assert warehouse.active


def test_active_is_not_edited_in_the_form(acme_client, org, warehouse):
    # Switching off goes through the button (and its open-requests check), not the form.
    form = acme_client.get(url(Location, "change", warehouse.pk)).context["adminform"].form

    assert "active" not in form.fields
    assert Location.objects.get(pk=warehouse.pk).active


def test_bulk_deactivate_reports_the_refused_ones(acme_client, org, warehouse, west):
    acme_client.post(url(Location, "deactivate", west.pk))

    response = acme_client.post(
        url(Location, "changelist"),
        {"action": "deactivate_selected", "_selected_action": [warehouse.pk, west.pk]},
        follow=True,
    )

    assert ("success", "Deactivated 1 location.") in messages_of(response)
    assert ("warning", "Location West is already inactive.") in messages_of(response)
    assert not Location.objects.filter(pk__in=[warehouse.pk, west.pk], active=True).exists()
