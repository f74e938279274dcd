"""
The catch-up feed, GET /api/v1/webhook-events (#16, item 7): every event the key's integration is entitled to,
oldest first, each exactly as its deliveries POST it; paged by cursor, resumed `after` an event, filtered by
type or object, kept WEBHOOK_EVENT_RETENTION_DAYS, and another tenant's events never shown.
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import housekeeping
from integrations.models import WebhookDelivery, WebhookEvent
from integrations.webhooks import outbox
from orders import services as order_services
from tests.api.helpers import assert_error
from tests.fixtures.deliveries import make_subscription
from tests.integrations.delivery_path import GRANTS
from tokens import issuing as key_services
from tokens.choices import KeyKind

URL = "/api/v1/webhook-events"


@pytest.fixture
def shop_key(integration):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="feed", integration=integration, grants=GRANTS
    )


@pytest.fixture
def shop(api_client, shop_key):
    return api_client(shop_key)


@pytest.fixture
def orders(shop_key, ingest, order_body, products, standard_method):
    """Three orders of the shop, each created (new) then let through (ready): six events."""
    return [ingest({**order_body, "external_id": f"F{n}"})[0] for n in range(3)]


ORDER_EVENTS = "order.created,order.updated"


def feed(client, **params):
    """One page; of order events unless `type` says otherwise (integrations' own status changes are listed too)."""
    response = client.get(URL, {"type": ORDER_EVENTS, **params})
    assert response.status_code == 200, response.content
    return response.json()


def read_all(client, **params):
    """Every page, following `next`."""
    page, items = feed(client, **params), []
    while True:
        items += page["results"]
        if not page["next"]:
            return items
        page = client.get(page["next"]).json()


# --- what it shows ---------------------------------------------------------------------------------------


def test_each_event_is_listed_exactly_as_its_deliveries_post_it(shop, integration, orders):
    # given a subscription made before the events, and the outbox dispatched
    subscription = make_subscription(integration, events=["order.created", "order.updated"])
    subscription.__class__.objects.filter(pk=subscription.pk).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    outbox.dispatch_outbox()

    items = feed(shop)["results"]

    delivered = {d.event_id: json.loads(d.body) for d in WebhookDelivery.objects.all()}
    assert len(items) == 6 and len(delivered) == 6
    assert all(item == delivered[item["id"]] for item in items)
    assert set(items[0]) == {"id", "type", "created_at", "sequence", "data"}


def test_oldest_first_and_the_status_each_event_had(shop, orders):
    items = feed(shop)["results"]

    assert [(i["type"], i["data"]["status"]) for i in items[:2]] == [
        ("order.created", "new"),
        ("order.updated", "ready"),
    ]
    assert [i["data"]["id"] for i in items] == [str(o.pk) for o in orders for _ in range(2)]
    assert [i["sequence"] for i in items] == [1, 2] * 3


def test_paged_by_cursor_every_event_once(shop, orders):
    items = read_all(shop, limit=4)

    assert len(items) == 6 and len({i["id"] for i in items}) == 6
    assert items == feed(shop)["results"]


def test_after_an_event_resumes_behind_it(shop, orders):
    first = feed(shop)["results"]
    order_services.hold(orders[0], "Check the address")  # one more, later

    resumed = feed(shop, after=first[-1]["id"])["results"]

    assert [(i["type"], i["data"]["status"], i["sequence"]) for i in resumed] == [
        ("order.updated", "on_hold", 3)
    ]
    assert feed(shop, after=first[1]["id"])["results"][0] == first[2]


@pytest.mark.parametrize("bad", ["evt_unknown", "evt_" + "0" * 50, "nope"])
def test_after_an_unknown_event_is_a_400(shop, orders, bad):
    assert_error(shop.get(URL, {"after": bad}), 400, "validation_error")


def test_filtered_by_type(shop, orders, integration):
    every = feed(shop, type="")["results"]
    assert {i["type"] for i in every} == {"integration.status_changed", "order.created", "order.updated"}

    items = feed(shop, type="order.created")["results"]

    assert [i["type"] for i in items] == ["order.created"] * 3
    assert len(feed(shop, type="order.created,order.updated")["results"]) == 6
    assert_error(shop.get(URL, {"type": "order.exploded"}), 400, "validation_error")
    assert_error(shop.get(URL, {"type": "order.%s,%"}), 400, "validation_error")  # was a 500 (fuzz)


def test_one_objects_events_after_a_sequence(shop, orders):
    order = orders[1]
    order_services.hold(order, "Check the address")

    items = feed(shop, object_type="order", object_id=str(order.pk), after_sequence=1)["results"]

    assert [(i["sequence"], i["data"]["status"]) for i in items] == [(2, "ready"), (3, "on_hold")]
    response = shop.get(URL, {"after_sequence": 1})
    assert_error(response, 400, "validation_error")
    assert "after_sequence" in response.json()["error"]["details"]
    assert_error(shop.get(URL, {"object_id": str(order.pk)}), 400, "validation_error")


def test_updated_since_is_the_event_time(shop, orders):
    WebhookEvent.objects.filter(type="order.created").update(created_at=timezone.now() - timedelta(days=2))

    items = feed(shop, updated_since=(timezone.now() - timedelta(days=1)).isoformat())["results"]

    assert {i["type"] for i in items} == {"order.updated"}


# --- retention -------------------------------------------------------------------------------------------


def test_events_past_the_retention_are_hidden_then_pruned(shop, orders, settings):
    settings.WEBHOOK_EVENT_RETENTION_DAYS = 7
    old = WebhookEvent.objects.filter(type="order.created")
    old.update(created_at=timezone.now() - timedelta(days=7, minutes=1))

    assert {i["type"] for i in feed(shop)["results"]} == {"order.updated"}
    assert housekeeping.prune()["webhook_events"] == 3
    assert not old.exists() and WebhookEvent.objects.filter(type="order.updated").count() == 3


def test_the_retention_is_at_least_a_week():
    from django.conf import settings

    assert settings.WEBHOOK_EVENT_RETENTION_DAYS >= 7


# --- who sees what ---------------------------------------------------------------------------------------


def test_another_integrations_events_are_not_shown(
    api_client, orders, org, make_integration, channel_connector, shop
):
    sibling = make_integration(org, channel_connector, "Sibling shop")
    sibling_key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="s", integration=sibling, grants=GRANTS
    )
    client = api_client(sibling_key)

    assert feed(client)["results"] == []
    first = feed(shop)["results"][0]["id"]
    assert_error(client.get(URL, {"after": first}), 400, "validation_error")  # as for an unknown id


def org_key_of(org, admin):
    return key_services.issue_key(
        kind=KeyKind.ORG, name="org", organization=org, user=admin, grants=["webhooks:read", "orders:read"]
    )


def test_org_keys_see_their_organizations_events_and_no_other(
    api_client, orders, org, org_admin, other_org, other_admin, other_integration, integration
):
    mine = feed(api_client(org_key_of(org, org_admin)), integration=str(integration.pk))["results"]
    theirs = api_client(org_key_of(other_org, other_admin))

    assert len(mine) == 6
    assert feed(theirs)["results"] == []
    assert feed(theirs, integration=str(integration.pk))["results"] == []


def test_only_the_types_the_key_may_read_are_listed(api_client, integration, orders):
    hooks_only = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="hooks", integration=integration, grants=["webhooks:read"]
    )

    assert feed(api_client(hooks_only))["results"] == []


def test_the_feed_needs_webhooks_read(api_client, integration):
    key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="x", integration=integration, grants=["orders:read"]
    )

    assert_error(api_client(key).get(URL), 403, "missing_grant")


def test_the_list_costs_a_bounded_number_of_queries(
    shop, shop_key, ingest, order_body, products, standard_method, django_assert_max_num_queries
):
    for n in range(25):
        ingest({**order_body, "external_id": f"Q{n}"})
    feed(shop)  # warm: the key's first use

    with django_assert_max_num_queries(4):  # key, horizon, page, request log
        page = feed(shop, limit=50)
    with django_assert_max_num_queries(5):  # and the event resumed after
        feed(shop, after=page["results"][10]["id"], type="order.updated")

    assert len(page["results"]) == 50
