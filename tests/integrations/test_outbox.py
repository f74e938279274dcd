"""The outbox: domain events → one delivery per subscription that may see them, rendered as the API answers it;
the dispatch rung once per transaction and found by the sweep when the broker is down."""

import pytest
from django.db import connection, transaction
from standardwebhooks.webhooks import Webhook

from core import signing
from integrations import lifecycle
from integrations.choices import DeliveryStatus
from integrations.models import (
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSequence,
)
from integrations.webhooks import delivery, doorbells, outbox
from orders import services as order_services
from tests.integrations.delivery_path import GRANTS, flush
from tokens import issuing as key_services
from tokens.choices import KeyKind

S = DeliveryStatus
pytestmark = pytest.mark.usefixtures("local_receivers")


# --- what is sent -------------------------------------------------------------------------------------


def test_an_order_is_delivered_signed_with_the_api_representation(
    subscribe, receiver, ingest, order_body, products, api_client, shop_key
):
    _, secret = subscribe(events=["order.created"])
    order, _ = ingest(order_body)

    assert flush() == 1

    [request] = receiver.requests
    Webhook(secret).verify(request.body, request.headers)  # the reference verifier accepts it
    signing.verify(secret, request.headers, request.body)
    body = request.json()
    assert set(body) == {"id", "type", "created_at", "sequence", "data"}
    assert body["type"] == "order.created" and body["sequence"] == 1
    assert body["id"].startswith("evt_") and request.headers["webhook-id"] == body["id"]
    assert body["data"] == api_client(shop_key).get(f"/api/v1/orders/{order.pk}").json()
    sent = WebhookDelivery.objects.get()
    assert (sent.status, sent.attempts, sent.last_status_code, sent.sequence) == (S.SUCCEEDED, 1, 200, 1)
    assert sent.succeeded_at is not None and sent.locked_until is None
    attempt = WebhookAttempt.objects.get()
    assert (
        attempt.succeeded
        and attempt.status_code == 200
        and attempt.request_headers["webhook-id"] == body["id"]
    )


def test_sequence_increases_per_object_and_types_are_filtered(
    subscribe, receiver, ingest, order_body, products
):
    subscribe(events=["order.created", "order.updated"])
    subscribe(events=["order.created"], path="/second")
    order, _ = ingest(order_body)
    order_services.hold(order, "Check the address")  # order.updated

    assert flush() == 3

    first = sorted(r.json()["sequence"] for r in receiver.requests if r.path == "/")
    second = [r.json()["type"] for r in receiver.requests if r.path == "/second"]
    assert first == [1, 2] and second == ["order.created"]
    counter = WebhookSequence.objects.get(object_type="order", object_id=str(order.pk))
    assert counter.last == 2  # one counter per integration and object, whatever the subscriptions


def test_events_of_other_integrations_and_organizations_are_not_delivered(
    subscribe, receiver, ingest, order_body, products, other_integration, warehouse_integration
):
    # The 3PL may read orders, but this one was never routed to it; the other org's channel sees nothing.
    subscribe()
    tpl_key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="3pl", integration=warehouse_integration, grants=GRANTS
    )
    subscribe(key=tpl_key, events=["order.created"], path="/3pl")
    other_key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="other", integration=other_integration, grants=GRANTS
    )
    subscribe(key=other_key, events=["order.created"], path="/other")
    ingest(order_body)

    flush()

    assert [r.path for r in receiver.requests] == ["/"]


def test_a_routed_order_reaches_the_3pl_as_its_api_renders_it(
    subscribe,
    receiver,
    ingest,
    order_body,
    stock,
    warehouse,
    warehouse_integration,
    standard_method,
    api_client,
):
    tpl_key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="3pl", integration=warehouse_integration, grants=GRANTS
    )
    subscribe(key=tpl_key, events=["shipping_request.created"], path="/3pl")
    order, _ = ingest(order_body)
    request = order_services.create_shipping_request(order, warehouse)

    flush()

    [received] = receiver.requests
    assert received.json()["type"] == "shipping_request.created"
    assert (
        received.json()["data"] == api_client(tpl_key).get(f"/api/v1/shipping-requests/{request.pk}").json()
    )
    assert received.json()["data"]["shipping_method"] == "GROUND"  # the 3PL's own code


def test_grants_are_checked_again_at_delivery_time(
    subscribe, receiver, ingest, order_body, products, shop_key
):
    subscribe(events=["order.created"])
    key_services.revoke(shop_key.key, reason="leaked")

    ingest(order_body)
    flush()

    assert receiver.requests == [] and not WebhookDelivery.objects.exists()
    assert OutboxEvent.objects.filter(dispatched_at__isnull=True).count() == 0


def test_disabled_integrations_get_nothing_and_owed_deliveries_wait(
    subscribe, receiver, ingest, order_body, products, integration
):
    subscribe(events=["order.created", "order.updated"])
    order, _ = ingest(order_body)
    outbox.dispatch_outbox()
    lifecycle.disable(integration)

    order_services.hold(order, "later")  # not dispatched to a disabled integration
    flush()
    assert receiver.requests == []
    assert WebhookDelivery.objects.get().status == S.PENDING

    lifecycle.enable(integration)
    flush()
    assert [r.json()["type"] for r in receiver.requests] == ["order.created"]


def test_workflow_switches_decide_outbound_flows(
    subscribe, receiver, ingest, order_body, products, integration
):
    subscribe(events=["fulfillment.created", "order.created"])
    integration.flow_fulfillments_out = False
    integration.save()
    event = outbox.emit(
        integration.organization, "fulfillment.created", "fulfillment", 1, {}, integration=integration
    )

    flush()

    assert event.type not in [r.json()["type"] for r in receiver.requests]


def test_integration_status_changes_go_to_that_integration_only(
    subscribe, receiver, integration, make_integration, org, channel_connector
):
    subscribe(events=["integration.status_changed"])
    sibling = make_integration(org, channel_connector, "Sibling shop")

    lifecycle.handshake(sibling)
    lifecycle.handshake(integration)
    flush()

    [received] = receiver.requests
    assert (
        received.json()["data"]["id"] == str(integration.pk)
        and received.json()["data"]["status"] == "connected"
    )


# --- the dispatch and its doorbell --------------------------------------------------------------------


def test_one_dispatch_per_transaction_is_scheduled(integration, org):
    with transaction.atomic():
        for n in range(5):
            outbox.emit(org, "order.updated", "order", n, {}, integration=integration)
        outbox.emit_many(org, [("product.updated", "product", 1, {})])
        pending = [func for _, func, _ in connection.run_on_commit if func is doorbells._dispatch_soon]

    assert pending == [doorbells._dispatch_soon]


def test_a_rolled_back_savepoint_does_not_take_the_dispatch_with_it(integration, org):
    with transaction.atomic():
        try:
            with transaction.atomic():
                outbox.emit(org, "order.updated", "order", 1, {}, integration=integration)
                raise RuntimeError
        except RuntimeError:
            pass
        outbox.emit(org, "order.updated", "order", 2, {}, integration=integration)
        pending = [func for _, func, _ in connection.run_on_commit if func is doorbells._dispatch_soon]

    assert pending  # the second event still rings after the commit


def test_dispatch_costs_the_same_queries_for_many_events(
    subscribe, ingest, order_body, products, django_assert_max_num_queries
):
    subscribe(events=["order.created"])
    for n in range(40):
        ingest({**order_body, "external_id": f"Q{n}"})

    with django_assert_max_num_queries(20):
        dispatched, made = outbox.dispatch_outbox()

    assert made == 40 and dispatched >= 40


def test_an_unreachable_broker_loses_nothing(subscribe, ingest, order_body, products, monkeypatch):
    subscribe(events=["order.created"])

    def down(*args, **kwargs):
        raise ConnectionRefusedError("redis is down")

    from integrations import tasks

    monkeypatch.setattr(tasks.dispatch_outbox_task, "apply_async", down)
    doorbells._dispatch_soon()  # the doorbell fails quietly …
    ingest(order_body)

    assert delivery.sweep()["deliveries"] == 1  # … and the sweeper finds the work in the database


def test_the_doorbell_rings_once_until_the_dispatch_starts(monkeypatch):
    from django.core.cache import cache

    from integrations import tasks

    rung = []
    monkeypatch.setattr(tasks.dispatch_outbox_task, "apply_async", lambda *a, **k: rung.append(1))
    cache.delete(doorbells.DOORBELL_KEY)

    doorbells._dispatch_soon()
    doorbells._dispatch_soon()  # a second commit before the task started: the first task will see its rows
    assert rung == [1]

    doorbells.answer_doorbell()  # the task starts: later commits ring again
    doorbells._dispatch_soon()
    assert rung == [1, 1]
    cache.delete(doorbells.DOORBELL_KEY)


# --- one bad row fails alone --------------------------------------------------------------------------


def test_an_object_that_cannot_be_rendered_does_not_stall_the_outbox(
    subscribe, receiver, ingest, order_body, products, monkeypatch
):
    # given a renderer with a bug: the event is rendered when it is recorded, inside the order's transaction
    subscribe(events=["order.created", "integration.status_changed"])

    def broken(integration, ids):
        raise RuntimeError("renderer bug")

    monkeypatch.setitem(outbox._renderers, "order", broken)
    order, created = ingest(order_body)
    flush()

    # the order is taken all the same; what could not be rendered is told to no one
    assert created and order.pk
    assert not OutboxEvent.objects.filter(dispatched_at__isnull=True).exists()
    assert receiver.requests == []
