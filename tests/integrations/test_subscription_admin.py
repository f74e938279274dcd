"""The webhook subscriptions admin: state, failing since and counts, the test event, switching on and off (as
buttons and bulk actions), what members may do, and deleting as unsubscribing."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from guardian.shortcuts import assign_perm

from integrations.choices import TEST_EVENT_TYPE, DeliveryStatus, EventKind
from integrations.models import IntegrationEvent, WebhookDelivery, WebhookSubscription
from tests.fixtures.deliveries import HOOK_URL, make_delivery, make_subscription

D = DeliveryStatus
DELIVERIES = reverse("admin:integrations_webhookdelivery_changelist")
SUBSCRIPTIONS = reverse("admin:integrations_webhooksubscription_changelist")


def delivery_url(delivery):
    return reverse("admin:integrations_webhookdelivery_change", args=[delivery.pk])


def subscription_url(subscription):
    return reverse("admin:integrations_webhooksubscription_change", args=[subscription.pk])


def said(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def listed(page):
    return [row.pk for row in page.context["cl"].result_list]


@pytest.fixture
def subscription(integration):
    return make_subscription(integration)


# --- subscriptions ---------------------------------------------------------------------------------------


def test_subscription_list_shows_state_failing_since_and_counts(admin_client_for, org_admin, subscription):
    for status, count in ((D.PENDING, 1), (D.FAILED, 2), (D.DEAD, 3), (D.SUCCEEDED, 4)):
        for _ in range(count):
            make_delivery(subscription, status)
    off = make_subscription(subscription.integration, url="https://hooks.example.test/old")
    WebhookSubscription.objects.filter(pk=off.pk).update(
        active=False, disabled_reason="The receiver answered 410 Gone."
    )

    page = admin_client_for(org_admin).get(SUBSCRIPTIONS)

    html = page.content.decode()
    assert 'data-status="active"' in html and 'data-status="off"' in html
    assert "The receiver answered 410 Gone." in html
    assert 'status__exact=pending" data-status="pending">1 pending' in html
    assert (
        f'subscription__id__exact={subscription.pk}&amp;status__exact=dead" data-status="dead">3 dead' in html
    )
    assert ">2 failed<" in html


def test_subscription_counts_link_to_the_filtered_log(admin_client_for, org_admin, subscription):
    dead = make_delivery(subscription, D.DEAD)
    make_delivery(subscription, D.FAILED)
    make_delivery(make_subscription(subscription.integration, url=f"{HOOK_URL}/b"), D.DEAD)

    page = admin_client_for(org_admin).get(
        DELIVERIES + f"?subscription__id__exact={subscription.pk}&status__exact=dead"
    )

    assert listed(page) == [dead.pk]


@pytest.mark.parametrize("rows", [1, 30])
def test_subscription_changelist_makes_no_query_per_row(
    admin_client_for, org_admin, integration, django_assert_max_num_queries, rows
):
    for i in range(rows):
        subscription = make_subscription(integration, url=f"{HOOK_URL}/{i}")
        make_delivery(subscription, D.DEAD)
        make_delivery(subscription, D.PENDING)
    client = admin_client_for(org_admin)

    with django_assert_max_num_queries(9):
        page = client.get(SUBSCRIPTIONS)

    assert len(listed(page)) == rows


def test_send_test_event_action_queues_a_test_delivery(admin_client_for, org_admin, subscription):
    response = admin_client_for(org_admin).post(
        SUBSCRIPTIONS, {"action": "send_test_event_selected", "_selected_action": [subscription.pk]}
    )

    sent = WebhookDelivery.objects.get(subscription=subscription)
    assert (sent.event_type, sent.status) == (TEST_EVENT_TYPE, D.PENDING)
    assert said(response) == [
        f'Test event <a href="{delivery_url(sent)}">{sent.event_id}</a> queued for {HOOK_URL}.'
    ]


def test_test_event_is_refused_for_a_switched_off_subscription(admin_client_for, org_admin, subscription):
    WebhookSubscription.objects.filter(pk=subscription.pk).update(active=False)
    client = admin_client_for(org_admin)

    response = client.post(reverse("admin:integrations_webhooksubscription_test", args=[subscription.pk]))

    assert response.status_code == 302
    assert "switch it on first" in said(response)[0]
    assert not WebhookDelivery.objects.exists()


def test_switch_back_on_clears_the_reason_and_records_it(admin_client_for, org_admin, subscription):
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        active=False, disabled_reason="Every delivery failed for 5 days.", failing_since="2025-01-01T00:00Z"
    )
    client = admin_client_for(org_admin)
    page = client.get(subscription_url(subscription)).content.decode()
    assert 'id="sy-switch-on"' in page and 'id="sy-test-event"' not in page

    response = client.post(
        reverse("admin:integrations_webhooksubscription_switch_on", args=[subscription.pk])
    )

    subscription.refresh_from_db()
    assert response.status_code == 302
    assert subscription.active and subscription.disabled_reason == "" and subscription.failing_since is None
    assert IntegrationEvent.objects.filter(
        kind=EventKind.CONFIG_CHANGED, message__contains="switched back on", actor="user:alice"
    ).exists()


def test_switch_off_and_on_as_actions(admin_client_for, org_admin, subscription):
    client = admin_client_for(org_admin)

    client.post(SUBSCRIPTIONS, {"action": "switch_off_selected", "_selected_action": [subscription.pk]})
    subscription.refresh_from_db()
    assert not subscription.active and subscription.disabled_reason == "Switched off by user:alice."

    client.post(SUBSCRIPTIONS, {"action": "switch_on_selected", "_selected_action": [subscription.pk]})
    subscription.refresh_from_db()
    assert subscription.active


def test_subscription_page_edits_nothing_directly(admin_client_for, org_admin, subscription):
    WebhookSubscription.objects.filter(pk=subscription.pk).update(active=False)
    client = admin_client_for(org_admin)

    client.post(subscription_url(subscription), {"active": "on", "url": "https://evil.example.test/"})

    subscription.refresh_from_db()
    assert not subscription.active and subscription.url == HOOK_URL


def test_another_organizations_subscription_buttons_are_not_found(
    admin_client_for, other_admin, subscription
):
    client = admin_client_for(other_admin)

    for name in ("test", "switch_on", "switch_off"):
        url = reverse(f"admin:integrations_webhooksubscription_{name}", args=[subscription.pk])
        assert client.post(url).status_code == 404
    assert not WebhookDelivery.objects.exists()


def test_member_who_only_views_cannot_send_a_test_event(admin_client_for, member, integration, subscription):
    assign_perm("integrations.view_integration", member, integration)

    response = admin_client_for(member).post(
        reverse("admin:integrations_webhooksubscription_test", args=[subscription.pk])
    )

    assert response.status_code == 403
    assert not WebhookDelivery.objects.exists()


def test_deleting_a_subscription_is_recorded(admin_client_for, org_admin, subscription):
    delete = reverse("admin:integrations_webhooksubscription_delete", args=[subscription.pk])

    admin_client_for(org_admin).post(delete, {"post": "yes"})

    assert not WebhookSubscription.objects.exists()
    assert IntegrationEvent.objects.filter(message=f"Webhook subscription removed: {HOOK_URL}").exists()
