"""
Deliveries in the connector's own hands (#16, item 8), through the API: a subscription's deliveries with their
attempts, one delivery, replaying it, a test event and rotating the signing secret — each for the key's own
subscriptions only, each behind its grant. What reaches a receiver is in tests/integrations/test_webhook_self_service.py.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from core import crypto
from integrations.choices import TEST_EVENT_TYPE, DeliveryStatus, EventKind
from integrations.models import IntegrationEvent, WebhookDelivery, WebhookSubscription
from tests.api.helpers import assert_error
from tests.fixtures.deliveries import make_attempt, make_delivery, make_subscription
from tokens import issuing as key_services
from tokens.choices import KeyKind

S = DeliveryStatus
READ, WRITE = "webhooks:read", "webhooks:write"


@pytest.fixture
def key_with(integration):
    def make(*grants, target=None):
        return key_services.issue_key(
            kind=KeyKind.INTEGRATION, name="hooks", integration=target or integration, grants=list(grants)
        )

    return make


@pytest.fixture
def shop(api_client, key_with):
    return api_client(key_with(READ, WRITE))


@pytest.fixture
def subscription(integration):
    return make_subscription(integration)


def deliveries_url(subscription) -> str:
    return f"/api/v1/webhooks/{subscription.pk}/deliveries"


# --- listing --------------------------------------------------------------------------------------------


def test_a_subscriptions_deliveries_are_listed_newest_first_with_their_attempts(shop, subscription):
    # Given a delivery that failed twice then succeeded, and a newer one failing and due again
    old = make_delivery(subscription, S.SUCCEEDED, ago=timedelta(hours=2), succeeded_at=timezone.now())
    make_attempt(old, 1, status_code=500, duration_ms=30)
    make_attempt(old, 2, succeeded=True, duration_ms=12)
    failing = make_delivery(subscription, S.FAILED, ago=timedelta(minutes=1))
    make_attempt(failing, 1, status_code=None, error="Timed out", duration_ms=2000)

    # When
    response = shop.get(deliveries_url(subscription))

    # Then
    assert response.status_code == 200, response.content
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [str(failing.pk), str(old.pk)]
    newest, oldest = rows
    assert set(newest) == {
        "id", "webhook", "event_id", "event_type", "sequence", "status", "created_at", "succeeded_at",
        "next_attempt_at", "last_attempt_at", "last_status_code", "last_duration_ms", "last_error", "attempts",
    }  # fmt: skip
    assert (newest["status"], newest["event_id"], newest["event_type"], newest["webhook"]) == (
        "failed",
        failing.event_id,
        "order.created",
        str(subscription.pk),
    )
    assert newest["next_attempt_at"] is not None and newest["sequence"] == failing.sequence
    assert newest["attempts"] == [
        {
            "number": 1,
            "started_at": newest["attempts"][0]["started_at"],
            "status_code": None,
            "duration_ms": 2000,
            "succeeded": False,
            "error": "Timed out",
        }
    ]
    assert oldest["next_attempt_at"] is None and oldest["succeeded_at"] is not None
    assert [(a["number"], a["status_code"], a["succeeded"]) for a in oldest["attempts"]] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert "body" not in newest and "whsec_" not in response.content.decode()


def test_the_list_is_filtered_by_status(shop, subscription):
    dead = make_delivery(subscription, S.DEAD)
    make_delivery(subscription, S.SUCCEEDED)

    response = shop.get(deliveries_url(subscription), {"status": "dead"})

    assert [row["id"] for row in response.json()["results"]] == [str(dead.pk)]


def test_an_unknown_status_is_a_400_naming_the_filter(shop, subscription):
    response = shop.get(deliveries_url(subscription), {"status": "lost"})

    assert "status" in assert_error(response, 400, "validation_error")


def test_the_list_is_paged_by_cursor(shop, subscription):
    made = [make_delivery(subscription, S.DEAD, ago=timedelta(minutes=n)) for n in range(1, 6)]

    first = shop.get(deliveries_url(subscription), {"limit": 3}).json()
    second = shop.get(first["next"]).json()

    assert [r["id"] for r in first["results"] + second["results"]] == [str(d.pk) for d in made]
    assert second["next"] is None


def test_only_the_subscriptions_own_deliveries_are_listed(shop, integration, subscription):
    other = make_subscription(integration, url="https://hooks.example.test/other")
    mine = make_delivery(subscription)
    make_delivery(other)

    rows = shop.get(deliveries_url(subscription)).json()["results"]

    assert [row["id"] for row in rows] == [str(mine.pk)]


@pytest.mark.parametrize("n", [2, 40])
def test_the_list_runs_a_bounded_number_of_queries(shop, subscription, django_assert_max_num_queries, n):
    for _ in range(n):
        make_attempt(make_delivery(subscription), 1)
    shop.get("/api/v1/me")  # the key's first use writes its last-used time; not the list's cost

    with django_assert_max_num_queries(8):
        response = shop.get(deliveries_url(subscription), {"limit": 500})

    assert len(response.json()["results"]) == n


def test_another_integrations_or_organizations_subscription_is_a_404(
    shop, org, channel_connector, make_integration, other_integration
):
    sibling = make_subscription(make_integration(org, channel_connector, "Sibling shop"))
    foreign = make_subscription(other_integration)
    for theirs in (sibling, foreign):
        delivery = make_delivery(theirs)
        assert_error(shop.get(deliveries_url(theirs)), 404, "not_found")
        assert_error(shop.get(f"/api/v1/webhook-deliveries/{delivery.pk}"), 404, "not_found")
        assert_error(shop.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay"), 404, "not_found")
        assert_error(shop.post(f"/api/v1/webhooks/{theirs.pk}/test"), 404, "not_found")
        assert_error(shop.post(f"/api/v1/webhooks/{theirs.pk}/rotate-secret"), 404, "not_found")
    assert WebhookDelivery.objects.filter(event_type=TEST_EVENT_TYPE).count() == 0
    assert not WebhookDelivery.objects.filter(status=S.PENDING).exists()
    assert not WebhookSubscription.objects.filter(previous_secret_until__isnull=False).exists()


def test_an_org_key_sees_its_organizations_deliveries(api_client, org, org_admin, subscription):
    delivery = make_delivery(subscription)
    key = key_services.issue_key(
        kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=[READ, WRITE]
    )

    rows = api_client(key).get(deliveries_url(subscription)).json()["results"]

    assert [row["id"] for row in rows] == [str(delivery.pk)]


# --- grants ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,grant",
    [
        ("get", "/api/v1/webhooks/{sub}/deliveries", READ),
        ("get", "/api/v1/webhook-deliveries/{delivery}", READ),
        ("post", "/api/v1/webhook-deliveries/{delivery}/replay", WRITE),
        ("post", "/api/v1/webhooks/{sub}/test", WRITE),
        ("post", "/api/v1/webhooks/{sub}/rotate-secret", WRITE),
    ],
)
def test_each_route_needs_its_grant(api_client, key_with, subscription, method, path, grant):
    delivery = make_delivery(subscription)
    other = WRITE if grant == READ else READ
    client = api_client(key_with(other, "orders:read"))

    response = getattr(client, method)(path.format(sub=subscription.pk, delivery=delivery.pk))

    assert assert_error(response, 403, "missing_grant") == {"required": [grant]}
    delivery.refresh_from_db()
    assert delivery.status == S.DEAD and WebhookDelivery.objects.count() == 1


# --- one delivery and replaying it ----------------------------------------------------------------------


def test_one_delivery_shows_the_body_it_sends(shop, subscription):
    delivery = make_delivery(subscription)
    make_attempt(delivery, 1)

    body = shop.get(f"/api/v1/webhook-deliveries/{delivery.pk}").json()

    assert body["payload"]["id"] == delivery.event_id and body["payload"]["data"] == {
        "id": "42",
        "number": "#1042",
    }
    assert len(body["attempts"]) == 1


@pytest.mark.parametrize("status", [S.DEAD, S.SUCCEEDED, S.FAILED])
def test_replay_queues_the_delivery_again_now(shop, subscription, status):
    delivery = make_delivery(subscription, status)
    make_attempt(delivery, 1)

    response = shop.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")

    assert response.status_code == 202, response.content
    assert (response.json()["id"], response.json()["status"]) == (str(delivery.pk), "pending")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (S.PENDING, 0)
    assert delivery.next_attempt_at <= timezone.now()
    trail = IntegrationEvent.objects.filter(kind=EventKind.DELIVERY).get()
    assert trail.actor.startswith("key:") and "replay" in trail.message


def test_replaying_a_delivery_not_yet_tried_is_a_conflict(shop, subscription):
    delivery = make_delivery(subscription, S.PENDING)

    response = shop.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")

    assert assert_error(response, 409, "conflict") == {"status": "pending"}
    assert not IntegrationEvent.objects.filter(kind=EventKind.DELIVERY).exists()


def test_replay_and_test_to_a_switched_off_subscription_are_conflicts(shop, subscription):
    delivery = make_delivery(subscription, S.DEAD)
    WebhookSubscription.objects.filter(pk=subscription.pk).update(active=False, disabled_reason="410 Gone")

    replayed = shop.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")
    tested = shop.post(f"/api/v1/webhooks/{subscription.pk}/test")

    assert assert_error(replayed, 409, "conflict") == {"active": False}
    assert assert_error(tested, 409, "conflict") == {"active": False}
    delivery.refresh_from_db()
    assert delivery.status == S.DEAD and WebhookDelivery.objects.count() == 1


# --- test event -----------------------------------------------------------------------------------------


def test_a_test_event_is_queued_and_listed(shop, subscription):
    response = shop.post(f"/api/v1/webhooks/{subscription.pk}/test")

    assert response.status_code == 202, response.content
    answer = response.json()
    assert (answer["event_type"], answer["status"], answer["attempts"]) == (TEST_EVENT_TYPE, "pending", [])
    listed = shop.get(deliveries_url(subscription)).json()["results"]
    assert [(row["id"], row["event_id"]) for row in listed] == [(answer["id"], answer["event_id"])]
    payload = shop.get(f"/api/v1/webhook-deliveries/{answer['id']}").json()["payload"]
    assert (payload["type"], payload["data"]["webhook"]) == (TEST_EVENT_TYPE, str(subscription.pk))


# --- rotating the secret --------------------------------------------------------------------------------


def test_rotation_answers_the_new_secret_once_and_keeps_the_old_one_for_the_default_overlap(
    shop, subscription, settings
):
    settings.WEBHOOK_SECRET_OVERLAP_HOURS = 24
    old = subscription.secret
    before = timezone.now()

    response = shop.post(f"/api/v1/webhooks/{subscription.pk}/rotate-secret")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"id", "url", "events", "active", "secret", "previous_secret_valid_until"}
    assert body["secret"].startswith("whsec_") and body["secret"] != old
    subscription.refresh_from_db()
    assert (subscription.secret, subscription.previous_secret) == (body["secret"], old)
    until = subscription.previous_secret_until
    assert before + timedelta(hours=24) <= until <= timezone.now() + timedelta(hours=24)
    assert body["previous_secret_valid_until"].replace("Z", "+00:00") == until.isoformat()
    # Stored encrypted like the current secret, and neither is shown again nor written on the trail.
    stored = WebhookSubscription.objects.values_list("previous_secret", flat=True).get()
    assert crypto.decrypt(stored.token, what="test") == old
    assert body["secret"] not in shop.get("/api/v1/webhooks").content.decode()
    trail = IntegrationEvent.objects.filter(kind=EventKind.CONFIG_CHANGED).get()
    assert "rotated" in trail.message and old not in str(trail.data) and body["secret"] not in str(trail.data)


def test_the_overlap_is_settable_per_rotation_and_zero_drops_the_old_secret(shop, subscription):
    url = f"/api/v1/webhooks/{subscription.pk}/rotate-secret"

    two_hours = shop.post(url, {"overlap_hours": 2}, format="json").json()
    subscription.refresh_from_db()
    assert subscription.previous_secret_until <= timezone.now() + timedelta(hours=2)

    none = shop.post(url, {"overlap_hours": 0}, format="json").json()
    subscription.refresh_from_db()
    assert none["previous_secret_valid_until"] is None
    assert (subscription.secret, subscription.previous_secret) == (none["secret"], "")
    assert two_hours["secret"] != none["secret"]


@pytest.mark.parametrize("overlap", [-1, 169, "a day", None])
def test_a_bad_overlap_is_a_400_and_changes_nothing(shop, subscription, overlap):
    before = subscription.secret

    response = shop.post(
        f"/api/v1/webhooks/{subscription.pk}/rotate-secret", {"overlap_hours": overlap}, format="json"
    )

    assert "overlap_hours" in assert_error(response, 400, "validation_error")
    subscription.refresh_from_db()
    assert subscription.secret == before and subscription.previous_secret_until is None


def test_only_an_integration_key_rotates(api_client, org, org_admin, subscription):
    key = key_services.issue_key(
        kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=[READ, WRITE]
    )
    before = subscription.secret

    response = api_client(key).post(f"/api/v1/webhooks/{subscription.pk}/rotate-secret")

    assert assert_error(response, 403, "missing_grant") == {"key_kind": ["integration"]}
    subscription.refresh_from_db()
    assert subscription.secret == before
