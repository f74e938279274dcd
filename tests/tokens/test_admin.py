"""The keys admin: issue, register custom integration, shown-once page, revoke/regenerate/rotate, scoping."""

import re

import pytest
from django.urls import reverse
from guardian.shortcuts import assign_perm

from integrations.models import Connector, Integration
from tokens import authentication as services
from tokens.models import ApiKey

KEY_RE = re.compile(r'id="sy-key" readonly value="(sy_[a-z0-9]{8}_[A-Za-z0-9_-]{43,})"')


def plaintext_from(response):
    match = KEY_RE.search(response.content.decode())
    assert match, response.content.decode()[:3000]
    return match.group(1)


def test_register_custom_integration_shows_the_key_once(admin_client_for, org_admin, org):
    client = admin_client_for(org_admin)
    url = reverse("admin:tokens_apikey_register")

    choose = client.get(url)
    assert b"Register a custom 3PL" in choose.content
    form = client.get(url + "?type=3pl")
    assert set(form.context["form"].initial["grants"]) == set(
        Connector.objects.get(key="custom-3pl", organization=None).recommended_grants
    )

    response = client.post(
        url + "?type=3pl",
        {
            "organization": org.pk,
            "connector_type": "3pl",
            "name": "Acme 3PL partner",
            "grants": ["shipping_requests:read", "fulfillments:write"],
            "expiration": "90",
        },
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = plaintext_from(response)
    key = services.authenticate(plaintext, "127.0.0.1")
    assert key.grants == ["shipping_requests:read", "fulfillments:write"]
    integration = Integration.objects.get(name="Acme 3PL partner")
    assert key.integration == integration and integration.status == "connecting"
    assert integration.connector.organization == org and integration.connector.type == "3pl"
    # Never again: not on the key page, the integration page or the key list.
    secret = plaintext.split("_", 2)[2]
    for page in [
        reverse("admin:tokens_apikey_change", args=[key.pk]),
        reverse("admin:tokens_apikey_changelist"),
        reverse("admin:integrations_integration_change", args=[integration.pk]),
        reverse("admin:integrations_integrationevent_changelist"),
    ]:
        html = client.get(page).content.decode()
        assert secret not in html
        assert key.prefix in html or page.endswith("integrationevent/")


def test_register_refuses_no_grants_and_unknown_type(admin_client_for, org_admin, org):
    client = admin_client_for(org_admin)
    url = reverse("admin:tokens_apikey_register")

    response = client.post(
        url + "?type=channel",
        {"organization": org.pk, "connector_type": "channel", "name": "X", "expiration": "never"},
    )
    assert response.status_code == 200 and "grants" in response.context["form"].errors
    assert "templates" in client.get(url + "?type=spaceship").context  # back to the chooser
    assert not Integration.objects.filter(name="X").exists()


def test_issue_key_for_integration_prefills_recommended_grants(admin_client_for, org_admin, integration):
    client = admin_client_for(org_admin)
    url = reverse("admin:tokens_apikey_add") + f"?integration={integration.pk}"

    form = client.get(url)
    assert form.context["form"].initial["grants"] == integration.connector.recommended_grants
    response = client.post(url, {"name": "Second key", "grants": ["orders:read"], "expiration": "30"})

    key = services.authenticate(plaintext_from(response), "127.0.0.1")
    assert key.integration == integration and key.grants == ["orders:read"]


def test_issue_key_for_other_orgs_integration_falls_back_to_chooser(
    admin_client_for, org_admin, other_integration
):
    client = admin_client_for(org_admin)

    response = client.post(
        reverse("admin:tokens_apikey_add") + f"?integration={other_integration.pk}",
        {"name": "Sneaky", "grants": ["orders:read"], "expiration": "30"},
    )

    assert response.status_code == 200 and "integrations" in response.context
    assert not ApiKey.objects.filter(name="Sneaky").exists()


def test_regenerate_kills_old_key_and_shows_new_once(admin_client_for, org_admin, integration_key):
    client = admin_client_for(org_admin)

    response = client.post(reverse("admin:tokens_apikey_regenerate", args=[integration_key.key.pk]))

    new = plaintext_from(response)
    assert services.authenticate(new, "127.0.0.1").pk != integration_key.key.pk
    with pytest.raises(services.KeyRefused) as refused:
        services.authenticate(integration_key.plaintext, "127.0.0.1")
    assert refused.value.api_code == "key_revoked"


def test_rotate_keeps_old_key_for_grace(admin_client_for, org_admin, integration_key):
    client = admin_client_for(org_admin)

    response = client.post(
        reverse("admin:tokens_apikey_rotate", args=[integration_key.key.pk]), {"grace_hours": 2}
    )

    plaintext_from(response)
    assert services.authenticate(integration_key.plaintext, "127.0.0.1")  # still valid during grace
    integration_key.key.refresh_from_db()
    assert integration_key.key.replaced_by is not None and integration_key.key.expires_at is not None


def test_revoke_button_and_bulk_action(admin_client_for, org_admin, integration, integration_key, issue_key):
    second = issue_key(kind="integration", name="Second", integration=integration)
    client = admin_client_for(org_admin)

    client.post(reverse("admin:tokens_apikey_revoke", args=[integration_key.key.pk]))
    client.post(
        reverse("admin:tokens_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [second.key.pk]},
    )

    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2


@pytest.mark.parametrize("name", ["change", "revoke", "regenerate", "rotate", "history"])
def test_other_orgs_key_is_404(admin_client_for, org_admin, other_integration_key, name):
    client = admin_client_for(org_admin)
    url = reverse(f"admin:tokens_apikey_{name}", args=[other_integration_key.key.pk])

    assert client.get(url).status_code in (404, 405)
    assert client.post(url, {"grace_hours": 1}).status_code == 404
    other_integration_key.key.refresh_from_db()
    assert other_integration_key.key.revoked_at is None and other_integration_key.key.replaced_by is None


def test_key_list_is_scoped_and_shows_no_secret(
    admin_client_for, org_admin, integration_key, other_integration_key, global_key
):
    page = admin_client_for(org_admin).get(reverse("admin:tokens_apikey_changelist"))

    assert [k.pk for k in page.context["cl"].result_list] == [integration_key.key.pk]
    assert integration_key.plaintext.split("_", 2)[2].encode() not in page.content


def test_bulk_revoke_ignores_other_orgs_keys(admin_client_for, org_admin, other_integration_key):
    admin_client_for(org_admin).post(
        reverse("admin:tokens_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [other_integration_key.key.pk]},
    )

    other_integration_key.key.refresh_from_db()
    assert other_integration_key.key.revoked_at is None


def test_member_needs_manage_keys_permission(admin_client_for, member, integration, integration_key):
    client = admin_client_for(member)
    assign_perm("integrations.change_integration", member, integration)
    assert client.get(reverse("admin:tokens_apikey_change", args=[integration_key.key.pk])).status_code == 404

    assign_perm("integrations.manage_keys_integration", member, integration)
    member = type(member).objects.get(pk=member.pk)  # fresh permission cache
    client = admin_client_for(member)
    assert client.get(reverse("admin:tokens_apikey_change", args=[integration_key.key.pk])).status_code == 200
    response = client.post(reverse("admin:tokens_apikey_regenerate", args=[integration_key.key.pk]))
    assert plaintext_from(response)


def test_key_changelist_query_count(
    admin_client_for, org_admin, integration, issue_key, django_assert_max_num_queries
):
    for i in range(25):
        issue_key(kind="integration", name=f"Key {i}", integration=integration)
    client = admin_client_for(org_admin)

    with django_assert_max_num_queries(12):
        page = client.get(reverse("admin:tokens_apikey_changelist"))

    assert page.context["cl"].result_count == 25
