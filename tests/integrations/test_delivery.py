"""Webhook delivery: signed POSTs to a real receiver on 127.0.0.1, retries, dead-lettering, the SSRF guard at
send time, leases."""

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from automations.choices import ExceptionStatus
from automations.models import SyncException
from core import signing
from core.sync_exceptions import ExceptionKind
from integrations import lifecycle
from integrations.choices import DeliveryStatus, EventKind, IntegrationStatus
from integrations.models import (
    IntegrationEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from integrations.webhooks import delivery, outbox, replay, subscriptions
from orders import services as order_services
from tests.integrations.delivery_path import connected, flush, make_due

S = DeliveryStatus
pytestmark = pytest.mark.usefixtures("local_receivers")


# --- retries and dead-lettering -----------------------------------------------------------------------


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
    # Nine retries have happened: the next failure is the last (10 tries, docs/connectors/contract.md's
    # schedule).
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


# --- the SSRF guard at send time ----------------------------------------------------------------------


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


# --- claims and leases --------------------------------------------------------------------------------


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


@pytest.mark.django_db(transaction=True)
def test_an_outcome_for_a_delivery_deleted_while_it_was_sent_is_dropped_and_the_rest_recorded(
    subscribe, ingest, order_body, products
):
    kept, _ = subscribe(events=["order.created"])
    removed, _ = subscribe(events=["order.created"], path="/gone")
    ingest(order_body)
    outbox.dispatch_outbox()
    claimed = delivery.claim()
    assert len(claimed) == 2

    # while the worker sends them, the integration removes one subscription, and its delivery with it
    subscriptions.unsubscribe(removed)
    delivery.record_outcomes(
        claimed, [delivery.outbound.Outcome(ok=True, status_code=200)] * 2, timezone.now()
    )

    # the other outcome is recorded; no attempt points at the removed delivery (the commit used to fail on it)
    assert list(WebhookDelivery.objects.values_list("subscription_id", "status")) == [(kept.pk, S.SUCCEEDED)]
    assert list(WebhookAttempt.objects.values_list("delivery__subscription_id", flat=True)) == [kept.pk]


def test_a_batch_of_outcomes_is_recorded_in_a_fixed_number_of_queries(
    subscribe, ingest, order_body, products, django_assert_max_num_queries
):
    for n in range(12):
        subscribe(events=["order.created"], path=f"/{n}")
    ingest(order_body)
    outbox.dispatch_outbox()
    claimed = delivery.claim()
    assert len(claimed) == 12
    ok, failed = (
        delivery.outbound.Outcome(ok=True, status_code=200),
        delivery.outbound.Outcome(ok=False, error="x"),
    )

    # lock, one UPDATE per kind of outcome, the attempts, the integration's health: not one UPDATE per delivery
    with django_assert_max_num_queries(8):
        delivery.record_outcomes(claimed, [ok] * 6 + [failed] * 6, timezone.now())

    statuses = WebhookDelivery.objects.order_by("pk").values_list("status", "attempts", "last_error")
    assert list(statuses) == [(S.SUCCEEDED, 1, "")] * 6 + [(S.FAILED, 1, "x")] * 6
    assert WebhookAttempt.objects.count() == 12
    assert all(d.next_attempt_at > timezone.now() for d in WebhookDelivery.objects.filter(status=S.FAILED))


# --- one bad row fails alone --------------------------------------------------------------------------


def test_a_delivery_that_cannot_be_signed_fails_alone(subscribe, receiver, ingest, order_body, products):
    good, _ = subscribe(events=["order.created"])
    bad, _ = subscribe(events=["order.created"], path="/bad")
    WebhookSubscription.objects.filter(pk=bad.pk).update(secret="not-a-secret")
    ingest(order_body)

    flush()

    statuses = dict(WebhookDelivery.objects.values_list("subscription_id", "status"))
    assert statuses == {good.pk: S.SUCCEEDED, bad.pk: S.FAILED}
    assert WebhookDelivery.objects.get(subscription=bad).last_error.startswith("Could not send")
