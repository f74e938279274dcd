"""
Correcting a fulfillment through the API (issue 16, item 5): PATCH /fulfillments/{id} (carrier and tracking)
and POST /fulfillments/{id}/cancel (the shipment voided, its stock put back) — who may, what is refused.
"""

import pytest

from integrations.choices import Workflow
from integrations.models import OutboxEvent
from inventory.models import InventoryLevel
from orders.choices import FulfillmentStatus, OrderStatus, ShippingRequestStatus
from orders.models import Fulfillment
from tests.api.helpers import assert_error
from tests.orders.helpers import FULFILLMENTS, ORDER_GRANTS, ORDERS, REQUESTS, integration_key, shipment
from tokens import issuing as key_services
from tokens.choices import KeyKind

CORRECTION = {
    "carrier": "DHL",
    "tracking_number": "JD0002",
    "tracking_url": "https://track.example.test/JD0002",
}


@pytest.fixture
def shipped(tpl, routed):
    """The 3PL shipped 1 × TSHIRT-S and the mug of #1001 (1 × TSHIRT-S still to ship): the fulfillment's id."""
    _, request = routed
    response = tpl.post(FULFILLMENTS, shipment(request, [("TSHIRT-S", 1), ("MUG", 1)]), format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def levels(products, location) -> dict[str, tuple[int, int]]:
    """{sku: (on hand, committed)} at the location."""
    return {
        level.product.sku: (level.on_hand, level.committed)
        for level in InventoryLevel.objects.filter(location=location).select_related("product")
    }


def events(type_):
    return list(OutboxEvent.objects.filter(type=type_).order_by("pk"))


def state(fulfillment_id):
    """Everything a refused correction must leave as it was."""
    fulfillment = Fulfillment.objects.get(pk=fulfillment_id)
    request = fulfillment.shipping_request
    return (
        Fulfillment.objects.filter(pk=fulfillment_id).values().get(),
        request.status,
        list(request.lines.order_by("pk").values_list("fulfilled_quantity", flat=True)),
        fulfillment.order.status,
        sorted(InventoryLevel.objects.values_list("pk", "on_hand", "committed")),
        OutboxEvent.objects.count(),
    )


def org_client(api_client, org, org_admin, grants):
    key = key_services.issue_key(
        kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=grants
    )
    return api_client(key)


# --- PATCH /fulfillments/{id} -------------------------------------------------------------------------


def test_the_3pl_corrects_its_tracking_and_the_channel_is_told(tpl, channel, shipped, routed):
    order, _ = routed

    response = tpl.patch(f"{FULFILLMENTS}/{shipped}", CORRECTION, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in ("id", "status", *CORRECTION)} == {
        "id": shipped,
        "status": "shipped",
        **CORRECTION,
    }
    assert body["lines"] == [{"sku": "TSHIRT-S", "quantity": 1}, {"sku": "MUG", "quantity": 1}]  # untouched
    [event] = events("fulfillment.updated")
    assert (event.object_type, event.object_id, event.integration_id) == (
        "fulfillment",
        shipped,
        order.source_id,
    )
    assert event.payload["changes"] == ["carrier", "tracking_number", "tracking_url"]
    assert {k: event.payload[k] for k in CORRECTION} == CORRECTION
    assert channel.get(f"{FULFILLMENTS}/{shipped}").json()["tracking_number"] == "JD0002"


def test_only_the_fields_sent_change_and_a_repeat_records_nothing(tpl, shipped):
    first = tpl.patch(f"{FULFILLMENTS}/{shipped}", {"tracking_number": "JD0003"}, format="json")
    again = tpl.patch(f"{FULFILLMENTS}/{shipped}", {"tracking_number": "JD0003"}, format="json")

    assert (first.status_code, again.status_code) == (200, 200)
    assert (again.json()["carrier"], again.json()["tracking_number"]) == ("UPS", "JD0003")
    [event] = events("fulfillment.updated")
    assert event.payload["changes"] == ["tracking_number"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"tracking_number": "X", "lines": [{"sku": "MUG", "quantity": 9}]}, {"lines"}),
        ({"shipped_at": "2025-05-02T00:00:00Z", "status": "canceled"}, {"shipped_at", "status"}),
        ({"tracking_url": "not a url"}, {"tracking_url"}),
        ({"carrier": "x" * 101}, {"carrier"}),
        ({"tracking_number": None}, {"tracking_number"}),
        (["tracking_number"], {"__all__"}),
    ],
    ids=["lines", "read-only fields", "bad url", "too long", "null", "not an object"],
)
def test_unknown_or_malformed_fields_are_a_400_that_changes_nothing(tpl, shipped, body, fields):
    before = state(shipped)

    response = tpl.patch(f"{FULFILLMENTS}/{shipped}", body, format="json")

    assert set(assert_error(response, 400, "validation_error")) == fields
    assert state(shipped) == before


def test_a_canceled_fulfillment_cannot_be_corrected(tpl, shipped):
    assert tpl.post(f"{FULFILLMENTS}/{shipped}/cancel").status_code == 200
    before = state(shipped)

    assert_error(tpl.patch(f"{FULFILLMENTS}/{shipped}", CORRECTION, format="json"), 409, "conflict")
    assert state(shipped) == before


# --- POST /fulfillments/{id}/cancel ---------------------------------------------------------------------


def test_cancel_puts_the_stock_back_and_moves_request_and_order_back(
    tpl, channel, routed, shipped, products, warehouse
):
    # Given: #1001 partly shipped (2 × TSHIRT-S and the mug committed at 10 on hand; 1 + 1 shipped)
    order, request = routed
    assert levels(products, warehouse) == {"TSHIRT-S": (9, 1), "TSHIRT-M": (10, 0), "MUG": (9, 0)}

    response = tpl.post(f"{FULFILLMENTS}/{shipped}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "canceled" and response.json()["canceled_at"]
    # The units are on hand again and reserved again for the request, which owes them again.
    assert levels(products, warehouse) == {"TSHIRT-S": (10, 2), "TSHIRT-M": (10, 0), "MUG": (10, 1)}
    seen = tpl.get(f"{REQUESTS}/{request.pk}").json()
    assert seen["status"] == ShippingRequestStatus.PENDING
    assert [line["fulfilled_quantity"] for line in seen["lines"]] == [0, 0]
    by_channel = channel.get(f"{ORDERS}/{order.pk}").json()
    assert by_channel["status"] == OrderStatus.SENT_TO_FULFILLMENT
    assert [(f["id"], f["status"]) for f in by_channel["fulfillments"]] == [(shipped, "canceled")]


def test_cancel_sends_fulfillment_canceled_and_order_updated(tpl, routed, shipped):
    order, _ = routed
    updates_before = len(events("order.updated"))

    tpl.post(f"{FULFILLMENTS}/{shipped}/cancel")

    [event] = events("fulfillment.canceled")
    fulfillment = Fulfillment.objects.get(pk=shipped)
    assert (event.object_type, event.object_id, event.integration_id) == (
        "fulfillment",
        shipped,
        order.source_id,
    )
    assert event.payload == {
        "id": shipped,
        "order": str(order.pk),
        "shipping_request": str(fulfillment.shipping_request_id),
        "status": "canceled",
        "carrier": "UPS",
        "tracking_number": "1Z999",
        "tracking_url": "https://track.example.test/1Z999",
        "shipped_at": fulfillment.shipped_at.isoformat(),
        "canceled_at": fulfillment.canceled_at.isoformat(),
    }
    updates = events("order.updated")[updates_before:]
    assert [e.payload["status"] for e in updates] == [OrderStatus.SENT_TO_FULFILLMENT]


def test_cancel_of_one_of_two_shipments_leaves_the_order_partially_fulfilled(tpl, routed, shipped):
    # Given: the rest shipped too, so request and order are fulfilled; then the first parcel is voided
    order, request = routed
    rest = tpl.post(FULFILLMENTS, shipment(request, [("TSHIRT-S", 1)], external_id="SHIP-2"), format="json")
    assert rest.status_code == 201
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED

    tpl.post(f"{FULFILLMENTS}/{shipped}/cancel")

    order.refresh_from_db()
    request.refresh_from_db()
    assert (order.status, request.status) == (OrderStatus.PARTIALLY_FULFILLED, "partially_fulfilled")
    assert list(request.lines.order_by("pk").values_list("fulfilled_quantity", flat=True)) == [1, 0]


def test_an_acknowledged_request_goes_back_to_acknowledged(tpl, routed, shipped):
    _, request = routed
    # acknowledged before it shipped (the 3PL's usual order; the shipment moved it on)
    type(request).objects.filter(pk=request.pk).update(acknowledged_at="2025-05-01T11:00:00Z")

    tpl.post(f"{FULFILLMENTS}/{shipped}/cancel")

    request.refresh_from_db()
    assert request.status == ShippingRequestStatus.ACKNOWLEDGED


def test_canceling_twice_is_a_conflict_that_puts_nothing_back(tpl, routed, shipped, products, warehouse):
    # Given: a second parcel, so the request stays partially fulfilled once the first is voided
    _, request = routed
    tpl.post(FULFILLMENTS, shipment(request, [("TSHIRT-S", 1)], external_id="SHIP-2"), format="json")
    assert tpl.post(f"{FULFILLMENTS}/{shipped}/cancel").status_code == 200
    before = state(shipped)

    assert_error(tpl.post(f"{FULFILLMENTS}/{shipped}/cancel"), 409, "conflict")

    assert state(shipped) == before
    assert levels(products, warehouse) == {"TSHIRT-S": (9, 1), "TSHIRT-M": (10, 0), "MUG": (10, 1)}


def test_a_retry_with_the_same_idempotency_key_is_answered_as_the_first(tpl, shipped, products, warehouse):
    first = tpl.post(f"{FULFILLMENTS}/{shipped}/cancel", HTTP_IDEMPOTENCY_KEY="void-1")
    retry = tpl.post(f"{FULFILLMENTS}/{shipped}/cancel", HTTP_IDEMPOTENCY_KEY="void-1")

    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry["Idempotent-Replayed"] == "true" and retry.json() == first.json()
    assert levels(products, warehouse) == {"TSHIRT-S": (10, 2), "TSHIRT-M": (10, 0), "MUG": (10, 1)}
    assert len(events("fulfillment.canceled")) == 1


def test_cancel_takes_no_fields(tpl, shipped):
    before = state(shipped)

    response = tpl.post(f"{FULFILLMENTS}/{shipped}/cancel", {"reason": "typo"}, format="json")

    assert set(assert_error(response, 400, "validation_error")) == {"reason"}
    assert state(shipped) == before


def test_with_nothing_left_shipped_the_channel_may_cancel_the_order(
    tpl, channel, routed, shipped, products, warehouse
):
    order, _ = routed
    tpl.post(f"{FULFILLMENTS}/{shipped}/cancel")

    response = channel.post(f"{ORDERS}/{order.pk}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == OrderStatus.CANCELED
    # Its commitments released: every unit is back and free.
    assert levels(products, warehouse) == {"TSHIRT-S": (10, 0), "TSHIRT-M": (10, 0), "MUG": (10, 0)}


def test_after_a_cancel_the_parcel_can_be_sent_again_in_full(tpl, routed, shipped, products, warehouse):
    order, request = routed
    tpl.post(f"{FULFILLMENTS}/{shipped}/cancel")

    again = tpl.post(
        FULFILLMENTS, shipment(request, [("TSHIRT-S", 2), ("MUG", 1)], external_id="SHIP-3"), format="json"
    )

    assert again.status_code == 201, again.content
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert levels(products, warehouse) == {"TSHIRT-S": (8, 0), "TSHIRT-M": (10, 0), "MUG": (9, 0)}


# --- who may correct ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["patch", "cancel"])
def test_the_channel_reads_the_fulfillment_but_may_not_correct_it(api_client, integration, shipped, how):
    channel = api_client(integration_key(integration, grants=ORDER_GRANTS))  # even with fulfillments:write
    before = state(shipped)
    assert channel.get(f"{FULFILLMENTS}/{shipped}").status_code == 200

    if how == "patch":
        response = channel.patch(f"{FULFILLMENTS}/{shipped}", CORRECTION, format="json")
    else:
        response = channel.post(f"{FULFILLMENTS}/{shipped}/cancel")

    assert_error(response, 404, "not_found")
    assert state(shipped) == before


@pytest.mark.parametrize("how", ["patch", "cancel"])
def test_another_3pl_or_organization_gets_404(
    api_client, org, make_integration, tpl_connector, other_integration, shipped, how
):
    sibling = make_integration(org, tpl_connector, "Sibling 3PL")
    before = state(shipped)

    for outsider in (sibling, other_integration):
        client = api_client(integration_key(outsider, grants=ORDER_GRANTS))
        if how == "patch":
            response = client.patch(f"{FULFILLMENTS}/{shipped}", CORRECTION, format="json")
        else:
            response = client.post(f"{FULFILLMENTS}/{shipped}/cancel")
        assert_error(response, 404, "not_found")
    assert state(shipped) == before


def test_an_org_key_with_the_grant_may_correct_and_cancel(api_client, org, org_admin, shipped):
    admin = org_client(api_client, org, org_admin, ["fulfillments:read", "fulfillments:write"])

    patched = admin.patch(f"{FULFILLMENTS}/{shipped}", {"carrier": "FedEx"}, format="json")
    canceled = admin.post(f"{FULFILLMENTS}/{shipped}/cancel")

    assert (patched.status_code, canceled.status_code) == (200, 200)
    assert Fulfillment.objects.get(pk=shipped).status == FulfillmentStatus.CANCELED


def test_an_org_key_without_the_write_grant_is_refused(api_client, org, org_admin, shipped):
    reader = org_client(api_client, org, org_admin, ["fulfillments:read"])
    before = state(shipped)

    patched = reader.patch(f"{FULFILLMENTS}/{shipped}", CORRECTION, format="json")
    canceled = reader.post(f"{FULFILLMENTS}/{shipped}/cancel")

    assert assert_error(patched, 403, "missing_grant") == {"required": ["fulfillments:write"]}
    assert assert_error(canceled, 403, "missing_grant") == {"required": ["fulfillments:write"]}
    assert state(shipped) == before


def test_another_organizations_org_key_gets_404(api_client, other_org, other_admin, shipped):
    outsider = org_client(api_client, other_org, other_admin, ["fulfillments:read", "fulfillments:write"])

    assert_error(outsider.post(f"{FULFILLMENTS}/{shipped}/cancel"), 404, "not_found")
    assert_error(outsider.patch(f"{FULFILLMENTS}/{shipped}", CORRECTION, format="json"), 404, "not_found")


def test_the_3pl_with_its_fulfillments_flow_off_is_refused(tpl, warehouse_integration, shipped):
    type(warehouse_integration).objects.filter(pk=warehouse_integration.pk).update(
        **{f"flow_{Workflow.FULFILLMENTS_IN.value}": False}
    )
    before = state(shipped)

    assert_error(tpl.post(f"{FULFILLMENTS}/{shipped}/cancel"), 403, "workflow_disabled")
    assert_error(tpl.patch(f"{FULFILLMENTS}/{shipped}", CORRECTION, format="json"), 403, "workflow_disabled")
    assert state(shipped) == before
