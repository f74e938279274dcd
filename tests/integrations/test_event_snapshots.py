"""
Event-time bodies and per-object sequences (#16, items 1 and 2): an event carries the object as the receiving
integration's GET answered it when the event's transaction committed — not when the delivery is made — and
its `sequence` counts per integration and object, across subscriptions.
"""

import json

import pytest
from django.db import transaction

from integrations.models import WebhookDelivery, WebhookEvent, WebhookSequence
from integrations.webhooks import outbox, replay, subscriptions
from inventory.models import Product
from orders import services as order_services
from tests.integrations.delivery_path import GRANTS, flush, make_due
from tokens import issuing as key_services
from tokens.choices import KeyKind

pytestmark = pytest.mark.usefixtures("local_receivers")


def bodies(receiver, path="/"):
    return [r.json() for r in receiver.requests if r.path == path]


def test_order_created_says_the_status_at_ingest_not_the_later_one(
    subscribe, receiver, ingest, order_body, products, standard_method
):
    # given a channel subscribed to its orders; the order is ingested (new), then let through (ready), and
    # only then is anything dispatched
    subscribe(events=["order.created", "order.updated"])
    order, _ = ingest(order_body)
    order_services.hold(order, "Check the address")

    flush()

    # each body is the order as it was when its own event committed
    statuses = [
        (b["type"], b["data"]["status"]) for b in sorted(bodies(receiver), key=lambda b: b["sequence"])
    ]
    assert statuses == [("order.created", "new"), ("order.updated", "ready"), ("order.updated", "on_hold")]
    assert [b["sequence"] for b in sorted(bodies(receiver), key=lambda b: b["sequence"])] == [1, 2, 3]


@pytest.fixture
def tpl_key(warehouse_integration):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="3pl", integration=warehouse_integration, grants=GRANTS
    )


@pytest.fixture
def routed(ingest, order_body, stock, warehouse, standard_method):
    order, _ = ingest(order_body)
    return order, order_services.create_shipping_request(order, warehouse)


def test_a_partial_then_a_complete_fulfillment_reach_the_channel_as_they_happened(
    subscribe, receiver, routed, products, warehouse_integration
):
    # given a routed order; two shipments commit before the dispatcher runs at all
    subscribe(events=["order.updated", "fulfillment.created"])
    _, request = routed
    shirt, mug = products["TSHIRT-S"], products["MUG"]
    order_services.create_fulfillment(request, {"lines": [(shirt.pk, 2)]}, integration=warehouse_integration)
    order_services.create_fulfillment(request, {"lines": [(mug.pk, 1)]}, integration=warehouse_integration)

    flush()

    # the channel hears partially_fulfilled, then fulfilled, in sequence order
    updates = sorted(
        (b for b in bodies(receiver) if b["type"] == "order.updated"), key=lambda b: b["sequence"]
    )
    assert [b["data"]["status"] for b in updates] == ["partially_fulfilled", "fulfilled"]
    assert updates[0]["sequence"] < updates[1]["sequence"]


def test_retries_and_replays_send_the_same_bytes(
    subscribe, receiver, ingest, order_body, products, standard_method
):
    # given a delivered order.created
    subscribe(events=["order.created"])
    order, _ = ingest(order_body)
    flush()
    order_services.hold(order, "changed since")  # the order changes after the event

    # when it is replayed
    replay.replay(WebhookDelivery.objects.all())
    make_due()
    flush()

    # then the very same body goes again (the order's later state is not in it)
    first, again = [r.body for r in receiver.requests]
    assert first == again
    assert json.loads(again)["data"]["status"] == "new"  # ingested new; made ready, then held, afterwards
    assert first.decode() == WebhookEvent.objects.get(type="order.created").body


def test_a_resubscription_continues_the_sequence(
    subscribe, receiver, ingest, order_body, products, standard_method
):
    # given two events delivered to a subscription, which is then deleted and made again
    subscription, _ = subscribe(events=["order.created", "order.updated"])
    order, _ = ingest(order_body)
    flush()
    subscriptions.unsubscribe(subscription)
    subscribe(events=["order.created", "order.updated"], path="/again")

    order_services.hold(order, "Check the address")
    flush()

    # the new subscription's first event goes on from the old one's numbers
    assert sorted(b["sequence"] for b in bodies(receiver)) == [1, 2]
    assert [b["sequence"] for b in bodies(receiver, "/again")] == [3]


def test_sequences_count_per_object(subscribe, receiver, ingest, order_body, products, standard_method):
    subscribe(events=["order.created", "order.updated"])
    first, _ = ingest(order_body)
    second, _ = ingest({**order_body, "external_id": "1002"})
    order_services.hold(first, "Check")

    flush()

    by_order = {}
    for body in bodies(receiver):
        by_order.setdefault(body["data"]["id"], []).append(body["sequence"])
    assert sorted(by_order[str(first.pk)]) == [1, 2, 3]
    assert sorted(by_order[str(second.pk)]) == [1, 2]


def test_two_subscriptions_get_one_event_with_one_id_and_number(
    subscribe, receiver, ingest, order_body, products
):
    subscribe(events=["order.created"])
    subscribe(events=["order.created", "order.updated"], path="/second")
    ingest(order_body)

    flush()

    [one], [two] = bodies(receiver), [b for b in bodies(receiver, "/second") if b["type"] == "order.created"]
    assert one == two


def test_events_are_recorded_for_every_entitled_integration_without_a_subscription(
    shop_key, tpl_key, routed, warehouse_integration
):
    # given no subscription at all; the 3PL's key may read shipping requests
    order, request = routed
    order_services.create_fulfillment(
        request,
        {"lines": [(line.product_id, line.quantity) for line in order.lines.all()]},
        integration=warehouse_integration,
    )

    # the channel's events and the 3PL's are kept for the feed, each rendered for its own integration
    channel = set(
        WebhookEvent.objects.filter(integration=shop_key.key.integration).values_list("type", flat=True)
    )
    tpl = set(WebhookEvent.objects.filter(integration=warehouse_integration).values_list("type", flat=True))
    assert {"order.created", "order.updated", "fulfillment.created"} <= channel
    assert "shipping_request.created" in tpl and "shipping_request.created" not in channel
    shipped = WebhookEvent.objects.get(integration=warehouse_integration, type="shipping_request.created")
    assert json.loads(shipped.body)["data"]["shipping_method"] == "GROUND"  # the 3PL's own code


def test_an_integration_without_the_grant_is_not_recorded(integration, ingest, order_body, products):
    key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="no orders", integration=integration, grants=["webhooks:read"]
    )
    ingest(order_body)

    assert not WebhookEvent.objects.filter(object_type="order").exists()


def test_a_rolled_back_change_records_no_event_and_takes_no_number(
    shop_key, ingest, order_body, products, standard_method
):
    order, _ = ingest(order_body)
    numbers = WebhookSequence.objects.get(object_type="order", object_id=str(order.pk)).last
    with pytest.raises(RuntimeError), transaction.atomic():
        order_services.hold(order, "never")
        raise RuntimeError

    assert WebhookSequence.objects.get(object_type="order", object_id=str(order.pk)).last == numbers
    assert WebhookEvent.objects.filter(object_id=str(order.pk)).count() == numbers


def test_test_events_are_numbered_on_their_subscription(subscribe, receiver):
    subscription, _ = subscribe(events=["order.created"])
    replay.send_test_event(subscription)
    replay.send_test_event(subscription)

    flush()

    assert sorted(b["sequence"] for b in bodies(receiver)) == [1, 2]


def test_recording_a_batch_costs_a_bounded_number_of_queries(
    org, integration, shop_key, warehouse_integration, products, django_assert_max_num_queries
):
    # given 40 product events in one batch, for an organization with two integrations that may read them
    for each in (integration, warehouse_integration):
        key_services.issue_key(
            kind=KeyKind.INTEGRATION, name="catalog", integration=each, grants=["products:read"]
        )
    integration.flow_products_out = warehouse_integration.flow_products_out = True
    integration.save()
    warehouse_integration.save()
    made = [Product(organization=org, sku=f"BULK-{n}", name=f"Bulk {n}") for n in range(40)]
    Product.objects.bulk_create(made)
    events = [("product.created", "product", p.pk, {}) for p in made]

    with django_assert_max_num_queries(16), transaction.atomic():
        outbox.emit_many(org, events)

    assert (
        WebhookEvent.objects.filter(type="product.created").count() == 80
    )  # both integrations, each its own rendering


def test_dispatch_copies_the_recorded_bodies_in_a_fixed_number_of_queries(
    subscribe, ingest, order_body, products, standard_method, django_assert_max_num_queries
):
    # given 40 orders (80 events) heard by two subscriptions of the integration
    subscribe(events=["order.created", "order.updated"])
    subscribe(events=["order.created"], path="/second")
    for n in range(40):
        ingest({**order_body, "external_id": f"D{n}"})

    # a savepoint; the outbox rows locked, their snapshots, the subscriptions, the grants; one INSERT, one UPDATE
    with django_assert_max_num_queries(8):
        dispatched, made = outbox.dispatch_outbox()

    assert dispatched >= 80 and made == 120
