"""
The admin's strict Content-Security-Policy in a real browser (#7): the main admin pages and the API docs
load with no violation — none reported in the console ("Refused to …") nor as a securitypolicyviolation
event — and their scripts still work (they are static files now, wired by data- attributes).
"""

import pytest
from playwright.sync_api import expect

from tests.fixtures.organizations import join
from tokens import issuing as key_services
from tokens.choices import KeyKind

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# Recorded by the page itself: an init script runs before any of the page's own and is not subject to its CSP.
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def watched(page):
    """The page, with a list that collects every CSP violation it reports, console or event."""
    console = []
    page.add_init_script(WATCH)
    page.on(
        "console", lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None
    )

    def violations():
        return console + page.evaluate("window.__csp || []")

    page.violations = violations
    return page


def visit(page, url):
    response = page.goto(url)
    assert response.status == 200, url
    assert response.headers["content-security-policy"], url
    page.wait_for_load_state("networkidle")
    assert page.violations() == [], url


def test_admin_pages_load_and_work_under_the_strict_policy(
    live_server, login, watched, org_admin, org, other_org, integration, order_body, ingest,
    products, warehouse_integration, warehouse, standard_method,
):  # fmt: skip
    join(org_admin, other_org)  # two organizations: the dashboard offers its picker
    order, _ = ingest(order_body)
    key = key_services.issue_key(kind=KeyKind.INTEGRATION, name="Shop key", integration=integration)
    base = live_server.url
    page = login("alice")
    assert page.violations() == []

    # The dashboard; choosing an organization submits the picker (admin.js, data-autosubmit).
    visit(page, f"{base}/admin/automations/dashboard/")
    page.select_option("#sy-org", str(org.pk))
    page.wait_for_url(f"**/admin/automations/dashboard/?org={org.pk}")
    assert page.violations() == []

    # The integration's page: Django's inline script adds a SKU mapping row, select2 finds the product.
    visit(page, f"{base}/admin/integrations/integration/{integration.pk}/change/")
    group = page.locator(".inline-group", has_text="SKU mappings")
    group.locator(".add-row a").click()
    expect(group.locator("[class*='dynamic-']")).to_have_count(1)
    group.locator(".select2-selection").last.click()
    page.locator(".select2-search__field").fill("MUG")
    page.locator(".select2-results__option", has_text="MUG").click()
    expect(group.locator(".select2-selection__rendered").last).to_contain_text("MUG")
    assert page.violations() == []

    # The order list; Django's own admin script ticks every row with the header checkbox.
    visit(page, f"{base}/admin/orders/order/")
    page.check("#action-toggle")
    expect(page.locator("input.action-select").first).to_be_checked()
    visit(page, f"{base}/admin/orders/order/{order.pk}/change/")

    # The rule form: condition rows, filled and saved.
    visit(page, f"{base}/admin/automations/automationrule/add/")
    page.select_option("#id_organization", str(org.pk))
    page.fill("#id_name", "Big orders")
    page.select_option("#id_conditions-0-field", "total")
    page.select_option("#id_conditions-0-operator", "gt")
    page.fill("#id_conditions-0-value", "500")
    page.select_option("#id_actions-0-type", "hold")
    page.fill("#id_actions-0-reason", "review")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("Big orders")
    assert page.violations() == []

    # The routing card form and the key pages.
    visit(page, f"{base}/admin/automations/routingrule/add/")
    visit(page, f"{base}/admin/tokens/apikey/")
    visit(page, f"{base}/admin/tokens/apikey/add/")
    # A key's page; a confirm() guards Revoke (admin.js, data-confirm): dismissed, nothing is sent.
    key_page = f"{base}/admin/tokens/apikey/{key.key.pk}/change/"
    visit(page, key_page)
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("#sy-revoke")
    expect(page.locator("#sy-revoke")).to_be_visible()
    assert asked and "Revoke this key" in asked[0]
    assert page.url == key_page
    key.key.refresh_from_db()
    assert key.key.revoked_at is None
    assert page.violations() == []


def test_the_api_docs_render_under_their_policy(live_server, watched, db):
    visit(watched, f"{live_server.url}/api/v1/docs/")
    expect(watched.locator(".swagger-ui .title")).to_contain_text("Switchyard connector API")
    assert watched.violations() == []


def test_the_watch_catches_a_violation(live_server, watched, db):
    """The detector itself: a page under script-src 'self' with an inline script and style attribute."""
    probe = f"{live_server.url}/admin/csp-probe/"
    watched.route(
        probe,
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            headers={"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'"},
            body='<p style="color: red">x</p><script>document.title = "ran"</script>',
        ),
    )
    watched.goto(probe)
    watched.wait_for_load_state("networkidle")
    assert watched.title() != "ran"
    found = watched.violations()
    assert any("script-src" in v for v in found) and any("style-src" in v for v in found), found
