"""Members in the integrations admin: the member access page (guardian object permissions), and what a
member reaches and changes with them."""

from django.urls import reverse
from guardian.shortcuts import assign_perm

from integrations.choices import IntegrationStatus as S

CHANGELIST = reverse("admin:integrations_integration_changelist")
ADD = reverse("admin:integrations_integration_add")


def change_url(integration):
    return reverse("admin:integrations_integration_change", args=[integration.pk])


def test_member_access_page_grants_object_permissions(admin_client_for, org_admin, member, integration):
    url = reverse("admin:integrations_integration_access", args=[integration.pk])
    client = admin_client_for(org_admin)

    client.post(
        url, {f"perm-{member.pk}-view_integration": "on", f"perm-{member.pk}-change_integration": "on"}
    )

    assert member.has_perm("integrations.view_integration", integration)
    assert member.has_perm("integrations.change_integration", integration)
    assert not member.has_perm("integrations.manage_keys_integration", integration)
    assert integration.events.filter(kind="permissions_changed").exists()


def test_member_sees_only_granted_integrations(
    admin_client_for, member, org, channel_connector, make_integration
):
    granted = make_integration(org, channel_connector, "Granted shop")
    hidden = make_integration(org, channel_connector, "Hidden shop")
    assign_perm("integrations.view_integration", member, granted)
    client = admin_client_for(member)

    page = client.get(CHANGELIST)

    assert [i.pk for i in page.context["cl"].result_list] == [granted.pk]
    assert client.get(change_url(hidden)).status_code == 404
    view = client.get(change_url(granted))
    assert view.status_code == 200 and b'name="_save"' not in view.content  # view only
    assert client.get(ADD).status_code == 403
    assert client.get(reverse("admin:integrations_integration_access", args=[granted.pk])).status_code == 403


def test_member_with_change_permission_can_edit_but_not_delete(admin_client_for, member, org, integration):
    assign_perm("integrations.change_integration", member, integration)
    client = admin_client_for(member)

    page = client.get(change_url(integration))
    assert b"sku_mappings-TOTAL_FORMS" not in page.content  # mapping rows stay with the org admins

    response = client.post(
        change_url(integration),
        {"name": "Renamed by member", "notification_email": "", "mappings": "{}", "flow_orders_in": "on"},
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    integration.refresh_from_db()
    assert integration.name == "Renamed by member"
    assert (
        client.get(reverse("admin:integrations_integration_delete", args=[integration.pk])).status_code == 403
    )


def test_member_action_on_ungranted_integration_does_nothing(
    admin_client_for, member, org, channel_connector, make_integration
):
    granted = make_integration(org, channel_connector, "Granted shop")
    hidden = make_integration(org, channel_connector, "Hidden shop")
    assign_perm("integrations.view_integration", member, granted)

    admin_client_for(member).post(
        CHANGELIST, {"action": "disable_selected", "_selected_action": [granted.pk, hidden.pk]}
    )

    granted.refresh_from_db()
    hidden.refresh_from_db()
    assert granted.status == S.CONNECTING  # view permission does not allow a change
    assert hidden.status == S.CONNECTING
