"""
A connector's own deliveries (#16, item 8) reaching a real receiver on 127.0.0.1: a test event sent through the
API, a replay (the same webhook-id and body), and a secret rotation during whose overlap every delivery carries
both signatures — each checked with the `standardwebhooks` library and with the sample connectors' own
verification — and after which only the new secret signs.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from harness import receivers  # noqa: F401 - puts examples/ on sys.path for `_connector`
from integrations import housekeeping
from integrations.choices import TEST_EVENT_TYPE
from integrations.models import WebhookDelivery, WebhookSubscription
from tests.integrations.delivery_path import flush

import _connector  # isort: skip  # the sample connectors' verification (examples/_connector.py)
import _inbox  # isort: skip  # and their webhook endpoint (examples/_inbox.py)

pytestmark = pytest.mark.usefixtures("local_receivers")


@pytest.fixture
def shop(api_client, shop_key):
    return api_client(shop_key)


@pytest.fixture
def hook(shop, receiver):
    """A subscription of the shop's receiver, made through the API: (its id, its secret)."""
    created = shop.post(
        "/api/v1/webhooks", {"url": receiver.url + "/hook", "events": ["order.created"]}, format="json"
    )
    assert created.status_code == 201, created.content
    return created.json()["id"], created.json()["secret"]


def send_test(shop, webhook_id) -> dict:
    response = shop.post(f"/api/v1/webhooks/{webhook_id}/test")
    assert response.status_code == 202, response.content
    flush()
    return response.json()


def verifies(secret, request) -> bool:
    """The Standard Webhooks reference library's verdict on a received request, given one secret."""
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


def test_a_test_event_reaches_the_receiver_signed_and_is_listed_as_succeeded(shop, hook, receiver):
    webhook_id, secret = hook

    queued = send_test(shop, webhook_id)

    (request,) = receiver.wait_for(1)
    assert request.path == "/hook" and request.headers["webhook-id"] == queued["event_id"]
    assert verifies(secret, request)
    assert (request.json()["type"], request.json()["data"]["webhook"]) == (TEST_EVENT_TYPE, webhook_id)
    (row,) = shop.get(f"/api/v1/webhooks/{webhook_id}/deliveries").json()["results"]
    assert (row["id"], row["status"], row["last_status_code"]) == (queued["id"], "succeeded", 200)
    assert [(a["number"], a["status_code"], a["succeeded"]) for a in row["attempts"]] == [(1, 200, True)]


def test_a_replay_sends_the_same_webhook_id_and_body(shop, hook, receiver):
    webhook_id, secret = hook
    queued = send_test(shop, webhook_id)
    receiver.wait_for(1)

    response = shop.post(f"/api/v1/webhook-deliveries/{queued['id']}/replay")
    flush()

    assert response.status_code == 202, response.content
    first, again = receiver.wait_for(2)
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == queued["event_id"]
    assert again.body == first.body
    assert verifies(secret, again)
    assert WebhookDelivery.objects.get(pk=queued["id"]).status == "succeeded"


def test_during_the_overlap_both_secrets_verify_and_after_it_only_the_new_one(shop, hook, receiver):
    webhook_id, old = hook

    # When the secret is rotated (the default overlap) and a delivery goes out
    rotated = shop.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret").json()
    new = rotated["secret"]
    send_test(shop, webhook_id)

    # Then it carries two signatures: a receiver holding either secret accepts it — the reference library's
    # and the sample connectors' verification alike
    (during,) = receiver.wait_for(1)
    assert len(during.headers["webhook-signature"].split()) == 2
    assert verifies(old, during) and verifies(new, during)
    for secret in (old, new):
        _connector.verify(secret, during.headers, during.body)

    # When the overlap has ended
    WebhookSubscription.objects.filter(pk=webhook_id).update(
        previous_secret_until=timezone.now() - timedelta(seconds=1)
    )
    send_test(shop, webhook_id)

    # Then only the new secret signs
    after = receiver.wait_for(2)[1]
    assert len(after.headers["webhook-signature"].split()) == 1
    assert verifies(new, after) and not verifies(old, after)
    _connector.verify(new, after.headers, after.body)
    with pytest.raises(_connector.WebhookVerificationError):
        _connector.verify(old, after.headers, after.body)


def test_a_rotation_without_overlap_signs_with_the_new_secret_only(shop, hook, receiver):
    webhook_id, old = hook

    new = shop.post(
        f"/api/v1/webhooks/{webhook_id}/rotate-secret", {"overlap_hours": 0}, format="json"
    ).json()["secret"]
    send_test(shop, webhook_id)

    (request,) = receiver.wait_for(1)
    assert verifies(new, request) and not verifies(old, request)


def test_the_previous_secret_is_forgotten_once_its_overlap_ended(shop, hook, integration):
    webhook_id, _ = hook
    ended, running = (
        shop.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret").json(),
        shop.post(
            "/api/v1/webhooks", {"url": "https://93.184.216.34/x", "events": ["order.created"]}, format="json"
        ).json(),
    )
    shop.post(f"/api/v1/webhooks/{running['id']}/rotate-secret")
    WebhookSubscription.objects.filter(pk=webhook_id).update(
        previous_secret_until=timezone.now() - timedelta(minutes=1)
    )

    pruned = housekeeping.prune()

    assert pruned["previous_secrets"] == 1
    gone = WebhookSubscription.objects.get(pk=webhook_id)
    assert (gone.secret, gone.previous_secret, gone.previous_secret_until) == (ended["secret"], "", None)
    kept = WebhookSubscription.objects.get(pk=running["id"])
    assert kept.previous_secret == running["secret"] and kept.previous_secret_until > timezone.now()


def test_the_sample_connectors_endpoint_takes_deliveries_with_either_secret_during_the_overlap(shop):
    # Given the sample connectors' webhook endpoint (examples/_inbox.py), subscribed with the old secret
    received = []
    endpoint = _inbox.WebhookEndpoint(received.append)
    server = _connector.JsonServer("127.0.0.1:0", {("POST", "/webhooks"): endpoint}).start()
    try:
        created = shop.post(
            "/api/v1/webhooks", {"url": server.url + "/webhooks", "events": ["order.created"]}, format="json"
        ).json()
        old = endpoint.secret = created["secret"]
        new = shop.post(f"/api/v1/webhooks/{created['id']}/rotate-secret").json()["secret"]

        # When one test event reaches it still holding the old secret, and one after it switched to the new
        outcomes = []
        for secret in (old, new):
            endpoint.secret = secret
            outcomes.append(send_test(shop, created["id"])["id"])
        # and one after the overlap, to an endpoint that never switched
        WebhookSubscription.objects.filter(pk=created["id"]).update(
            previous_secret_until=timezone.now() - timedelta(seconds=1)
        )
        endpoint.secret = old
        outcomes.append(send_test(shop, created["id"])["id"])
    finally:
        server.stop()

    # Then both were taken during the overlap; after it, the old secret's endpoint refused (401)
    answered = [WebhookDelivery.objects.get(pk=pk).last_status_code for pk in outcomes]
    assert answered == [200, 200, 401]
    assert [event["type"] for event in received] == [TEST_EVENT_TYPE, TEST_EVENT_TYPE]
