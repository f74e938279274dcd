"""
Changes after routing (#16, item 3; chapter 6, "When the order changes"): a channel's re-post that changes a
routed order's address, contact or shipping method reaches its open shipping requests as
`shipping_request.updated` with `changes`, and a person when the 3PL had acknowledged; what cannot be applied
is a 409 that changes nothing.
"""

import json

import pytest
from django.urls import reverse

from automations.models import SyncException
from core.signing import new_secret
from core.sync_exceptions import ExceptionKind
from integrations.models import OutboxEvent, WebhookDelivery, WebhookSubscription
from integrations.webhooks import outbox
from inventory.models import InventoryLevel, Location
from orders import services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import Order, ShippingMethod, ShippingMethodMapping, ShippingRequest
from tests.api.helpers import assert_error
from tests.orders.helpers import ORDER_GRANTS, ORDERS, REQUESTS, integration_key
from tokens import issuing as key_services
from tokens.choices import KeyKind

pytestmark = pytest.mark.django_db

NEW_STREET = "9 Elm Rd"


def moved(order_body, **address):
    return {
        **order_body,
        "shipping_address": {**order_body["shipping_address"], "line1": NEW_STREET, **address},
    }


def events(event_type):
    return list(OutboxEvent.objects.filter(type=event_type).order_by("pk"))


def state(order):
    """What a refused re-post must leave as it was: the order, its lines and requests, the events, exceptions."""
    order = Order.objects.get(pk=order.pk)
    return (
        order.status,
        order.shipping_address,
        order.customer,
        order.shipping_method_code,
        sorted(order.lines.values_list("sku", "quantity")),
        sorted(
            ShippingRequest.objects.filter(order=order).values_list(
                "pk", "status", "shipping_address", "customer", "shipping_method", "updated_at"
            )
        ),
        OutboxEvent.objects.count(),
        sorted(SyncException.objects.values_list("pk", "kind", "occurrences")),
    )


# --- the change reaches the 3PL --------------------------------------------------------------------------


def test_a_new_address_after_routing_updates_the_request_and_tells_the_3pl(channel, tpl, order_body, routed):
    _, request = routed
    updates_before = len(events("order.updated"))

    response = channel.post(ORDERS, moved(order_body), format="json")

    assert response.status_code == 200, response.content
    assert response.json()["shipping_address"]["line1"] == NEW_STREET
    shown = tpl.get(f"{REQUESTS}/{request.pk}").json()
    assert shown["order"]["shipping_address"]["line1"] == NEW_STREET
    assert shown["status"] == "pending"  # the 3PL had not acknowledged: nothing for a person
    [update] = events("shipping_request.updated")
    assert (update.object_id, update.integration_id) == (str(request.pk), request.fulfiller_id)
    assert update.changes == ["shipping_address.line1"]
    # The channel's order.updated says the same.
    order_update = events("order.updated")[updates_before:]
    assert [e.changes for e in order_update] == [["shipping_address.line1"]]
    assert not SyncException.objects.exists()


def test_after_acknowledgement_a_person_is_told_too(
    api_client, org, org_admin, channel, tpl, order_body, routed
):
    _, request = routed
    assert tpl.post(f"{REQUESTS}/{request.pk}/acknowledge").status_code == 200

    response = channel.post(ORDERS, moved(order_body), format="json")

    assert response.status_code == 200, response.content
    request.refresh_from_db()
    assert (request.status, request.shipping_address["line1"]) == (
        ShippingRequestStatus.ACKNOWLEDGED,
        NEW_STREET,
    )
    assert [e.changes for e in events("shipping_request.updated")] == [["shipping_address.line1"]]
    exception = SyncException.objects.get()
    assert (exception.kind, exception.integration_id) == (
        ExceptionKind.CHANGED_AFTER_ACKNOWLEDGED,
        request.fulfiller_id,
    )
    assert (exception.entity_type, exception.entity_id) == ("shipping_request", str(request.pk))
    assert "address changed after the 3PL acknowledged" in exception.message
    # visible at the exceptions API: to the organization and to the 3PL it concerns
    admin = api_client(
        key_services.issue_key(
            kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=["exceptions:read"]
        )
    )
    for client in (admin, tpl):
        listed = client.get("/api/v1/exceptions?kind=changed_after_acknowledged").json()["results"]
        assert [(e["kind"], e["entity_id"]) for e in listed] == [
            ("changed_after_acknowledged", str(request.pk))
        ]


def test_contact_and_method_changes_are_named_field_by_field(
    channel, tpl, order_body, routed, org, integration, warehouse_integration
):
    # given an express method both sides have a code for
    express = ShippingMethod.objects.create(organization=org, code="express", name="Express")
    ShippingMethodMapping.objects.create(integration=integration, external_code="shopify-exp", method=express)
    ShippingMethodMapping.objects.create(
        integration=warehouse_integration, external_code="AIR", method=express
    )
    _, request = routed
    body = {
        **order_body,
        "customer": {"name": "Ada Lovelace", "email": "ada@new.example.test", "phone": "+1 555 0100"},
        "shipping_method": "shopify-exp",
    }

    assert channel.post(ORDERS, body, format="json").status_code == 200

    [update] = events("shipping_request.updated")
    assert update.changes == ["customer.email", "customer.phone", "shipping_method"]
    shown = tpl.get(f"{REQUESTS}/{request.pk}").json()
    assert shown["shipping_method"] == "AIR"
    assert shown["order"]["customer"]["phone"] == "+1 555 0100"


def test_the_3pl_receives_changes_beside_the_request_as_get_renders_it(
    channel, tpl, order_body, routed, warehouse_integration
):
    _, request = routed
    WebhookSubscription.objects.create(
        integration=warehouse_integration,
        url="https://3pl.example.test/hooks",
        event_types=["shipping_request.updated"],
        secret=new_secret(),
    )
    outbox.dispatch_outbox()  # what was before the subscription

    channel.post(ORDERS, moved(order_body), format="json")
    outbox.dispatch_outbox()

    [delivery] = WebhookDelivery.objects.filter(event_type="shipping_request.updated")
    body = json.loads(delivery.body)
    assert body["changes"] == ["shipping_address.line1"]
    assert body["data"] == tpl.get(f"{REQUESTS}/{request.pk}").json()


def test_an_unchanged_repost_tells_no_3pl(channel, order_body, routed):
    _, request = routed
    services.acknowledge(request)
    updated_at = ShippingRequest.objects.get(pk=request.pk).updated_at

    response = channel.post(ORDERS, order_body, format="json")

    assert response.status_code == 200
    assert not events("shipping_request.updated")
    assert not SyncException.objects.exists()
    assert ShippingRequest.objects.get(pk=request.pk).updated_at == updated_at
    assert events("order.updated")[-1].changes == []  # the upsert is announced, saying nothing changed


def test_a_change_the_3pl_does_not_carry_is_not_sent_to_it(channel, order_body, routed):
    channel.post(
        ORDERS, {**order_body, "notes": "Gift wrap", "billing_address": {"line1": "2 Oak"}}, format="json"
    )

    assert not events("shipping_request.updated")
    assert events("order.updated")[-1].changes == ["billing_address.line1", "notes"]


# --- what cannot be applied ----------------------------------------------------------------------------


def test_changed_lines_of_a_routed_order_are_a_conflict_that_changes_nothing(channel, order_body, routed):
    order, request = routed
    services.acknowledge(request)
    before = state(order)
    body = moved(order_body)
    body["lines"] = [{**order_body["lines"][0], "quantity": 5}, order_body["lines"][1]]

    assert_error(channel.post(ORDERS, body, format="json"), 409, "conflict")
    assert state(order) == before


def test_an_unmapped_new_method_is_a_conflict_that_changes_nothing(channel, order_body, routed):
    order, _ = routed
    before = state(order)

    response = channel.post(ORDERS, {**moved(order_body), "shipping_method": "carrier-pigeon"}, format="json")

    assert_error(response, 409, "conflict")
    assert state(order) == before


@pytest.mark.parametrize("end", ["fulfilled", "canceled"])
def test_an_order_shipped_or_canceled_refuses_a_new_address(
    channel, order_body, routed, products, warehouse_integration, end
):
    order, request = routed
    if end == "fulfilled":
        lines = [(products["TSHIRT-S"].pk, 2), (products["MUG"].pk, 1)]
        services.create_fulfillment(request, {"lines": lines}, integration=warehouse_integration)
    else:
        services.cancel_order(order)
    before = state(order)

    assert_error(channel.post(ORDERS, moved(order_body), format="json"), 409, "conflict")
    assert state(order) == before


def test_a_partially_shipped_request_takes_the_change_and_a_person_is_told(
    channel, order_body, routed, products, warehouse_integration
):
    _, request = routed
    services.create_fulfillment(
        request, {"lines": [(products["MUG"].pk, 1)]}, integration=warehouse_integration
    )

    assert channel.post(ORDERS, moved(order_body), format="json").status_code == 200

    request.refresh_from_db()
    assert (request.status, request.shipping_address["line1"]) == (
        ShippingRequestStatus.PARTIALLY_FULFILLED,
        NEW_STREET,
    )
    assert SyncException.objects.get().kind == ExceptionKind.CHANGED_AFTER_ACKNOWLEDGED


def test_a_split_orders_fulfilled_request_keeps_the_address_it_shipped_to(
    channel, tpl, order_body, ready_order, org, products, warehouse, warehouse_integration
):
    # given #1001 split: the mug from a second location (shipped), the T-shirts from the warehouse (open)
    west = Location.objects.create(
        organization=org, name="West", kind="3pl", managed_by=warehouse_integration, priority=2
    )
    InventoryLevel.objects.create(product=products["MUG"], location=west, on_hand=5)
    lines = {line.sku: line for line in ready_order.lines.all()}
    open_request = services.create_shipping_request(ready_order, warehouse, [(lines["TSHIRT-S"], 2)])
    shipped = services.create_shipping_request(ready_order, west, [(lines["MUG"], 1)])
    services.create_fulfillment(
        shipped, {"lines": [(products["MUG"].pk, 1)]}, integration=warehouse_integration
    )

    assert channel.post(ORDERS, moved(order_body), format="json").status_code == 200

    assert tpl.get(f"{REQUESTS}/{open_request.pk}").json()["order"]["shipping_address"]["line1"] == NEW_STREET
    assert tpl.get(f"{REQUESTS}/{shipped.pk}").json()["order"]["shipping_address"]["line1"] == "1 Main St"
    assert [e.object_id for e in events("shipping_request.updated")] == [str(open_request.pk)]
    order = Order.objects.get(pk=ready_order.pk)
    assert (order.status, order.shipping_address["line1"]) == (OrderStatus.PARTIALLY_FULFILLED, NEW_STREET)


# --- tenants ------------------------------------------------------------------------------------------


def test_another_channel_or_organization_cannot_touch_the_order(
    api_client, channel_connector, make_integration, org, order_body, routed, other_integration_key
):
    order, _ = routed
    before = state(order)
    sibling = api_client(integration_key(make_integration(org, channel_connector, "Outlet"), ORDER_GRANTS))
    outsider = api_client(other_integration_key)

    for client in (sibling, outsider):
        response = client.post(ORDERS, moved(order_body), format="json")
        # the same external id is their own, new order: ours is not found by them, let alone changed
        assert response.status_code == 201 and response.json()["id"] != str(order.pk)
        assert_error(client.get(f"{ORDERS}/{order.pk}"), 404, "not_found")

    after = state(order)
    assert after[:6] == before[:6]
    assert not events("shipping_request.updated")


def test_another_3pl_does_not_see_the_updated_request(
    api_client, org, tpl_connector, make_integration, channel, order_body, routed
):
    _, request = routed
    other_3pl = api_client(integration_key(make_integration(org, tpl_connector, "Other 3PL"), ORDER_GRANTS))

    channel.post(ORDERS, moved(order_body), format="json")

    assert_error(other_3pl.get(f"{REQUESTS}/{request.pk}"), 404, "not_found")


# --- cost ---------------------------------------------------------------------------------------------


def test_the_update_path_costs_a_bounded_number_of_queries(
    channel, order_body, routed, django_assert_max_num_queries
):
    _, request = routed
    services.acknowledge(request)
    channel.post(ORDERS, order_body, format="json")  # warm: the key's last use, the rate limit

    with django_assert_max_num_queries(30) as unchanged:
        channel.post(ORDERS, order_body, format="json")
    with django_assert_max_num_queries(42) as changed:
        channel.post(ORDERS, moved(order_body), format="json")

    # the change costs the requests' lock and update, its event rendered for the 3PL and the exception
    # (25 → 36 queries when written)
    assert len(changed.captured_queries) - len(unchanged.captured_queries) <= 14


def test_the_admin_shows_the_address_a_request_carries(
    admin_client_for, org_admin, channel, order_body, routed
):
    _, request = routed
    channel.post(ORDERS, moved(order_body), format="json")

    page = admin_client_for(org_admin).get(reverse("admin:orders_shippingrequest_change", args=[request.pk]))

    assert NEW_STREET in page.content.decode()


def test_subscribing_to_updates_takes_the_shipping_requests_read_grant(channel, tpl, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    body = {"url": "http://127.0.0.1:9/hooks", "events": ["shipping_request.updated"]}

    refused = channel.post("/api/v1/webhooks", body, format="json")  # a channel's key has no such grant
    subscribed = tpl.post("/api/v1/webhooks", body, format="json")

    assert assert_error(refused, 403, "missing_grant")["required"] == ["shipping_requests:read"]
    assert (subscribed.status_code, subscribed.json()["events"]) == (201, ["shipping_request.updated"])


def test_the_3pls_event_feed_has_the_update_with_its_changes(channel, tpl, order_body, routed):
    _, request = routed

    channel.post(ORDERS, moved(order_body), format="json")

    feed = tpl.get("/api/v1/webhook-events", {"type": "shipping_request.updated"}).json()["results"]
    assert [(e["data"]["id"], e["changes"]) for e in feed] == [(str(request.pk), ["shipping_address.line1"])]
