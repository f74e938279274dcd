"""
Issue 6's story in a real browser against the real processes (gunicorn, Celery worker and beat on
PostgreSQL and Redis, conftest.py): an org admin writes the rule "hold orders over 500 for review", a
channel posts such an order through the API, the hold engine holds it and the dashboard shows it; the admin
releases it and the routing engine routes it to the location with stock.
"""

import os
import shutil
import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Playwright's sync API runs an event loop in the test thread (no ORM here, but pytest-django may touch it).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    from tests.e2e.conftest import CHROMIUM_ARGS

    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


def order_status(hub, order_id) -> dict:
    with hub.api("Shop") as api:
        return api.get(f"/orders/{order_id}").json()


def wait_for_status(hub, order_id, status, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while (order := order_status(hub, order_id))["status"] != status:
        assert time.monotonic() < deadline, f"not {status} within {timeout} s: {order}"
        time.sleep(0.2)
    return order


def test_org_admin_holds_big_orders_for_review_then_releases_one(hub, page):
    # given a 3PL location with stock, and both integrations connected
    with hub.api("Warehouse") as api:
        assert api.post("/integration/connect").status_code == 200
        location = api.post("/locations", json={"name": "Review DC", "kind": "3pl"}).json()
        pushed = api.post(
            "/inventory", json={"location": location["id"], "items": [{"sku": "E2E-TEE", "on_hand": 50}]}
        )
        assert pushed.json() == {"updated": 1, "errors": []}, pushed.text
    with hub.api("Shop") as api:
        assert api.post("/integration/connect").status_code == 200

    # when the org admin writes the rule in the admin, in rows, without typing JSON
    page.goto(f"{hub.url}/admin/login/")
    page.fill("#id_username", hub.admin[0])
    page.fill("#id_password", hub.admin[1])
    page.click("input[type=submit]")
    page.wait_for_url(f"{hub.url}/admin/")
    page.goto(f"{hub.url}/admin/automations/automationrule/add/")
    page.fill("#id_name", "Hold orders over 500 for review")
    page.select_option("#id_conditions-0-field", "total")
    page.select_option("#id_conditions-0-operator", "gt")
    page.fill("#id_conditions-0-value", "500")
    page.select_option("#id_actions-0-type", "hold")
    page.fill("#id_actions-0-reason", "review: over 500")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("Hold orders over 500 for review")

    # and a channel posts an order of 600 through the API
    with hub.api("Shop") as api:
        body = {
            "external_id": "BIG-1",
            "number": "#BIG-1",
            "lines": [{"sku": "E2E-TEE", "quantity": 2, "unit_price": "300.00"}],
        }
        answer = api.post("/orders", json=body)
        assert answer.status_code == 201, answer.text
        order_id = answer.json()["id"]

    # then the hold engine holds it, and the dashboard shows it held with the rule's reason
    held = wait_for_status(hub, order_id, "on_hold")
    assert held["hold"]["reason"] == "review: over 500"
    page.goto(f"{hub.url}/admin/automations/dashboard/")
    held_row = page.locator("#sy-held-orders tr", has_text="#BIG-1")
    expect(held_row).to_contain_text("review: over 500")
    expect(page.locator("#sy-orders tr[data-status=on_hold]")).to_contain_text("1")

    # when the admin opens it from the dashboard and releases it
    held_row.locator("a").first.click()
    expect(page.locator(".sy-note")).to_contain_text("review: over 500")
    page.click("#sy-release")
    expect(page.locator(".messagelist")).to_be_visible()

    # then the routing engine routes it to the only location with its stock, and the order page says so
    routed = wait_for_status(hub, order_id, "sent_to_fulfillment")
    assert [r["location"] for r in routed["shipping_requests"]] == [str(location["id"])]
    page.reload()
    expect(page.locator(".field-status_badge .sy-badge, .sy-badge[data-status]").first).to_have_attribute(
        "data-status", "sent_to_fulfillment"
    )
