"""Webhook delivery: outbox → deliveries → signed POSTs to a real receiver on 127.0.0.1, retries, dead-lettering."""

import socket
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from automations.choices import ExceptionStatus
from automations.models import SyncException
from core import signing
from core.sync_exceptions import ExceptionKind
from integrations import housekeeping, lifecycle
from integrations.choices import DeliveryStatus, EventKind, IntegrationStatus
from integrations.models import (
    Integration,
    IntegrationEvent,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from integrations.webhooks import delivery, doorbells, outbox, replay, subscriptions
from orders import services as order_services
from tokens import issuing as key_services
from tokens.choices import KeyKind

GRANTS = ["webhooks:read", "webhooks:write", "orders:read", "fulfillments:read", "shipping_requests:read"]
S = DeliveryStatus


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT = 2.0
    settings.WEBHOOK_CONNECT_TIMEOUT = 1.0


@pytest.fixture
def shop_key(integration):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="hooks", integration=integration, grants=GRANTS
    )


@pytest.fixture
def subscribe(shop_key, receiver):
    def go(key=None, events=("order.created", "order.updated", "fulfillment.created"), path="/"):
        key = key or shop_key
        return subscriptions.subscribe(key.key.integration, receiver.url + path, list(events), key.key)

    return go


def flush():
    """Everything owed, now: dispatch the outbox, then deliver until nothing is due."""
    while outbox.dispatch_outbox()[0]:
        pass
    sent = 0
    while batch := delivery.deliver_due():
        sent += batch
    return sent


def make_due(**filters):
    WebhookDelivery.objects.filter(**filters).update(next_attempt_at=timezone.now())


def connected(integration):
    Integration.objects.filter(pk=integration.pk).update(status=IntegrationStatus.CONNECTED)
    integration.refresh_from_db()
    return integration


# --- what is sent ----------------------------------------------------------------------------------------


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


def test_sequence_increases_per_subscription_and_types_are_filtered(
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
    assert WebhookSubscription.objects.order_by("pk").values_list("last_sequence", flat=True)[0] == 2


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


# --- retries and dead-lettering --------------------------------------------------------------------------


def test_a_failed_delivery_is_retried_with_the_same_webhook_id(
    subscribe, receiver, ingest, order_body, products
):
    subscribe(events=["order.created"])
    receiver.script = [(500, "boom")]
    ingest(order_body)

    flush()
    failed = WebhookDelivery.objects.get()
    assert (failed.status, failed.attempts, failed.last_status_code, failed.last_response) == (
        S.FAILED,
        1,
        500,
        "boom",
    )
    assert timedelta(seconds=4) <= failed.next_attempt_at - failed.last_attempt_at <= timedelta(seconds=6)
    assert delivery.deliver_due() == 0  # not due yet

    make_due()
    flush()

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    done = WebhookDelivery.objects.get()
    assert (done.status, done.attempts) == (S.SUCCEEDED, 2)
    assert list(WebhookAttempt.objects.order_by("number").values_list("number", "succeeded")) == [
        (1, False),
        (2, True),
    ]


@pytest.mark.parametrize(
    ("answer", "error"),
    [((302, "", {"location": "http://127.0.0.1:1/"}), "Redirect (302) not followed."), ((404, "no"), "")],
)
def test_redirects_and_errors_are_failures(subscribe, receiver, ingest, order_body, products, answer, error):
    subscribe(events=["order.created"])
    receiver.script = [answer]
    ingest(order_body)

    flush()

    failed = WebhookDelivery.objects.get()
    assert failed.status == S.FAILED and failed.last_error == error
    assert len(receiver.requests) == 1  # the redirect was not followed


def test_a_slow_receiver_times_out(subscribe, receiver, ingest, order_body, products, settings):
    settings.WEBHOOK_TIMEOUT = 0.3
    subscribe(events=["order.created"])
    receiver.delay = 1.0
    ingest(order_body)

    flush()

    failed = WebhookDelivery.objects.get()
    assert failed.status == S.FAILED and failed.last_error == "Timed out." and failed.last_status_code is None


def test_retry_after_brings_a_retry_forward(subscribe, receiver, ingest, order_body, products):
    subscribe(events=["order.created"])
    receiver.script = [(503, "busy", {"retry-after": "1"})]
    ingest(order_body)

    flush()

    failed = WebhookDelivery.objects.get()
    assert failed.next_attempt_at - failed.last_attempt_at <= timedelta(seconds=1.1)


def test_after_the_last_retry_the_delivery_is_dead_and_an_exception_raised(
    subscribe, receiver, ingest, order_body, products, integration
):
    subscribe(events=["order.created"])
    receiver.default = (500, "still broken")
    ingest(order_body)
    flush()
    # Nine retries have happened: the next failure is the last (10 tries, API.md's schedule).
    WebhookDelivery.objects.update(attempts=len(signing.RETRY_DELAYS), next_attempt_at=timezone.now())

    flush()

    dead = WebhookDelivery.objects.get()
    assert dead.status == S.DEAD and dead.attempts == len(signing.RETRY_DELAYS) + 1
    exc = SyncException.objects.get(kind=ExceptionKind.DELIVERY_DEAD)
    assert (
        exc.integration == integration and exc.status == ExceptionStatus.OPEN and dead.event_id in exc.message
    )
    assert IntegrationEvent.objects.filter(integration=integration, kind=EventKind.DELIVERY).exists()

    # Replayed after the receiver is fixed: delivered, same id, and the exception resolves itself.
    receiver.default = (200, "ok")
    assert replay.replay(WebhookDelivery.objects.all()) == 1
    flush()
    dead.refresh_from_db()
    assert dead.status == S.SUCCEEDED and receiver.requests[-1].headers["webhook-id"] == dead.event_id
    exc.refresh_from_db()
    assert exc.status == ExceptionStatus.RESOLVED


def test_410_gone_switches_the_subscription_off(
    subscribe, receiver, ingest, order_body, products, integration
):
    subscription, _ = subscribe(events=["order.created", "order.updated"])
    receiver.script = [(410, "unsubscribe me")]
    order, _ = ingest(order_body)

    flush()

    subscription.refresh_from_db()
    assert not subscription.active and "410" in subscription.disabled_reason
    assert WebhookDelivery.objects.get().status == S.DEAD
    assert IntegrationEvent.objects.filter(integration=integration, message__contains="switched off").exists()
    order_services.hold(order, "no more deliveries")
    flush()
    assert len(receiver.requests) == 1


def test_five_days_of_failures_switch_the_subscription_off(subscribe, receiver, ingest, order_body, products):
    subscription, _ = subscribe(events=["order.created"])
    receiver.default = (500, "down")
    ingest(order_body)
    flush()
    subscription.refresh_from_db()
    assert subscription.failing_since is not None and subscription.active

    WebhookSubscription.objects.update(failing_since=timezone.now() - timedelta(days=5, minutes=1))
    make_due()
    flush()

    subscription.refresh_from_db()
    assert not subscription.active and "5 days" in subscription.disabled_reason


def test_a_success_clears_the_run_of_failures(subscribe, receiver, ingest, order_body, products):
    subscription, _ = subscribe(events=["order.created"])
    receiver.script = [(500, "down")]
    ingest(order_body)
    flush()
    make_due()

    flush()

    subscription.refresh_from_db()
    assert subscription.failing_since is None and subscription.active


def test_consecutive_failures_move_a_connected_integration_to_error_and_back(
    subscribe, receiver, ingest, order_body, products, integration, settings
):
    settings.INTEGRATION_FAILURE_THRESHOLD = 3
    connected(integration)
    subscribe(events=["order.created"])
    receiver.default = (500, "down")
    for n in range(3):
        ingest({**order_body, "external_id": f"F{n}"})
    flush()

    integration.refresh_from_db()
    assert integration.status == IntegrationStatus.ERROR and integration.consecutive_failures == 3
    assert "3 outbound deliveries or calls failed in a row" in integration.status_reason
    assert SyncException.objects.get(kind=ExceptionKind.INTEGRATION_ERROR).status == ExceptionStatus.OPEN

    lifecycle.reenable(integration)
    receiver.default = (200, "ok")
    make_due()
    flush()

    integration.refresh_from_db()
    assert integration.status == IntegrationStatus.CONNECTED and integration.consecutive_failures == 0
    assert SyncException.objects.get(kind=ExceptionKind.INTEGRATION_ERROR).status == ExceptionStatus.RESOLVED


def test_failures_below_the_threshold_change_nothing(
    subscribe, receiver, ingest, order_body, products, integration
):
    connected(integration)
    subscribe(events=["order.created"])
    receiver.script = [(500, "blip")]
    ingest(order_body)

    flush()

    integration.refresh_from_db()
    assert integration.status == IntegrationStatus.CONNECTED and integration.consecutive_failures == 1


# --- the SSRF guard at send time -------------------------------------------------------------------------


def test_a_private_target_is_refused_at_send_time(
    subscribe, receiver, ingest, order_body, products, settings
):
    subscribe(events=["order.created"])  # allowed when subscribing (private targets on) …
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # … then switched off: the send re-checks
    ingest(order_body)

    flush()

    failed = WebhookDelivery.objects.get()
    assert failed.status == S.FAILED and failed.last_error.startswith("Refused target")
    assert receiver.requests == []


def test_a_public_target_is_connected_to_at_the_checked_address(settings, monkeypatch):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("93.184.216.34", 443))])

    url, headers, extensions = delivery.outbound.pinned_target("https://hooks.example.test:8443/in?x=1")

    assert url == "https://93.184.216.34:8443/in?x=1"
    assert headers == {"host": "hooks.example.test:8443"} and extensions == {
        "sni_hostname": "hooks.example.test"
    }


# --- claims, leases and the doorbell ---------------------------------------------------------------------


def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_ends(
    subscribe, ingest, order_body, products
):
    subscribe(events=["order.created"])
    ingest(order_body)
    outbox.dispatch_outbox()

    [claimed] = delivery.claim()
    assert delivery.claim() == []  # leased to the first worker

    # That worker died: once the lease is over, the delivery is due again and taken over.
    WebhookDelivery.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    [again] = delivery.claim()
    assert again.pk == claimed.pk and again.attempts == 2

    # The first worker's late outcome does not overwrite the one that took over.
    delivery.record_outcomes([claimed], [delivery.outbound.Outcome(ok=False, error="late")], timezone.now())
    assert WebhookDelivery.objects.get().last_error == ""


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


# --- housekeeping ----------------------------------------------------------------------------------------


def test_prune_deletes_old_succeeded_deliveries_only(
    subscribe, receiver, ingest, order_body, products, settings
):
    subscribe(events=["order.created"])
    receiver.script = [(200, "ok"), (500, "no")]
    ingest(order_body)
    ingest({**order_body, "external_id": "2"})
    flush()
    old = timezone.now() - timedelta(days=settings.WEBHOOK_RETENTION_DAYS + 1)
    WebhookDelivery.objects.update(succeeded_at=old, created_at=old)
    OutboxEvent.objects.update(dispatched_at=old)

    pruned = housekeeping.prune()

    assert pruned["deliveries"] == 1 and pruned["outbox_events"] >= 2
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == [S.FAILED]
    assert WebhookAttempt.objects.count() == 1


# --- one bad row fails alone -----------------------------------------------------------------------------


def test_an_object_that_cannot_be_rendered_does_not_stall_the_outbox(
    subscribe, receiver, ingest, order_body, products, monkeypatch
):
    subscribe(events=["order.created", "integration.status_changed"])
    ingest(order_body)

    def broken(integration, ids):
        raise RuntimeError("renderer bug")

    monkeypatch.setitem(outbox._renderers, "order", broken)
    flush()

    assert not OutboxEvent.objects.filter(dispatched_at__isnull=True).exists()
    assert receiver.requests == []


def test_a_delivery_that_cannot_be_signed_fails_alone(subscribe, receiver, ingest, order_body, products):
    good, _ = subscribe(events=["order.created"])
    bad, _ = subscribe(events=["order.created"], path="/bad")
    WebhookSubscription.objects.filter(pk=bad.pk).update(secret="not-a-secret")
    ingest(order_body)

    flush()

    statuses = dict(WebhookDelivery.objects.values_list("subscription_id", "status"))
    assert statuses == {good.pk: S.SUCCEEDED, bad.pk: S.FAILED}
    assert WebhookDelivery.objects.get(subscription=bad).last_error.startswith("Could not send")


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
