"""
Webhook subscriptions are bounded (#14, finding 9): at most WEBHOOK_MAX_SUBSCRIPTIONS per integration, and
one subscription per URL and event type. Either refusal is 409 `conflict` and creates nothing; two
subscribes at once are serialized on the integration's row, so neither rule can be raced past.
"""

import threading
import time

import pytest
from django.db import connection, transaction

from core.signing import new_secret
from integrations.models import Integration, IntegrationEvent, WebhookSubscription
from integrations.webhooks import subscriptions
from tokens import issuing as key_services
from tokens.choices import KeyKind

URL = "/api/v1/webhooks"
HOOK = "http://127.0.0.1:9/hooks"  # never called: the suite allows loopback targets, nothing is delivered
GRANTS = ["webhooks:read", "webhooks:write", "orders:read", "inventory:read"]


def issue(integration):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="hooks", integration=integration, grants=GRANTS
    )


@pytest.fixture
def shop(api_client, integration):
    return api_client(issue(integration))


def subscribe(client, url=HOOK, events=("order.created",)):
    return client.post(URL, {"url": url, "events": list(events)}, format="json")


def error(response):
    return response.status_code, response.json()["error"]["code"]


def added_events():
    return IntegrationEvent.objects.filter(message__startswith="Webhook subscription added").count()


# --- the cap ---------------------------------------------------------------------------------------------


def test_the_default_cap_is_twenty_subscriptions(shop, integration):
    for i in range(20):
        assert subscribe(shop, url=f"{HOOK}/{i}").status_code == 201

    refused = subscribe(shop, url=f"{HOOK}/20")

    assert error(refused) == (409, "conflict")
    assert refused.json()["error"]["details"] == {"limit": 20}
    assert WebhookSubscription.objects.filter(integration=integration).count() == 20
    assert added_events() == 20


def test_the_cap_is_a_setting_and_a_deleted_subscription_frees_its_place(shop, settings):
    settings.WEBHOOK_MAX_SUBSCRIPTIONS = 2
    first = subscribe(shop, url=f"{HOOK}/a").json()
    subscribe(shop, url=f"{HOOK}/b")
    assert error(subscribe(shop, url=f"{HOOK}/c")) == (409, "conflict")

    assert shop.delete(f"{URL}/{first['id']}").status_code == 204

    assert subscribe(shop, url=f"{HOOK}/c").status_code == 201


def test_the_cap_counts_switched_off_subscriptions_and_only_the_integrations_own(
    shop, integration, other_integration, api_client, settings
):
    settings.WEBHOOK_MAX_SUBSCRIPTIONS = 2
    other = api_client(issue(other_integration))
    assert subscribe(other, url=f"{HOOK}/x").status_code == 201  # another integration's: not counted
    subscribe(shop, url=f"{HOOK}/a")
    subscribe(shop, url=f"{HOOK}/b")
    WebhookSubscription.objects.filter(integration=integration).update(active=False)

    assert error(subscribe(shop, url=f"{HOOK}/c")) == (409, "conflict")  # switched off still counts
    assert subscribe(other, url=f"{HOOK}/y").status_code == 201


# --- one subscription per URL and event type ---------------------------------------------------------------


def test_a_second_subscription_to_the_same_url_and_event_is_refused(shop, integration):
    subscribe(shop, events=["order.created", "order.updated"])

    refused = subscribe(shop, events=["inventory.updated", "order.updated"])

    assert error(refused) == (409, "conflict")
    assert refused.json()["error"]["details"] == {"url": HOOK, "events": ["order.updated"]}
    assert WebhookSubscription.objects.get().event_types == ["order.created", "order.updated"]
    assert added_events() == 1


def test_the_same_url_for_other_events_and_another_url_for_the_same_events_are_accepted(shop):
    subscribe(shop, events=["order.created"])

    assert subscribe(shop, events=["order.updated"]).status_code == 201
    assert subscribe(shop, url=HOOK + "/other", events=["order.created"]).status_code == 201
    assert WebhookSubscription.objects.count() == 3


def test_a_switched_off_subscription_still_holds_its_url_until_deleted(shop):
    first = subscribe(shop).json()
    WebhookSubscription.objects.update(active=False)

    assert error(subscribe(shop)) == (409, "conflict")

    shop.delete(f"{URL}/{first['id']}")
    assert subscribe(shop).status_code == 201  # the way to a new secret: delete, then subscribe again


def test_another_integration_may_subscribe_the_same_url_and_event(shop, other_integration, api_client):
    subscribe(shop)

    assert subscribe(api_client(issue(other_integration))).status_code == 201


# --- racing ----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_subscribe_waits_for_one_in_progress_and_then_sees_it(integration):
    key = issue(integration).key
    outcome = {}

    def second():
        try:
            outcome["made"] = subscriptions.subscribe(integration, HOOK, ["order.created"], key)
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    # given: a first subscribe in progress, as subscribe() does it: the integration locked, its row not yet
    # committed (a plain check-then-insert would see nothing here and add a duplicate)
    with transaction.atomic():
        Integration.objects.select_for_update().get(pk=integration.pk)
        WebhookSubscription.objects.create(
            integration=integration, url=HOOK, event_types=["order.created"], secret=new_secret()
        )
        # when: a second subscribe to the same URL and event starts on its own connection
        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        assert wait_for_a_lock_wait(), "the second subscribe did not wait for the first"
    thread.join(10)

    # then: once the first has committed, the second sees it and is refused
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), subscriptions.SubscriptionConflict), outcome
    assert WebhookSubscription.objects.count() == 1


def wait_for_a_lock_wait(timeout=10.0) -> bool:
    """True once another backend waits for a lock (polled, so the test does not rely on timing)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.02)
    return False
