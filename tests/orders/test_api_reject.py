"""POST /shipping-requests/{id}/reject: the 3PL refuses a request (chapter 6, "When you cannot ship it")."""

import pytest
from django.urls import reverse

from integrations.models import OutboxEvent
from inventory.models import InventoryLevel
from orders import services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import ShippingRequest
from tests.api.helpers import assert_error
from tests.orders.helpers import ORDER_GRANTS, REQUESTS, committed, integration_key
from tokens import issuing as key_services
from tokens.choices import KeyKind

pytestmark = pytest.mark.django_db


def reject(client, request, body=None, **headers):
    return client.post(
        f"{REQUESTS}/{request.pk}/reject",
        {"reason": "Out of boxes"} if body is None else body,
        format="json",
        **headers,
    )


def state(request):
    """What a refused call must leave as it was: the request, the order, the stock, the events."""
    request = ShippingRequest.objects.get(pk=request.pk)
    return (
        request.status,
        request.rejection_reason,
        request.rejected_at,
        request.order.status,
        sorted(InventoryLevel.objects.values_list("pk", "on_hand", "committed")),
        OutboxEvent.objects.count(),
    )


def org_client(api_client, org, user, grants):
    return api_client(
        key_services.issue_key(kind=KeyKind.ORG, name="org", organization=org, user=user, grants=grants)
    )


def test_the_3pl_rejects_its_request(tpl, routed, products, warehouse):
    order, request = routed
    assert committed(products["TSHIRT-S"], warehouse) == 2

    response = reject(tpl, request, {"reason": "  Out of boxes  "})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["status"], body["rejection_reason"]) == (
        str(request.pk),
        "rejected",
        "Out of boxes",
    )
    assert body["rejected_at"] is not None
    order.refresh_from_db()
    assert order.status == OrderStatus.READY  # routed again by the routing engine, without this location
    assert (committed(products["TSHIRT-S"], warehouse), committed(products["MUG"], warehouse)) == (0, 0)
    event = OutboxEvent.objects.get(type="shipping_request.rejected")
    assert (event.integration_id, event.payload["reason"]) == (request.fulfiller_id, "Out of boxes")
    # and it reads back as rejected, with the reason
    assert tpl.get(f"{REQUESTS}/{request.pk}").json() == body


def test_an_acknowledged_request_may_be_rejected(tpl, routed):
    _, request = routed
    services.acknowledge(request)

    response = reject(tpl, request)

    assert (response.status_code, response.json()["status"]) == (200, "rejected")


@pytest.mark.parametrize(
    "body",
    [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": None}],
    ids=["missing", "empty", "blank", "too-long", "null"],
)
def test_a_reason_is_required_and_bounded(tpl, routed, body):
    _, request = routed
    before = state(request)

    response = reject(tpl, request, body)

    assert assert_error(response, 400, "validation_error").keys() == {"reason"}
    assert state(request) == before


def test_a_retry_with_the_same_idempotency_key_answers_the_first_answer(
    tpl, routed, products, warehouse, shelve
):
    # given another order's commitment at the warehouse, which a second release would eat into
    _, request = routed
    shelve(warehouse, products["MUG"], 10, committed=1 + 4)
    first = reject(tpl, request, HTTP_IDEMPOTENCY_KEY="reject-1")
    after = state(request)

    again = reject(tpl, request, HTTP_IDEMPOTENCY_KEY="reject-1")

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert state(request) == after
    assert committed(products["MUG"], warehouse) == 4
    assert OutboxEvent.objects.filter(type="shipping_request.rejected").count() == 1


def test_a_second_rejection_without_a_key_is_a_conflict(tpl, routed):
    _, request = routed
    reject(tpl, request)
    before = state(request)

    assert_error(reject(tpl, request, {"reason": "Again"}), 409, "conflict")
    assert state(request) == before


@pytest.mark.parametrize("shipped", [1, 2], ids=["partially-fulfilled", "fulfilled"])
def test_a_request_that_shipped_cannot_be_rejected(tpl, routed, products, warehouse_integration, shipped):
    _, request = routed
    lines = [(products["TSHIRT-S"].pk, shipped)] + ([(products["MUG"].pk, 1)] if shipped == 2 else [])
    services.create_fulfillment(request, {"lines": lines}, integration=warehouse_integration)
    before = state(request)

    assert_error(reject(tpl, request), 409, "conflict")
    assert state(request) == before


def test_a_canceled_request_cannot_be_rejected(tpl, routed):
    order, request = routed
    services.cancel_order(order)
    before = state(request)

    assert_error(reject(tpl, request), 409, "conflict")
    assert state(request) == before
    assert before[0] == ShippingRequestStatus.CANCELED


def test_another_3pls_or_organizations_key_gets_404(
    api_client, routed, org, tpl_connector, make_integration, other_org, other_admin
):
    _, request = routed
    other_3pl = make_integration(org, tpl_connector, "Other 3PL")
    before = state(request)

    sibling = api_client(integration_key(other_3pl, grants=ORDER_GRANTS))
    outsider = org_client(api_client, other_org, other_admin, ORDER_GRANTS)

    assert_error(reject(sibling, request), 404, "not_found")
    assert_error(reject(outsider, request), 404, "not_found")
    assert state(request) == before


def test_the_channel_cannot_reject_the_request_of_its_order(api_client, integration, routed):
    # even with the write grant: the request is its 3PL's, not the channel's
    _, request = routed
    channel = api_client(integration_key(integration, grants=ORDER_GRANTS))
    before = state(request)

    assert_error(reject(channel, request), 404, "not_found")
    assert state(request) == before


def test_an_org_key_with_the_write_grant_may_reject(api_client, routed, org, org_admin):
    _, request = routed
    reader = org_client(api_client, org, org_admin, ["shipping_requests:read"])
    writer = org_client(api_client, org, org_admin, ["shipping_requests:read", "shipping_requests:write"])

    assert_error(reject(reader, request), 403, "missing_grant")
    assert reject(writer, request).status_code == 200


def test_the_admin_shows_the_rejection_and_its_reason(tpl, routed, admin_client_for, org_admin):
    order, request = routed
    reject(tpl, request, {"reason": "Out of <boxes>"})
    client = admin_client_for(org_admin)

    order_page = client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    request_page = client.get(
        reverse("admin:orders_shippingrequest_change", args=[request.pk])
    ).content.decode()

    for html in (order_page, request_page):
        assert "Rejected" in html and "Out of &lt;boxes&gt;" in html
