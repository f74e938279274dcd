"""The History page of each configuration model's admin: who changed what from what to what, and when;
secrets never shown; another organization's object a 404; no revert."""

import pytest
from django.urls import NoReverseMatch, reverse
from guardian.shortcuts import assign_perm

from automations.engine_settings import engine_settings
from automations.models import AutomationRule, RoutingRule, RoutingRuleLocation
from inventory.models import SkuMapping
from orders.models import ShippingMethod, ShippingMethodMapping
from tests.automations.test_engine_settings_admin import form_data as engine_form
from tests.automations.test_routing_admin import card_post
from tests.automations.test_rules_admin import rows, rule_post
from tests.fixtures.deliveries import make_subscription
from tests.fixtures.integrations import GOOD_SETTINGS
from tests.integrations.test_admin import change_url as integration_url
from tests.integrations.test_admin import mapping_rows, wizard_post
from tokens.models import ApiKey

from .helpers import rows_of

pytestmark = pytest.mark.django_db


def history_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_history", args=[obj.pk])


def history_page(client, obj):
    response = client.get(history_url(obj))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def acme(admin_client_for, org_admin):
    return admin_client_for(org_admin)


def test_integration_settings_change_shows_who_and_what(
    acme, org_admin, org, strict_connector, make_integration
):
    integration = make_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)
    data = wizard_post(
        org, name="Strict renamed", **{**GOOD_SETTINGS, "page_size": 80, "api_token": "tok-new-9999"}
    )
    data.pop("organization")

    response = acme.post(integration_url(integration), {**data, **mapping_rows()})

    assert response.status_code == 302, response.content[:2000]
    latest = rows_of(integration)[0]
    assert latest.history_type == "~" and latest.history_user == org_admin
    html = history_page(acme, integration)
    assert "Strict renamed" in html and "Settings › page_size" in html and "50 &rarr; 80" in html
    assert org_admin.username in html
    for secret in (GOOD_SETTINGS["api_token"], "tok-new-9999"):
        assert secret not in html


def test_a_secret_setting_in_an_older_row_shows_as_changed_only(
    acme, org, strict_connector, make_integration
):
    # Rows written before secret settings moved out of `settings` (or by a connector that gained a
    # writeOnly field later) still hold values there: the page must not show them.
    integration = make_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)
    integration.name = "Strict 2"
    integration.save()
    older, newer = sorted(integration.history.all(), key=lambda r: r.history_id)
    type(older).objects.filter(pk=older.pk).update(settings={**GOOD_SETTINGS, "api_token": "tok-old-1111"})
    type(newer).objects.filter(pk=newer.pk).update(settings={**GOOD_SETTINGS, "api_token": "tok-new-2222"})

    html = history_page(acme, integration)

    assert "Settings › api_token" in html and "changed (secret)" in html
    assert "tok-old-1111" not in html and "tok-new-2222" not in html


def test_mapping_rows_edited_on_the_integration_page(acme, org_admin, org, integration, products):
    method = ShippingMethod.objects.create(organization=org, code="standard", name="Standard")
    mug = SkuMapping.objects.create(integration=integration, external_sku="SHOP-MUG", product=products["MUG"])

    response = acme.post(
        integration_url(integration),
        {
            "name": integration.name,
            "notification_email": "",
            "mappings": "{}",
            **mapping_rows(
                initial=1,
                sku_mappings=[{"id": mug.pk, "external_sku": "SHOP-MUG-2", "product": products["MUG"].pk}],
            ),
            **{
                name: value
                for name, value in mapping_rows(
                    shipping_method_mappings=[{"external_code": "std", "method": method.pk}]
                ).items()
                if name.startswith("shipping")
            },
        },
    )

    assert response.status_code == 302, response.content[:2000]
    assert rows_of(mug)[0].history_user == org_admin
    assert "SHOP-MUG &rarr; SHOP-MUG-2" in history_page(acme, mug)
    shipping = ShippingMethodMapping.objects.get(integration=integration)
    [created] = rows_of(shipping)
    assert (created.history_type, created.history_user) == ("+", org_admin)
    assert "Created" in history_page(acme, shipping)


def test_shipping_method_mapping_changed_in_its_admin(acme, org_admin, org, integration):
    standard = ShippingMethod.objects.create(organization=org, code="standard", name="Standard")
    express = ShippingMethod.objects.create(organization=org, code="express", name="Express")
    mapping = ShippingMethodMapping.objects.create(
        integration=integration, external_code="std", method=standard
    )
    url = reverse("admin:orders_shippingmethodmapping_change", args=[mapping.pk])

    response = acme.post(url, {"integration": integration.pk, "external_code": "exp", "method": express.pk})

    assert response.status_code == 302, response.content[:2000]
    assert rows_of(mapping)[0].history_user == org_admin
    html = history_page(acme, mapping)
    assert "std &rarr; exp" in html and "Standard" in html and "Express" in html


def test_automation_rule_added_then_changed(acme, org_admin, org):
    add = acme.post(reverse("admin:automations_automationrule_add"), rule_post(org, [], [{"type": "hold"}]))
    assert add.status_code == 302, add.content[:2000]
    rule = AutomationRule.objects.get()

    data = rule_post(org, [], [], position="20", name="Bigger orders")
    change = acme.post(
        reverse("admin:automations_automationrule_change", args=[rule.pk]),
        {**data, **rows("actions", [{"type": "add_tag", "tag": "big"}], initial=1)},
    )

    assert change.status_code == 302, change.context["adminform"].form.errors
    assert [(r.history_type, r.history_user) for r in rows_of(rule)] == [("~", org_admin), ("+", org_admin)]
    html = history_page(acme, rule)
    assert "10 &rarr; 20" in html and "Big orders &rarr; Bigger orders" in html
    # A list of objects reads as JSON, not as Python's repr.
    assert (
        "&quot;type&quot;: &quot;hold&quot;}] &rarr; [{&quot;tag&quot;: &quot;big&quot;, &quot;type&quot;: &quot;add_tag"
        in html
    )


def test_routing_card_and_its_locations(acme, org_admin, org, warehouse, west):
    response = acme.post(
        reverse("admin:automations_routingrule_add"), card_post(org, locations=[warehouse, west])
    )

    assert response.status_code == 302, response.content[:2000]
    card = RoutingRule.objects.get()
    assert rows_of(card)[0].history_user == org_admin
    preferences = RoutingRuleLocation.history.filter(rule_id=card.pk)
    assert preferences.count() == 2 and {r.history_user for r in preferences} == {org_admin}
    assert "Created" in history_page(acme, card)


def test_engine_settings(acme, org_admin, org):
    settings = engine_settings(org)

    response = acme.post(
        reverse("admin:automations_enginesettings_change", args=[settings.pk]),
        engine_form(settings, routing_strategy="most_stock", routing_enabled=False),
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert rows_of(settings)[0].history_user == org_admin
    html = history_page(acme, settings)
    assert "Routing strategy" in html and "most_stock" in html and "True &rarr; False" in html


def test_key_issue_rotate_and_revoke_in_the_admin(acme, org_admin, integration, integration_key):
    key = integration_key.key
    acme.post(reverse("admin:tokens_apikey_rotate", args=[key.pk]), {"grace_hours": 2})
    successor = ApiKey.objects.get(replaces=key)
    acme.post(reverse("admin:tokens_apikey_revoke", args=[successor.pk]))

    rotated, issued = rows_of(key)
    assert issued.history_type == "+" and issued.history_user is None  # the fixture issued it, no one
    assert rotated.history_user == org_admin
    [revoked, created] = rows_of(successor)
    assert (created.history_type, created.history_user) == ("+", org_admin)
    assert revoked.history_user == org_admin and revoked.revoked_at is not None
    html = history_page(acme, successor)
    assert "Revoked by" in html and f"user:{org_admin.username}" in html
    assert successor.secret_hash not in html and key.secret_hash not in history_page(acme, key)


def test_subscription_switched_off_and_on_in_the_admin(acme, org_admin, integration):
    subscription = make_subscription(integration)
    for action in ("switch_off", "switch_on"):
        url = reverse(f"admin:integrations_webhooksubscription_{action}", args=[subscription.pk])
        assert acme.post(url).status_code == 302

    on, off, _created = rows_of(subscription)
    assert (off.active, off.history_user) == (False, org_admin)
    assert (on.active, on.history_user) == (True, org_admin)
    html = history_page(acme, subscription)
    assert "True &rarr; False" in html and "whsec_" not in html


# --- who may see it ----------------------------------------------------------------------------------


@pytest.fixture
def foreign_objects(other_org, other_integration, other_integration_key, products):
    standard = ShippingMethod.objects.create(organization=other_org, code="standard", name="Standard")
    return [
        other_integration,
        make_subscription(other_integration),
        ShippingMethodMapping.objects.create(
            integration=other_integration, external_code="x", method=standard
        ),
        AutomationRule.objects.create(organization=other_org, name="Theirs", actions=[{"type": "hold"}]),
        RoutingRule.objects.create(organization=other_org, name="Theirs"),
        engine_settings(other_org),
        other_integration_key.key,
    ]


def test_another_organizations_history_is_404(acme, foreign_objects):
    for obj in foreign_objects:
        assert obj.history.exists()
        assert acme.get(history_url(obj)).status_code == 404, obj


def test_a_member_sees_the_history_of_granted_integrations_only(
    admin_client_for, member, org, channel_connector, make_integration, issue_key
):
    granted = make_integration(org, channel_connector, "Granted shop")
    hidden = make_integration(org, channel_connector, "Hidden shop")
    assign_perm("integrations.view_integration", member, granted)
    client = admin_client_for(member)

    assert client.get(history_url(hidden)).status_code == 404
    assert client.get(history_url(granted)).status_code == 200
    hidden_key = issue_key(kind="integration", name="Hidden key", integration=hidden).key
    assert client.get(history_url(hidden_key)).status_code == 404
    rule = AutomationRule.objects.create(
        organization=org, name="Org admins' only", actions=[{"type": "hold"}]
    )
    assert client.get(history_url(rule)).status_code == 404


def test_there_is_no_revert_view(acme, integration):
    row = integration.history.get()
    with pytest.raises(NoReverseMatch):
        reverse("admin:integrations_integration_simple_history", args=[integration.pk, row.pk])
    url = f"{integration_url(integration)}history/{row.pk}/"
    assert acme.get(url).status_code in (302, 404)  # nothing but the admin's catch-all redirect
    assert acme.post(url, {"name": "reverted"}).status_code in (302, 404)
    integration.refresh_from_db()
    assert integration.name == "Acme web shop"
    assert "revert" not in history_page(acme, integration).lower()


def test_the_history_page_queries_do_not_grow_with_rows(
    acme, org, integration, products, django_assert_max_num_queries
):
    mapping = SkuMapping.objects.create(integration=integration, external_sku="S-0", product=products["MUG"])
    for number in range(1, 40):
        integration.name = f"Shop {number}"
        integration.settings = {"page": number}
        integration.save()
        mapping.external_sku = f"S-{number}"
        mapping.product = products["MUG" if number % 2 else "TSHIRT-S"]
        mapping.save()

    for obj in (integration, mapping):
        with django_assert_max_num_queries(15):
            html = history_page(acme, obj)
        assert html.count('class="sy-history-row"') == 40


def test_the_integration_page_lists_its_last_configuration_changes(
    acme, org_admin, org, integration, integration_key, products
):
    integration.notification_email = "ops@shop.test"
    integration.save()
    mapping = SkuMapping.objects.create(
        integration=integration, external_sku="SHOP-MUG", product=products["MUG"]
    )
    mapping.delete()
    make_subscription(integration)
    acme.post(reverse("admin:tokens_apikey_revoke", args=[integration_key.key.pk]))

    page = acme.get(integration_url(integration))

    assert page.status_code == 200
    html = page.content.decode()
    start = html.index("Configuration changes<")
    table = html[start : html.index("</table>", start)]
    assert all(line in table for line in ("changed notification email", "SKU mapping SHOP-MUG", "deleted"))
    assert f"Key sy_{integration_key.key.prefix}_…" in table and "revoked at, revoked by" in table
    assert org_admin.username in table and "Webhook https://hooks.example.test/in" in table
    assert "whsec_" not in html and integration_key.key.secret_hash not in html


def test_a_routing_cards_history_lists_its_location_changes(acme, org_admin, org, warehouse, west):
    acme.post(reverse("admin:automations_routingrule_add"), card_post(org, locations=[warehouse]))
    card = RoutingRule.objects.get()
    [east] = card.preferences.all()
    data = card_post(org, locations=[west]) | {
        "preferences-TOTAL_FORMS": 2,
        "preferences-INITIAL_FORMS": 1,
        "preferences-0-id": east.pk,
        "preferences-0-rule": card.pk,
        "preferences-0-location": warehouse.pk,
        "preferences-0-position": 0,
        "preferences-0-DELETE": "on",
        "preferences-1-location": west.pk,
        "preferences-1-position": 1,
    }
    data.pop("organization")

    response = acme.post(reverse("admin:automations_routingrule_change", args=[card.pk]), data)

    assert response.status_code == 302, response.content[:2000]
    html = history_page(acme, card)
    related = html[html.index('id="sy-related-history"') :]
    assert "East at position 0" in related and "West at position 1" in related
    assert related.count("deleted") == 1 and related.count("created") == 2
    assert related.count(org_admin.username) == 3
