"""The webhook admin: the delivery log and replay, and the integration page's deliveries, re-enable,
test-connection and signing-secret tools (subscriptions: test_subscription_admin.py)."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from guardian.shortcuts import assign_perm

from integrations import configuration, lifecycle
from integrations.choices import DeliveryStatus, IntegrationStatus
from integrations.models import Connector, IntegrationEvent, WebhookSubscription
from tests.fixtures.deliveries import HOOK_URL, make_attempt, make_delivery, make_subscription

D = DeliveryStatus
DELIVERIES = reverse("admin:integrations_webhookdelivery_changelist")


def delivery_url(delivery):
    return reverse("admin:integrations_webhookdelivery_change", args=[delivery.pk])


def integration_url(integration, view="change"):
    return reverse(f"admin:integrations_integration_{view}", args=[integration.pk])


def said(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def listed(page):
    return [row.pk for row in page.context["cl"].result_list]


@pytest.fixture
def subscription(integration):
    return make_subscription(integration)


@pytest.fixture
def other_subscription(other_integration):
    return make_subscription(other_integration, url="https://hooks.globex.test/in")


@pytest.fixture
def manifest_connector(db):
    return Connector.objects.create(
        key="manifest-shop",
        name="Manifest shop",
        type="channel",
        settings_schema={
            "type": "object",
            "required": ["base_url"],
            "properties": {
                "base_url": {"type": "string", "format": "uri", "title": "Base URL"},
                "auth_token": {"type": "string", "writeOnly": True, "title": "Auth token"},
            },
        },
        manifest={"health": "/health", "orders": "/orders"},
    )


@pytest.fixture
def manifest_integration(org, manifest_connector, make_integration):
    return make_integration(
        org, manifest_connector, "Manifest shop", settings={"base_url": "https://shop.example.test/sy"}
    )


# --- the delivery log ------------------------------------------------------------------------------------


def test_org_admin_sees_only_their_organizations_deliveries(
    admin_client_for, org_admin, subscription, other_subscription
):
    mine = make_delivery(subscription)
    theirs = make_delivery(other_subscription)
    client = admin_client_for(org_admin)

    page = client.get(DELIVERIES)

    assert page.status_code == 200
    assert listed(page) == [mine.pk]
    html = page.content.decode()
    assert theirs.event_id not in html
    assert "Globex web shop" not in html  # not even as an integration filter choice
    assert 'data-status="dead"' in html and "87 ms" in html


def test_another_organizations_delivery_is_not_found(admin_client_for, other_admin, subscription):
    delivery = make_delivery(subscription)
    client = admin_client_for(other_admin)

    assert client.get(delivery_url(delivery)).status_code == 404
    replay = client.post(reverse("admin:integrations_webhookdelivery_replay", args=[delivery.pk]))
    assert replay.status_code == 404
    delivery.refresh_from_db()
    assert delivery.status == D.DEAD


def test_member_sees_deliveries_of_granted_integrations_only(
    admin_client_for, member, org, channel_connector, make_integration
):
    granted = make_integration(org, channel_connector, "Granted shop")
    hidden = make_integration(org, channel_connector, "Hidden shop")
    assign_perm("integrations.view_integration", member, granted)
    seen = make_delivery(make_subscription(granted))
    unseen = make_delivery(make_subscription(hidden, url="https://hooks.example.test/hidden"))
    client = admin_client_for(member)

    page = client.get(DELIVERIES)

    assert listed(page) == [seen.pk]
    assert "Hidden shop" not in page.content.decode()
    assert client.get(delivery_url(seen)).status_code == 200
    assert client.get(delivery_url(unseen)).status_code == 404


def test_superuser_sees_every_organization(admin_client_for, superuser, subscription, other_subscription):
    deliveries = {make_delivery(subscription).pk, make_delivery(other_subscription).pk}

    page = admin_client_for(superuser).get(DELIVERIES)

    assert set(listed(page)) == deliveries
    assert "Globex Supply" in page.content.decode()  # the organization column, for more than one


def test_filters_by_status_and_event_type_and_searches_event_ids(admin_client_for, org_admin, subscription):
    dead = make_delivery(subscription, D.DEAD)
    failed = make_delivery(subscription, D.FAILED, event_type="order.updated")
    make_delivery(subscription, D.SUCCEEDED)
    client = admin_client_for(org_admin)

    assert listed(client.get(DELIVERIES + "?status__exact=dead")) == [dead.pk]
    assert listed(client.get(DELIVERIES + "?event_type=order.updated")) == [failed.pk]
    assert listed(client.get(DELIVERIES + f"?q={failed.event_id}")) == [failed.pk]
    assert listed(client.get(DELIVERIES + f"?q={dead.event_id[:12]}")) != []  # the start of an id
    page = client.get(DELIVERIES + f"?integration__id__exact={subscription.integration_id}")
    assert len(listed(page)) == 3


def test_delivery_page_shows_the_body_and_each_attempt(admin_client_for, org_admin, subscription):
    delivery = make_delivery(subscription, D.DEAD, last_error="Timed out.")
    make_attempt(delivery, 1, error="Timed out.", status_code=None, response_excerpt="", duration_ms=15001)
    make_attempt(delivery, 2, status_code=503)

    page = admin_client_for(org_admin).get(delivery_url(delivery))

    html = page.content.decode()
    assert page.status_code == 200
    assert "&quot;number&quot;: &quot;#1042&quot;" in html  # pretty-printed: one key per line
    assert "  &quot;data&quot;: {\n    &quot;id&quot;: &quot;42&quot;" in html
    assert f"webhook-id: {delivery.event_id}" in html  # request headers
    assert "15001 ms" in html and "1234 ms" in html
    assert "Timed out." in html and "no answer" in html
    assert "Service Unavailable: try later" in html and ">503<" in html
    assert HOOK_URL in html
    assert 'name="_save"' not in html  # read-only
    assert 'id="sy-replay"' in html


def test_deliveries_are_never_added_edited_or_deleted(admin_client_for, org_admin, subscription):
    delivery = make_delivery(subscription)
    client = admin_client_for(org_admin)

    assert client.get(reverse("admin:integrations_webhookdelivery_add")).status_code == 403
    assert client.post(delivery_url(delivery), {"status": "succeeded"}).status_code == 403
    delete = reverse("admin:integrations_webhookdelivery_delete", args=[delivery.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == D.DEAD


def test_replay_action_queues_failed_and_dead_and_says_how_many(admin_client_for, org_admin, subscription):
    dead = make_delivery(subscription, D.DEAD)
    failed = make_delivery(subscription, D.FAILED)
    pending = make_delivery(subscription, D.PENDING)
    client = admin_client_for(org_admin)

    response = client.post(
        DELIVERIES, {"action": "replay_selected", "_selected_action": [dead.pk, failed.pk, pending.pk]}
    )

    assert response.status_code == 302
    assert said(response) == ["Queued 2 deliveries again.", "1 already pending: left as they are."]
    for delivery in (dead, failed):
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (D.PENDING, 0)
        assert delivery.body and delivery.event_id  # the same webhook-id and body go out again


def test_replay_warns_when_the_subscription_is_switched_off(admin_client_for, org_admin, subscription):
    WebhookSubscription.objects.filter(pk=subscription.pk).update(active=False, disabled_reason="410 Gone")
    dead = make_delivery(subscription, D.DEAD)

    response = admin_client_for(org_admin).post(
        reverse("admin:integrations_webhookdelivery_replay", args=[dead.pk])
    )

    assert response.status_code == 302
    assert said(response)[0] == "Queued 1 delivery again."
    assert "switched off" in said(response)[1]


def test_member_replays_only_what_they_may_change(
    admin_client_for, member, org, channel_connector, make_integration
):
    viewed = make_integration(org, channel_connector, "Viewed shop")
    changed = make_integration(org, channel_connector, "Changed shop")
    assign_perm("integrations.view_integration", member, viewed)
    assign_perm("integrations.change_integration", member, changed)
    look_only = make_delivery(make_subscription(viewed))
    mine = make_delivery(make_subscription(changed, url="https://hooks.example.test/changed"))
    client = admin_client_for(member)

    response = client.post(
        DELIVERIES, {"action": "replay_selected", "_selected_action": [look_only.pk, mine.pk]}
    )

    assert said(response) == [
        "Queued 1 delivery again.",
        "1 not replayed: you may not change their integration.",
    ]
    look_only.refresh_from_db()
    mine.refresh_from_db()
    assert (look_only.status, mine.status) == (D.DEAD, D.PENDING)
    button = reverse("admin:integrations_webhookdelivery_replay", args=[look_only.pk])
    assert client.post(button).status_code == 403
    assert 'id="sy-replay"' not in client.get(delivery_url(look_only)).content.decode()


def test_replay_button_needs_post(admin_client_for, org_admin, subscription):
    delivery = make_delivery(subscription)
    button = reverse("admin:integrations_webhookdelivery_replay", args=[delivery.pk])

    assert admin_client_for(org_admin).get(button).status_code == 405


@pytest.mark.parametrize("rows", [1, 50])
def test_delivery_changelist_makes_no_query_per_row(
    admin_client_for,
    org_admin,
    org,
    channel_connector,
    make_integration,
    other_subscription,
    django_assert_max_num_queries,
    rows,
):
    # Given rows spread over several integrations and subscriptions, and another organization's
    subscriptions = [
        make_subscription(make_integration(org, channel_connector, f"Shop {i}"), url=f"{HOOK_URL}/{i}")
        for i in range(5)
    ]
    for i in range(rows):
        make_delivery(subscriptions[i % 5], [D.DEAD, D.FAILED, D.SUCCEEDED, D.PENDING][i % 4])
    make_delivery(other_subscription)
    client = admin_client_for(org_admin)

    with django_assert_max_num_queries(9):
        page = client.get(DELIVERIES)

    assert len(listed(page)) == rows


# --- the integration page --------------------------------------------------------------------------------


def test_integration_page_counts_deliveries_and_shows_failures(
    admin_client_for, org_admin, integration, subscription, other_subscription
):
    make_delivery(subscription, D.PENDING)
    make_delivery(subscription, D.DEAD)
    make_delivery(subscription, D.DEAD)
    make_delivery(other_subscription, D.DEAD)
    integration.consecutive_failures = 7
    integration.save(update_fields=["consecutive_failures"])

    html = admin_client_for(org_admin).get(integration_url(integration)).content.decode()

    assert 'data-status="pending">1 pending' in html
    assert 'data-status="failed">0 failed' in html
    assert 'data-status="dead">2 dead' in html
    assert f'{DELIVERIES}?integration__id__exact={integration.pk}"' in html
    assert 'class="readonly">7<' in html  # consecutive failures


def test_reenable_button_appears_in_error_and_moves_to_connecting(admin_client_for, org_admin, integration):
    client = admin_client_for(org_admin)
    assert 'id="sy-reenable"' not in client.get(integration_url(integration)).content.decode()
    lifecycle.report_error(integration, "10 deliveries failed in a row")
    assert 'id="sy-reenable"' in client.get(integration_url(integration)).content.decode()

    response = client.post(integration_url(integration, "reenable"))

    integration.refresh_from_db()
    assert response.status_code == 302
    assert integration.status == IntegrationStatus.CONNECTING
    assert said(response) == ["Re-enabled “Acme web shop”."]


def test_reenable_refuses_an_integration_not_in_error(admin_client_for, org_admin, integration):
    response = admin_client_for(org_admin).post(integration_url(integration, "reenable"))

    assert "is not in error" in said(response)[0]
    integration.refresh_from_db()
    assert integration.status == IntegrationStatus.CONNECTING


def test_member_who_only_views_cannot_reenable(admin_client_for, member, integration):
    lifecycle.report_error(integration, "broken")
    assign_perm("integrations.view_integration", member, integration)
    client = admin_client_for(member)

    assert 'id="sy-reenable"' not in client.get(integration_url(integration)).content.decode()
    assert client.post(integration_url(integration, "reenable")).status_code == 403


def test_new_signing_secret_is_shown_once(admin_client_for, org_admin, manifest_integration):
    client = admin_client_for(org_admin)
    assert 'id="sy-signing-secret"' in client.get(integration_url(manifest_integration)).content.decode()

    shown = client.post(integration_url(manifest_integration, "signing_secret"))

    manifest_integration.refresh_from_db()
    secret = manifest_integration.signing_secret
    assert shown.status_code == 200 and secret.startswith("whsec_")
    assert secret in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    assert secret not in client.get(integration_url(manifest_integration)).content.decode()
    events = IntegrationEvent.objects.filter(
        integration=manifest_integration, message="Signing secret replaced."
    )
    assert events.exists() and all(secret not in str(e.data) for e in events)

    again = client.post(integration_url(manifest_integration, "signing_secret"))
    manifest_integration.refresh_from_db()
    assert manifest_integration.signing_secret != secret and secret not in again.content.decode()


def test_signing_secret_is_for_manifest_integrations_and_key_managers(
    admin_client_for, org_admin, member, integration, manifest_integration
):
    admin = admin_client_for(org_admin)
    assert 'id="sy-signing-secret"' not in admin.get(integration_url(integration)).content.decode()
    refused = admin.post(integration_url(integration, "signing_secret"))
    assert refused.status_code == 302 and "has no manifest" in said(refused)[0]

    assign_perm("integrations.change_integration", member, manifest_integration)
    member_client = admin_client_for(member)
    assert member_client.post(integration_url(manifest_integration, "signing_secret")).status_code == 403
    assign_perm("integrations.manage_keys_integration", member, manifest_integration)
    assert member_client.post(integration_url(manifest_integration, "signing_secret")).status_code == 200


def test_another_organizations_integration_tools_are_not_found(
    admin_client_for, other_admin, manifest_integration
):
    client = admin_client_for(other_admin)

    for view in ("reenable", "test_connection", "signing_secret"):
        assert client.post(integration_url(manifest_integration, view)).status_code == 404
    manifest_integration.refresh_from_db()
    assert manifest_integration.signing_secret == ""


def test_test_connection_button_only_for_a_health_endpoint(
    admin_client_for, org_admin, integration, manifest_integration
):
    client = admin_client_for(org_admin)

    assert 'id="sy-test-connection"' in client.get(integration_url(manifest_integration)).content.decode()
    assert 'id="sy-test-connection"' not in client.get(integration_url(integration)).content.decode()
    refused = client.post(integration_url(integration, "test_connection"))
    assert "has no health endpoint" in said(refused)[0]


def test_test_connection_calls_the_health_endpoint_and_reports(
    admin_client_for, org_admin, manifest_integration, receiver, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT, settings.WEBHOOK_CONNECT_TIMEOUT = 2.0, 1.0
    configuration.save_integration(manifest_integration, settings={"base_url": receiver.url})
    receiver.script = [(200, {"ok": True}), (500, "database is down")]
    client = admin_client_for(org_admin)

    passed = said(client.post(integration_url(manifest_integration, "test_connection")))
    failed = said(client.post(integration_url(manifest_integration, "test_connection")))

    assert [r.path for r in receiver.requests] == ["/health", "/health"]
    assert passed[0].startswith("Test connection to “Manifest shop”: ok, HTTP 200 in ")
    assert failed[-1].startswith("Test connection to “Manifest shop”: failed, HTTP 500 in ")
    assert "database is down" in failed[-1]
