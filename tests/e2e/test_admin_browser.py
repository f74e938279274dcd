"""An org admin adds an integration through the wizard in a real browser, disables it, sees the status move."""

import pytest
from playwright.sync_api import expect

from integrations.models import Integration

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_org_admin_adds_integration_with_wizard_and_disables_it(
    live_server, login, org_admin, other_integration
):
    page = login("alice")

    # Step 1: choose a connector card.
    page.click("#content-main a[href$='/admin/integrations/integration/']")
    page.click(".object-tools a.addlink")
    expect(page.locator("h1")).to_contain_text("choose a connector")
    page.click("text=Choose Custom channel")

    # Step 2: the settings form generated from the connector's schema.
    page.fill("#id_name", "North warehouse")
    page.fill("#id_setting__default_currency", "euro")  # invalid: the schema's pattern refuses it
    page.click("input[name=_save]")
    expect(page.locator(".errornote")).to_be_visible()
    page.fill("#id_setting__default_currency", "EUR")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("North warehouse")
    row = page.locator("#result_list tr", has_text="North warehouse")
    expect(row.locator(".sy-badge")).to_have_attribute("data-status", "connecting")
    expect(page.locator("#result_list")).not_to_contain_text("Globex")  # another org's integration

    # Disable it from its page and see the status change there and in the list.
    row.locator("th a").click()
    page.click("#sy-disable")
    expect(page.locator(".messagelist")).to_contain_text("Disabled")
    expect(page.locator(".field-status_badge .sy-badge")).to_have_attribute("data-status", "disabled")
    page.click(".breadcrumbs a[href$='/admin/integrations/integration/']")
    expect(page.locator("#result_list tr", has_text="North warehouse").locator(".sy-badge")).to_have_text(
        "Disabled"
    )

    integration = Integration.objects.get(name="North warehouse")
    assert integration.status == "disabled"
    # the box whose schema default is false arrives unticked: stored as false
    assert integration.settings == {"default_currency": "EUR", "sell_incoming_stock": False}
    assert integration.flow_orders_in and not integration.flow_fulfillments_in  # channel defaults
