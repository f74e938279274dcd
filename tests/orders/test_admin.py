"""The orders admin: scoped changelists, the order page, bulk and per-order hold / release / cancel."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from guardian.shortcuts import assign_perm

from integrations import configuration, lifecycle
from integrations.models import OutboxEvent
from inventory.models import InventoryLevel, Location, Product
from orders import services
from orders.choices import OrderStatus
from orders.models import (
    Fulfillment,
    Order,
    OrderLine,
    ShippingMethod,
    ShippingMethodMapping,
    ShippingRequest,
)

TRACKING = "1Z999AA10123456784"
ORDERS = reverse("admin:orders_order_changelist")


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def changelist_url(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def action(client, name, orders):
    return client.post(ORDERS, {"action": name, "_selected_action": [o.pk for o in orders]})


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def ship(order, location, products, fulfiller, tracking=TRACKING):
    request = services.create_shipping_request(order, location)
    lines = [(line.product_id, line.quantity) for line in order.lines.all()]
    services.create_fulfillment(
        request,
        {"external_id": f"F-{order.pk}", "carrier": "UPS", "tracking_number": tracking, "lines": lines},
        integration=fulfiller,
    )
    return request


@pytest.fixture
def ready_order(ingest, order_body, stock, standard_method):
    order, _ = ingest(order_body)
    assert order.status == OrderStatus.READY
    return order


@pytest.fixture
def shipped_order(ready_order, warehouse, products, warehouse_integration):
    ship(ready_order, warehouse, products, warehouse_integration)
    ready_order.refresh_from_db()
    assert ready_order.status == OrderStatus.FULFILLED
    return ready_order


@pytest.fixture
def globex(other_org, other_integration, tpl_connector):
    """Globex's own routed and shipped order, its 3PL, location and shipping method."""
    tpl = lifecycle.handshake(configuration.create_integration(other_org, tpl_connector, "Globex 3PL"))
    product = Product.objects.create(organization=other_org, sku="WIDGET", name="Globex widget")
    location = Location.objects.create(organization=other_org, name="Globex DC", managed_by=tpl)
    InventoryLevel.objects.create(product=product, location=location, on_hand=5)
    method = ShippingMethod.objects.create(organization=other_org, code="standard", name="Globex standard")
    mapping = ShippingMethodMapping.objects.create(
        integration=other_integration, external_code="G-STD", method=method
    )
    body = {
        "external_id": "G-1",
        "number": "#G1",
        "shipping_method": "G-STD",
        "lines": [{"sku": "WIDGET", "quantity": 1}],
    }
    order, _ = services.ingest_order(other_integration, body)
    order = services.make_ready(order)
    request = ship(order, location, None, tpl, tracking="GLOBEX-TRACK-1")
    return {
        "order": order,
        "request": request,
        "fulfillment": request.fulfillments.get(),
        "method": method,
        "mapping": mapping,
    }


@pytest.fixture
def acme_client(admin_client_for, org_admin):
    return admin_client_for(org_admin)


# --- scoping --------------------------------------------------------------------------------------------


def test_order_changelist_lists_only_own_orders(acme_client, ready_order, globex):
    page = acme_client.get(ORDERS)

    assert page.status_code == 200
    assert [o.pk for o in page.context["cl"].result_list] == [ready_order.pk]
    assert b"#G1" not in page.content and b"Globex" not in page.content  # nor in the filter choices


@pytest.mark.parametrize("key", ["order", "request", "fulfillment", "method", "mapping"])
def test_other_orgs_rows_are_absent_and_404_by_url(acme_client, shipped_order, globex, key):
    obj = globex[key]

    page = acme_client.get(changelist_url(type(obj)))

    assert page.status_code == 200
    assert obj.pk not in {row.pk for row in page.context["cl"].result_list}
    assert page.context["cl"].result_count >= 1  # Acme's own rows are there
    assert acme_client.get(change_url(obj)).status_code == 404


@pytest.mark.parametrize("suffix", ["hold", "release", "cancel"])
def test_other_orgs_order_buttons_are_404(acme_client, globex, suffix):
    order = globex["order"]

    response = acme_client.post(reverse(f"admin:orders_order_{suffix}", args=[order.pk]))

    assert response.status_code == 404
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FULFILLED


def test_orders_are_neither_added_nor_deleted_here(acme_client, ready_order):
    assert acme_client.get(reverse("admin:orders_order_add")).status_code == 403
    assert acme_client.get(reverse("admin:orders_order_delete", args=[ready_order.pk])).status_code == 403
    assert acme_client.post(change_url(ready_order), {}).status_code == 403  # the page is read-only


def test_member_sees_orders_of_integrations_they_may_view(admin_client_for, member, ready_order, integration):
    client = admin_client_for(member)
    assert client.get(ORDERS).context["cl"].result_count == 0

    assign_perm("integrations.view_integration", member, integration)
    page = admin_client_for(member).get(ORDERS)

    assert [o.pk for o in page.context["cl"].result_list] == [ready_order.pk]


# --- the changelist -------------------------------------------------------------------------------------


def test_search_by_tracking_number_finds_the_order(acme_client, shipped_order, ingest, order_body):
    order_body.update(external_id="1002", number="#1002")
    ingest(order_body)  # another order, not shipped

    page = acme_client.get(ORDERS, {"q": TRACKING[-8:]})

    assert [o.pk for o in page.context["cl"].result_list] == [shipped_order.pk]


def test_search_matching_two_lines_lists_the_order_once(acme_client, ingest, order_body, products):
    order_body["lines"] = [{"sku": "TSHIRT-S", "quantity": 1}, {"sku": "TSHIRT-M", "quantity": 1}]
    order, _ = ingest(order_body)

    page = acme_client.get(ORDERS, {"q": "TSHIRT"})  # both lines match

    assert [o.pk for o in page.context["cl"].result_list] == [order.pk]
    assert page.context["cl"].result_count == 1


def test_filter_by_fulfiller(acme_client, shipped_order, ingest, order_body, warehouse_integration):
    order_body.update(external_id="1002", number="#1002")
    ingest(order_body)

    page = acme_client.get(ORDERS, {"shipping_requests__fulfiller__id__exact": warehouse_integration.pk})

    assert [o.pk for o in page.context["cl"].result_list] == [shipped_order.pk]
    assert b"Acme 3PL" in page.content


def test_status_badge_in_changelist(acme_client, ready_order):
    html = acme_client.get(ORDERS).content.decode()

    assert 'class="sy-badge sy-badge-blue" data-status="ready"' in html


@pytest.mark.parametrize("count", [3, 300])
def test_order_changelist_query_count_is_bounded(
    acme_client, org, integration, products, warehouse, count, django_assert_max_num_queries
):
    # Given `count` orders with lines, some routed to the warehouse's 3PL
    orders = Order.objects.bulk_create(
        [
            Order(
                organization=org,
                source=integration,
                external_id=f"B{i}",
                number=f"#B{i}",
                status=OrderStatus.READY,
                total=Decimal("10.00"),
            )
            for i in range(count)
        ]
    )
    OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=o, line_number=1, product=products["MUG"], sku="MUG", external_sku="MUG", quantity=1
            )
            for o in orders
        ]
    )
    ShippingRequest.objects.bulk_create(
        [
            ShippingRequest(organization=org, order=o, location=warehouse, fulfiller=warehouse.managed_by)
            for o in orders[:3]
        ]
    )

    # When the first page is opened, filtered and searched: then the number of queries does not grow
    with django_assert_max_num_queries(10):
        page = acme_client.get(ORDERS)
    with django_assert_max_num_queries(10):
        filtered = acme_client.get(ORDERS, {"status__exact": "ready", "q": "MUG"})

    assert page.context["cl"].result_count == count
    assert filtered.context["cl"].result_count == count


# --- the order page -------------------------------------------------------------------------------------


def test_order_page_shows_lines_requests_fulfillments_and_history(acme_client, shipped_order):
    page = acme_client.get(change_url(shipped_order))

    html = page.content.decode()
    assert page.status_code == 200
    assert "TSHIRT-S" in html and "MUG" in html  # lines
    assert "2 × TSHIRT-S" in html and "East" in html and "Acme 3PL" in html  # the shipping request
    assert 'data-status="fulfilled"' in html
    assert TRACKING in html and "UPS" in html  # the fulfillment
    assert 'id="sy-order-history"' in html
    for event_type in ("order.created", "shipping_request.created", "fulfillment.created"):
        assert f'data-event="{event_type}"' in html
    events = OutboxEvent.objects.filter(object_type="order", object_id=str(shipped_order.pk))
    assert html.count('data-event="order.') == events.count()
    # newest first
    assert html.index('data-event="fulfillment.created"') < html.index('data-event="order.created"')
    assert "Ada Lovelace" in html and "Springfield" in html
    assert 'id="sy-cancel"' not in html and 'id="sy-hold"' not in html  # fulfilled: nothing to do


def test_order_page_of_a_held_order_shows_the_hold_and_release_button(acme_client, ready_order):
    services.hold(ready_order, "Looks like fraud", until=None)

    html = acme_client.get(change_url(ready_order)).content.decode()

    assert "On hold: Looks like fraud.</p>" in html
    assert 'id="sy-release"' in html and 'id="sy-cancel"' in html and 'id="sy-hold"' not in html


def test_a_hold_reason_ending_in_a_full_stop_is_not_given_a_second(acme_client, ready_order):
    services.hold(ready_order, "Review: order over 500.", until=None)

    html = acme_client.get(change_url(ready_order)).content.decode()

    assert "On hold: Review: order over 500.</p>" in html


# --- actions and buttons --------------------------------------------------------------------------------


def test_bulk_cancel_ignores_other_orgs_orders(acme_client, ready_order, globex, ingest, order_body, stock):
    order_body.update(external_id="1002", number="#1002")
    second, _ = ingest(order_body)

    response = action(acme_client, "cancel_selected", [ready_order, second, globex["order"]])

    assert response.status_code == 302
    assert ("success", "Canceled 2 orders.") in messages_of(response)
    assert set(Order.objects.filter(status=OrderStatus.CANCELED).values_list("pk", flat=True)) == {
        ready_order.pk,
        second.pk,
    }
    assert Order.objects.get(pk=globex["order"].pk).status == OrderStatus.FULFILLED


def test_bulk_hold_then_release_ignore_other_orgs_orders(acme_client, ready_order, globex):
    held = action(acme_client, "hold_selected", [ready_order, globex["order"]])

    ready_order.refresh_from_db()
    assert messages_of(held) == [("success", "Held 1 order.")]  # Globex's is neither held nor mentioned
    assert ready_order.status == OrderStatus.ON_HOLD
    assert ready_order.hold_reason == "Held for review by alice."

    released = action(acme_client, "release_selected", [ready_order, globex["order"]])

    ready_order.refresh_from_db()
    assert messages_of(released)[-1] == ("success", "Released 1 order.")  # earlier ones were never shown
    assert "warning" not in {level for level, _ in messages_of(released)}
    assert ready_order.status == OrderStatus.READY and ready_order.hold_reason == ""


def test_refused_cancel_warns_and_changes_nothing(acme_client, shipped_order):
    events = OutboxEvent.objects.count()

    response = action(acme_client, "cancel_selected", [shipped_order])

    shipped_order.refresh_from_db()
    assert shipped_order.status == OrderStatus.FULFILLED and shipped_order.canceled_at is None
    assert [level for level, _ in messages_of(response)] == ["warning"]
    assert "can no longer be canceled" in messages_of(response)[0][1]
    assert OutboxEvent.objects.count() == events
    assert Fulfillment.objects.filter(order=shipped_order).count() == 1


def test_release_of_an_order_not_on_hold_is_reported(acme_client, ready_order):
    response = action(acme_client, "release_selected", [ready_order])

    assert messages_of(response) == [("warning", f"Order {ready_order} is not on hold.")]


def test_hold_button_holds_and_get_is_refused(acme_client, ready_order):
    url = reverse("admin:orders_order_hold", args=[ready_order.pk])
    assert acme_client.get(url).status_code == 405

    response = acme_client.post(url)

    assert response.status_code == 302 and response["Location"] == change_url(ready_order)
    ready_order.refresh_from_db()
    assert ready_order.status == OrderStatus.ON_HOLD


def test_cancel_button_releases_the_stock(acme_client, ready_order, warehouse, products):
    services.create_shipping_request(ready_order, warehouse)

    acme_client.post(reverse("admin:orders_order_cancel", args=[ready_order.pk]))

    ready_order.refresh_from_db()
    assert ready_order.status == OrderStatus.CANCELED
    assert InventoryLevel.objects.get(product=products["TSHIRT-S"], location=warehouse).committed == 0


def test_member_with_view_only_cannot_use_the_actions(admin_client_for, member, ready_order, integration):
    assign_perm("integrations.view_integration", member, integration)
    client = admin_client_for(member)

    response = client.post(reverse("admin:orders_order_cancel", args=[ready_order.pk]))

    assert response.status_code == 403
    assert Order.objects.get(pk=ready_order.pk).status == OrderStatus.READY


# --- shipping requests, fulfillments, mappings ----------------------------------------------------------


def test_fulfillment_changelist_search_by_tracking(acme_client, shipped_order, globex):
    page = acme_client.get(changelist_url(Fulfillment), {"q": TRACKING})

    assert [f.order_id for f in page.context["cl"].result_list] == [shipped_order.pk]
    assert acme_client.get(changelist_url(Fulfillment), {"q": "GLOBEX"}).context["cl"].result_count == 0


def test_shipping_request_page_shows_its_lines(acme_client, shipped_order):
    request = shipped_order.shipping_requests.get()

    html = acme_client.get(change_url(request)).content.decode()

    assert 'data-status="fulfilled"' in html and "TSHIRT-S" in html


def test_mapping_form_refuses_another_orgs_method(
    admin_client_for, org_admin, other_org, integration, globex, standard_method
):
    # Given an admin of both organizations, so both methods are among the choices
    from organizations.choices import Role
    from tests.fixtures.organizations import join

    join(org_admin, other_org, Role.ADMIN)
    client = admin_client_for(org_admin)

    response = client.post(
        reverse("admin:orders_shippingmethodmapping_add"),
        {"integration": integration.pk, "external_code": "X", "method": globex["method"].pk},
    )

    assert response.status_code == 200
    assert "must all belong to the same organization" in response.content.decode()
    assert not ShippingMethodMapping.objects.filter(external_code="X").exists()
