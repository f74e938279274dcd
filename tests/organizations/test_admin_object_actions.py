"""
The admin's object actions (console/admin/mixins.py): every button on an object's page is made by
`object_action`, so each answers the same way — 405 to a method it does not take, 404 for an object outside
your organizations (nothing run), 403 without the permission — and its bulk twin acts only on the rows you
may act on.
"""

import pytest
from django.contrib import admin
from django.urls import reverse
from guardian.shortcuts import assign_perm

from console.admin.mixins import ObjectActionsMixin
from integrations.choices import IntegrationStatus as S
from organizations.choices import Role
from tests.fixtures.organizations import join, make_user

# The buttons that were hand-written views before; each must now come from the mixin.
EXPECTED = {
    "integrations_integration_disable",
    "integrations_integration_enable",
    "integrations_integration_reenable",
    "integrations_integration_test_connection",
    "integrations_integration_signing_secret",
    "integrations_integration_export",
    "integrations_integration_access",
    "integrations_webhooksubscription_test",
    "integrations_webhooksubscription_switch_on",
    "integrations_webhooksubscription_switch_off",
    "integrations_webhookdelivery_replay",
    "tokens_apikey_revoke",
    "tokens_apikey_regenerate",
    "tokens_apikey_rotate",
    "orders_order_hold",
    "orders_order_release",
    "orders_order_cancel",
    "automations_automationrule_dry_run",
    "automations_enginesettings_run",
}


def object_actions():
    for model_admin in admin.site._registry.values():
        if isinstance(model_admin, ObjectActionsMixin):
            opts = model_admin.model._meta
            for _, spec in model_admin._object_actions():
                yield f"{opts.app_label}_{opts.model_name}_{spec.name}", spec


def action_url(name, spec, pk):
    kwargs = {"object_id": pk}
    if "<str:engine>" in spec.route:
        kwargs["engine"] = "hold"
    return reverse(f"admin:{name}", kwargs=kwargs)


def test_every_button_is_an_object_action():
    made = {name for name, _ in object_actions()}

    assert made, "no object actions found"
    assert made >= EXPECTED


@pytest.mark.parametrize("method", ["get", "post", "put"])
def test_each_object_action_answers_alike(admin_client_for, org_admin, method):
    client = admin_client_for(org_admin)
    actions = list(object_actions())
    assert actions

    for name, spec in actions:
        answer = getattr(client, method)(action_url(name, spec, 987654321)).status_code
        # Not a method it takes: 405 before anything is read; else the missing object is a 404.
        expected = 404 if method.upper() in spec.methods else 405
        assert answer == expected, (name, method, answer)


def test_a_button_on_a_reachable_object_without_the_permission_is_403(
    admin_client_for, org, member, integration
):
    assign_perm("integrations.view_integration", member, integration)
    client = admin_client_for(member)

    response = client.post(reverse("admin:integrations_integration_disable", args=[integration.pk]))

    assert response.status_code == 403
    integration.refresh_from_db()
    assert integration.status != S.DISABLED


def test_a_bulk_action_acts_only_on_rows_the_user_may_change(
    admin_client_for, org, other_org, integration, other_integration, channel_connector, make_integration
):
    # A member of both organizations, granted change on one integration of each.
    user = join(make_user("carol"), org, Role.MEMBER)
    join(user, other_org, Role.MEMBER)
    assign_perm("integrations.change_integration", user, integration)
    ungranted = make_integration(org, channel_connector, "Ungranted")
    assign_perm("integrations.view_integration", user, ungranted)
    client = admin_client_for(user)

    response = client.post(
        reverse("admin:integrations_integration_changelist"),
        {"action": "disable_selected", "_selected_action": [integration.pk, ungranted.pk]},
        follow=True,
    )

    said = [str(m) for m in response.context["messages"]]
    integration.refresh_from_db()
    ungranted.refresh_from_db()
    assert integration.status == S.DISABLED and ungranted.status != S.DISABLED
    assert said == ["Disabled 1 integration.", "Ungranted: not allowed."]
