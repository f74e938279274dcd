"""An org admin opens the webhook deliveries, filters the dead ones, replays one and sees it queued."""

import pytest
from playwright.sync_api import expect

from integrations.choices import DeliveryStatus
from integrations.models import WebhookDelivery
from tests.fixtures.deliveries import make_delivery, make_subscription

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_org_admin_filters_dead_deliveries_and_replays_one(
    live_server, login, org_admin, integration, other_integration
):
    subscription = make_subscription(integration)
    dead = make_delivery(subscription, DeliveryStatus.DEAD)
    also_dead = make_delivery(subscription, DeliveryStatus.DEAD)
    succeeded = make_delivery(subscription, DeliveryStatus.SUCCEEDED)
    theirs = make_delivery(make_subscription(other_integration, url="https://hooks.globex.test/in"))
    page = login("alice")

    page.click("#content-main a[href$='/admin/integrations/webhookdelivery/']")
    expect(page.locator("#result_list")).to_contain_text(succeeded.event_id)
    expect(page.locator("#result_list")).not_to_contain_text(theirs.event_id)  # another organization's

    page.click("#changelist-filter a:text-is('Dead')")
    expect(page.locator("#result_list")).not_to_contain_text(succeeded.event_id)
    row = page.locator("#result_list tr", has_text=dead.event_id)
    expect(row.locator(".sy-badge")).to_have_attribute("data-status", "dead")

    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "replay_selected")
    page.click("button[name=index]")

    expect(page.locator(".messagelist")).to_contain_text("Queued 1 delivery again.")
    # Still filtered on dead: the replayed one has left the list, the other is still there.
    expect(page.locator("#result_list")).not_to_contain_text(dead.event_id)
    expect(page.locator("#result_list")).to_contain_text(also_dead.event_id)
    replayed = WebhookDelivery.objects.get(pk=dead.pk)
    assert (replayed.status, replayed.attempts) == (DeliveryStatus.PENDING, 0)
    assert WebhookDelivery.objects.get(pk=also_dead.pk).status == DeliveryStatus.DEAD
