"""An org admin registers a custom integration in the browser, copies the shown-once key and uses it."""

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_register_custom_integration_and_call_me_with_the_key(live_server, login, org_admin):
    page = login("alice")

    page.goto(f"{live_server.url}/admin/integrations/integration/")
    page.click("#sy-register-custom")
    page.click("text=Register a custom Sales channel")
    page.fill("#id_name", "Partner shop")
    page.uncheck("input[name=grants][value='webhooks:write']")  # least privilege: adjust the recommendation
    page.select_option("#id_expiration", "30")
    page.click("input[name=_issue]")

    expect(page.locator("h1")).to_contain_text("Copy the new API key now")
    expect(page.locator("#content-main")).to_contain_text("shown once")
    key = page.input_value("#sy-key")
    assert key.startswith("sy_")

    me = httpx.get(f"{live_server.url}/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["kind"] == "integration"
    assert body["integration"]["name"] == "Partner shop"
    assert body["organization"]["name"] == "Acme Outfitters"
    assert "webhooks:write" not in body["grants"] and "orders:write" in body["grants"]

    # The key page afterwards shows the prefix only.
    page.click("text=Go to the key")
    expect(page.locator("#content-main")).to_contain_text(key[:11])
    assert key[12:] not in page.content()
