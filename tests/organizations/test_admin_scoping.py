"""
Tenant boundaries in the admin: an org admin of Acme never sees or reaches Globex's rows — changelists,
change/delete/history views by URL (404), FK choices, autocomplete, list filters and actions.
"""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from integrations.choices import IntegrationStatus as S
from integrations.models import Connector, Integration, IntegrationEvent
from organizations.models import Membership, Organization
from tests.fixtures.organizations import PASSWORD, join, make_user

User = get_user_model()


@pytest.fixture
def globex_private_connector(other_org):
    return Connector.objects.create(
        key="globex-erp", name="Globex house ERP", type="erp", organization=other_org
    )


@pytest.fixture
def client_a(admin_client_for, org_admin, integration, other_integration, other_admin):
    """Acme's admin, with one integration in each organization."""
    return admin_client_for(org_admin)


def object_urls(admin_name, pk):
    names = ["change", "delete", "history"]
    return [reverse(f"admin:{admin_name}_{name}", args=[pk]) for name in names]


def test_changelist_lists_only_own_integrations(client_a, integration):
    page = client_a.get(reverse("admin:integrations_integration_changelist"))

    assert [i.pk for i in page.context["cl"].result_list] == [integration.pk]
    assert b"Globex" not in page.content


def test_superuser_sees_every_organization(admin_client_for, superuser, integration, other_integration):
    page = admin_client_for(superuser).get(reverse("admin:integrations_integration_changelist"))

    assert {i.pk for i in page.context["cl"].result_list} == {integration.pk, other_integration.pk}


@pytest.mark.parametrize("suffix", ["change", "delete", "history", "export", "access"])
def test_other_orgs_integration_by_url_is_404(client_a, other_integration, suffix):
    url = reverse(f"admin:integrations_integration_{suffix}", args=[other_integration.pk])

    assert client_a.get(url).status_code == 404


@pytest.mark.parametrize("suffix", ["change", "delete", "disable", "enable", "access"])
def test_other_orgs_integration_posts_are_404_and_change_nothing(client_a, other_integration, suffix):
    url = reverse(f"admin:integrations_integration_{suffix}", args=[other_integration.pk])

    response = client_a.post(url, {"post": "yes", "name": "Hijacked", "mappings": "{}"})

    assert response.status_code == 404
    other_integration.refresh_from_db()
    assert other_integration.name == "Globex web shop" and other_integration.status == S.CONNECTING


def test_nonexistent_id_is_404_too(client_a):
    assert client_a.get(reverse("admin:integrations_integration_change", args=[999999])).status_code == 404


def test_actions_ignore_other_orgs_ids(client_a, integration, other_integration):
    client_a.post(
        reverse("admin:integrations_integration_changelist"),
        {"action": "disable_selected", "_selected_action": [integration.pk, other_integration.pk]},
    )

    integration.refresh_from_db()
    other_integration.refresh_from_db()
    assert integration.status == S.DISABLED
    assert other_integration.status == S.CONNECTING


def test_bulk_delete_ignores_other_orgs_ids(client_a, integration, other_integration):
    client_a.post(
        reverse("admin:integrations_integration_changelist"),
        {"action": "delete_selected", "_selected_action": [other_integration.pk], "post": "yes"},
    )

    assert Integration.objects.filter(pk=other_integration.pk).exists()


def test_list_filter_choices_are_scoped(
    client_a, integration, globex_private_connector, other_org, make_integration
):
    make_integration(other_org, globex_private_connector, "Globex ERP link")

    page = client_a.get(reverse("admin:integrations_integration_changelist"))

    html = page.content.decode()
    assert "Globex house ERP" not in html
    assert "Globex Supply" not in html  # the organization filter lists only Acme


def test_wizard_offers_public_and_own_private_connectors_only(client_a, org, globex_private_connector):
    own = Connector.objects.create(
        key="acme-pos", name="Acme point of sale", type="channel", organization=org
    )

    page = client_a.get(reverse("admin:integrations_integration_add"))

    keys = {c.key for c in page.context["connectors"]}
    assert own.key in keys and "custom-channel" in keys
    assert globex_private_connector.key not in keys
    # Asking for Globex's private connector by id falls back to the chooser.
    forced = client_a.get(
        reverse("admin:integrations_integration_add") + f"?connector={globex_private_connector.pk}"
    )
    assert "connectors" in forced.context


def test_organization_choices_on_add_are_own_orgs(client_a, org, channel_connector):
    page = client_a.get(reverse("admin:integrations_integration_add") + f"?connector={channel_connector.pk}")

    choices = list(page.context["adminform"].form.fields["organization"].queryset)
    assert choices == [org]


def test_cannot_create_integration_in_another_org(client_a, other_org, channel_connector):
    response = client_a.post(
        reverse("admin:integrations_integration_add") + f"?connector={channel_connector.pk}",
        {"organization": other_org.pk, "name": "Sneaky", "mappings": "{}"},
    )

    assert response.status_code == 200
    assert "organization" in response.context["adminform"].form.errors
    assert not Integration.objects.filter(name="Sneaky").exists()


def test_connector_admin_scoping(client_a, org, globex_private_connector):
    own = Connector.objects.create(
        key="acme-pos", name="Acme point of sale", type="channel", organization=org
    )
    public = Connector.objects.get(key="custom-channel", organization=None)

    page = client_a.get(reverse("admin:integrations_connector_changelist"))

    listed = {c.key for c in page.context["cl"].result_list}
    assert own.key in listed and public.key in listed and globex_private_connector.key not in listed
    assert (
        client_a.get(
            reverse("admin:integrations_connector_change", args=[globex_private_connector.pk])
        ).status_code
        == 404
    )
    # Public catalog entries are read-only to org admins.
    view = client_a.get(reverse("admin:integrations_connector_change", args=[public.pk]))
    assert view.status_code == 200 and b'name="_save"' not in view.content
    assert (
        client_a.post(
            reverse("admin:integrations_connector_delete", args=[public.pk]), {"post": "yes"}
        ).status_code
        == 403
    )


def test_connector_integration_counts_do_not_leak(client_a, integration, other_integration):
    page = client_a.get(reverse("admin:integrations_connector_changelist"))

    channel = next(c for c in page.context["cl"].result_list if c.key == "custom-channel")
    assert channel._integrations == 1  # Globex's integration of the same public connector is not counted


def test_events_are_scoped(client_a, integration, other_integration):
    page = client_a.get(reverse("admin:integrations_integrationevent_changelist"))

    orgs = {e.organization_id for e in page.context["cl"].result_list}
    assert orgs == {integration.organization_id}
    other_event = IntegrationEvent.objects.filter(integration=other_integration).first()
    assert (
        client_a.get(reverse("admin:integrations_integrationevent_change", args=[other_event.pk])).status_code
        == 404
    )


# --- organizations and users ------------------------------------------------------------------------


def test_org_admin_sees_only_own_organization(client_a, org, other_org):
    page = client_a.get(reverse("admin:organizations_organization_changelist"))

    assert list(page.context["cl"].result_list) == [org]
    assert (
        client_a.get(reverse("admin:organizations_organization_change", args=[other_org.pk])).status_code
        == 404
    )
    assert client_a.get(reverse("admin:organizations_organization_add")).status_code == 403


def test_users_are_scoped_to_own_orgs(client_a, org_admin, other_admin):
    page = client_a.get(reverse("admin:auth_user_changelist"))

    assert {u.username for u in page.context["cl"].result_list} == {"alice"}
    for url in [
        reverse("admin:auth_user_change", args=[other_admin.pk]),
        reverse("admin:auth_user_password_change", args=[other_admin.pk]),
        reverse("admin:auth_user_delete", args=[other_admin.pk]),
    ]:
        assert client_a.get(url).status_code == 404


def test_user_autocomplete_is_scoped(client_a, org_admin, other_admin):
    response = client_a.get(
        reverse("admin:autocomplete"),
        {"app_label": "organizations", "model_name": "membership", "field_name": "user", "term": ""},
    )

    assert response.status_code == 200
    assert {r["text"] for r in response.json()["results"]} == {"alice"}


def test_org_admin_cannot_make_self_superuser(client_a, org_admin, org):
    url = reverse("admin:auth_user_change", args=[org_admin.pk])
    membership = Membership.objects.get(user=org_admin)

    response = client_a.post(
        url,
        {
            "username": "alice",
            "email": "alice@example.test",
            "is_active": "on",
            "is_superuser": "on",
            "is_staff": "on",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-id": membership.pk,
            "memberships-0-user": org_admin.pk,
            "memberships-0-organization": org.pk,
            "memberships-0-role": "admin",
        },
    )

    assert response.status_code == 302, response.context[
        "adminform"
    ].form.errors  # saved, minus the escalation
    org_admin.refresh_from_db()
    assert not org_admin.is_superuser
    assert client_a.get(url).status_code == 200
    assert b"is_superuser" not in client_a.get(url).content


def _add_user_post(org_pk, username="newbie"):
    return {
        "username": username,
        "usable_password": "true",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "1",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-organization": org_pk,
        "memberships-0-role": "member",
    }


def test_org_admin_adds_user_to_own_org(client_a, org):
    response = client_a.post(reverse("admin:auth_user_add"), _add_user_post(org.pk))

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    user = User.objects.get(username="newbie")
    assert user.is_staff and not user.is_superuser
    assert Membership.objects.filter(user=user, organization=org, role="member").exists()


def test_org_admin_cannot_add_user_to_another_org(client_a, other_org):
    response = client_a.post(reverse("admin:auth_user_add"), _add_user_post(other_org.pk))

    assert response.status_code == 200
    assert not User.objects.filter(username="newbie").exists()
    assert not Membership.objects.filter(organization=other_org).exclude(user__username="oscar").exists()


def test_user_in_two_orgs_is_read_only_to_one_orgs_admin(client_a, org, other_org):
    shared = join(join(make_user("sam"), org, "member"), other_org, "admin")

    page = client_a.get(reverse("admin:auth_user_change", args=[shared.pk]))

    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client_a.get(reverse("admin:auth_user_password_change", args=[shared.pk])).status_code in (
        403,
        404,
    )


def test_member_without_grants_sees_no_integrations_and_no_users(admin_client_for, member, integration):
    client = admin_client_for(member)

    page = client.get(reverse("admin:integrations_integration_changelist"))

    assert page.status_code == 200 and page.context["cl"].result_count == 0
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert (
        client.get(reverse("admin:integrations_integration_change", args=[integration.pk])).status_code == 404
    )


def test_other_org_member_grants_do_not_cross_orgs(admin_client_for, other_org, integration):
    """A member of Globex given a guardian permission on an Acme integration still cannot see it."""
    from guardian.shortcuts import assign_perm

    outsider = join(make_user("eve"), other_org, "member")
    assign_perm("integrations.view_integration", outsider, integration)

    response = admin_client_for(outsider).get(
        reverse("admin:integrations_integration_change", args=[integration.pk])
    )

    assert response.status_code == 404


def test_staff_without_membership_sees_nothing(admin_client_for, integration):
    stray = make_user("stray")
    client = admin_client_for(stray)

    index = client.get(reverse("admin:index"))

    assert index.status_code == 200
    assert not index.context["app_list"]
    assert client.get(reverse("admin:integrations_integration_changelist")).status_code == 403
    assert Organization.objects.count() == 1


def test_org_admin_edits_own_organization_with_its_memberships(client_a, org, org_admin):
    url = reverse("admin:organizations_organization_change", args=[org.pk])
    membership = Membership.objects.get(user=org_admin, organization=org)

    page = client_a.get(url)
    assert page.status_code == 200
    assert b"memberships-0-role" in page.content  # the inline is there and editable

    response = client_a.post(
        url,
        {
            "name": "Acme Outfitters Ltd",
            "notification_email": "ops@acme.test",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-id": membership.pk,
            "memberships-0-organization": org.pk,
            "memberships-0-user": org_admin.pk,
            "memberships-0-role": "admin",
        },
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    org.refresh_from_db()
    assert org.name == "Acme Outfitters Ltd" and org.slug == "acme"
