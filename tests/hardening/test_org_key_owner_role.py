"""
Finding 3: an org key reaches the whole organization, which only an org admin may. So a key is valid only
while its owner is an org admin of its organization (or a superuser) — checked at every request — and a
demotion or removal in the admin revokes the owner's org keys there, with the reason recorded.
"""

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integrations.choices import EventKind
from integrations.models import IntegrationEvent
from organizations.choices import Role
from organizations.models import Membership
from tests.api.helpers import assert_error
from tests.fixtures.organizations import join, make_user
from tokens import authentication
from tokens import issuing as key_services
from tokens.choices import KeyKind, KeyState
from tokens.models import ApiKey

ORDERS = "/api/v1/orders"


@pytest.fixture
def bob(org):
    """A second org admin of Acme, who changes alice's role."""
    return join(make_user("bob"), org, Role.ADMIN)


@pytest.fixture
def alice_key(org, org_admin):
    return key_services.issue_key(
        kind=KeyKind.ORG, name="alice's script", organization=org, user=org_admin, grants=["orders:read"]
    )


def membership_of(user, org):
    return Membership.objects.get(user=user, organization=org)


def inline_rows(org):
    """The Membership inline of the organization page as posted unchanged (keyed by username)."""
    rows = {}
    for n, m in enumerate(Membership.objects.filter(organization=org).select_related("user").order_by("pk")):
        rows[m.user.username] = {
            f"memberships-{n}-id": m.pk,
            f"memberships-{n}-organization": org.pk,
            f"memberships-{n}-user": m.user_id,
            f"memberships-{n}-role": m.role,
        }
    return rows


def post_organization_page(client, org, change):
    """Save the organization page with `change(rows)` applied to its membership rows."""
    rows = inline_rows(org)
    change(rows)
    data = {
        "name": org.name,
        "notification_email": org.notification_email,
        "memberships-TOTAL_FORMS": len(rows),
        "memberships-INITIAL_FORMS": len(rows),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for row in rows.values():
        data.update(row)
    return client.post(reverse("admin:organizations_organization_change", args=[org.pk]), data)


def set_role_in_row(rows, username, role):
    (field,) = [f for f in rows[username] if f.endswith("-role")]
    rows[username][field] = role


def demote_on_membership_page(client, org, user):
    return client.post(
        reverse("admin:organizations_membership_change", args=[membership_of(user, org).pk]),
        {"user": user.pk, "organization": org.pk, "role": Role.MEMBER},
    )


def demote_on_organization_page(client, org, user):
    return post_organization_page(client, org, lambda rows: set_role_in_row(rows, user.username, Role.MEMBER))


def demote_on_user_page(client, org, user):
    m = membership_of(user, org)
    return client.post(
        reverse("admin:auth_user_change", args=[user.pk]),
        {
            "username": user.username,
            "email": user.email,
            "is_active": "on",
            "memberships-TOTAL_FORMS": 1,
            "memberships-INITIAL_FORMS": 1,
            "memberships-MIN_NUM_FORMS": 1,
            "memberships-MAX_NUM_FORMS": 1000,
            "memberships-0-id": m.pk,
            "memberships-0-user": user.pk,
            "memberships-0-organization": org.pk,
            "memberships-0-role": Role.MEMBER,
        },
    )


def remove_on_membership_delete_page(client, org, user):
    return client.post(
        reverse("admin:organizations_membership_delete", args=[membership_of(user, org).pk]), {"post": "yes"}
    )


def remove_on_organization_page(client, org, user):
    def delete(rows):
        prefix = next(iter(rows[user.username])).rsplit("-", 1)[0]
        rows[user.username][f"{prefix}-DELETE"] = "on"

    return post_organization_page(client, org, delete)


def remove_with_bulk_action(client, org, user):
    return client.post(
        reverse("admin:organizations_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [membership_of(user, org).pk], "post": "yes"},
    )


def assert_saved(response):
    assert response.status_code == 302, response.context and [
        f.errors for f in response.context.get("inline_admin_formsets", [])
    ]


def assert_revoked_with_reason(issued, actor, words):
    key = ApiKey.objects.get(pk=issued.key.pk)
    assert key.state() == KeyState.REVOKED
    assert key.revoked_by == f"user:{actor.username}"
    assert all(w in key.revoke_reason for w in words), key.revoke_reason
    # The organization's trail records it, and the key's history holds the revocation.
    (event,) = IntegrationEvent.objects.filter(
        kind=EventKind.KEY, data__prefix=key.prefix, message__contains="revoked"
    )
    assert (event.organization_id, event.actor) == (key.organization_id, f"user:{actor.username}")
    assert key.history.filter(revoked_at__isnull=False).count() == 1


def test_an_org_admins_org_key_works(api_client, alice_key):
    assert api_client(alice_key).get(ORDERS).status_code == 200


@pytest.mark.parametrize(
    "demote", [demote_on_membership_page, demote_on_organization_page, demote_on_user_page]
)
def test_demoting_the_owner_revokes_the_org_key(
    api_client, admin_client_for, org, org_admin, bob, alice_key, demote
):
    # given: alice's org key works
    client = api_client(alice_key)
    assert client.get(ORDERS).status_code == 200

    # when: bob makes alice a member
    assert_saved(demote(admin_client_for(bob), org, org_admin))

    # then: the key is refused, shows revoked with the reason, and the trail says so
    assert membership_of(org_admin, org).role == Role.MEMBER
    assert_error(client.get(ORDERS), 401, "key_revoked")
    assert_revoked_with_reason(alice_key, bob, ["alice", "no longer an org admin", "Acme Outfitters"])


@pytest.mark.parametrize(
    "remove", [remove_on_membership_delete_page, remove_on_organization_page, remove_with_bulk_action]
)
def test_removing_the_owner_from_the_organization_revokes_the_org_key(
    api_client, admin_client_for, org, org_admin, bob, alice_key, remove
):
    client = api_client(alice_key)
    assert client.get(ORDERS).status_code == 200

    assert_saved(remove(admin_client_for(bob), org, org_admin))

    assert not Membership.objects.filter(user=org_admin, organization=org).exists()
    assert_error(client.get(ORDERS), 401, "key_revoked")
    assert_revoked_with_reason(alice_key, bob, ["alice", "removed from", "Acme Outfitters"])


def test_an_unchanged_save_revokes_nothing(api_client, admin_client_for, org, org_admin, bob, alice_key):
    assert_saved(post_organization_page(admin_client_for(bob), org, lambda rows: None))

    assert api_client(alice_key).get(ORDERS).status_code == 200
    assert ApiKey.objects.get(pk=alice_key.key.pk).revoked_at is None


def test_demoting_someone_else_leaves_the_owners_key_alone(
    api_client, admin_client_for, org, org_admin, bob, alice_key
):
    assert_saved(demote_on_membership_page(admin_client_for(org_admin), org, bob))

    assert api_client(alice_key).get(ORDERS).status_code == 200


def test_promoting_again_does_not_resurrect_a_revoked_key(
    api_client, admin_client_for, org, org_admin, bob, alice_key
):
    client = admin_client_for(bob)
    assert_saved(demote_on_membership_page(client, org, org_admin))

    membership = membership_of(org_admin, org)
    response = client.post(
        reverse("admin:organizations_membership_change", args=[membership.pk]),
        {"user": org_admin.pk, "organization": org.pk, "role": Role.ADMIN},
    )

    assert_saved(response)
    assert membership_of(org_admin, org).role == Role.ADMIN
    assert_error(api_client(alice_key).get(ORDERS), 401, "key_revoked")


def test_a_role_changed_outside_the_services_still_narrows_the_key(api_client, org, org_admin, alice_key):
    # The root check: whatever wrote the role (a shell, a data fix), the key follows the current role.
    client = api_client(alice_key)
    assert client.get(ORDERS).status_code == 200

    Membership.objects.filter(user=org_admin, organization=org).update(role=Role.MEMBER)
    assert_error(client.get(ORDERS), 401, "key_revoked")

    Membership.objects.filter(user=org_admin, organization=org).update(role=Role.ADMIN)
    assert client.get(ORDERS).status_code == 200

    Membership.objects.filter(user=org_admin, organization=org).delete()
    assert_error(client.get(ORDERS), 401, "key_revoked")


def test_a_superusers_org_key_is_unaffected(api_client, admin_client_for, org, superuser, bob):
    # given: a superuser who is also an org admin of Acme, with an org key there
    join(superuser, org, Role.ADMIN)
    issued = key_services.issue_key(
        kind=KeyKind.ORG, name="root's", organization=org, user=superuser, grants=["orders:read"]
    )

    # when: bob demotes, then removes, them
    assert_saved(demote_on_membership_page(admin_client_for(bob), org, superuser))
    assert api_client(issued).get(ORDERS).status_code == 200
    assert_saved(remove_on_membership_delete_page(admin_client_for(bob), org, superuser))

    # then: a superuser reaches every organization: the key still works and was not revoked
    assert api_client(issued).get(ORDERS).status_code == 200
    assert ApiKey.objects.get(pk=issued.key.pk).revoked_at is None


def test_an_org_key_is_issued_only_to_an_org_admin(org, org_admin, member):
    with pytest.raises(ValidationError, match="org admin"):
        key_services.issue_key(
            kind=KeyKind.ORG, name="k", organization=org, user=member, grants=["orders:read"]
        )

    assert key_services.issue_key(kind=KeyKind.ORG, name="k", organization=org, user=org_admin).key.pk


def test_the_role_check_adds_no_query(alice_key):
    authentication.authenticate(alice_key.plaintext, "127.0.0.1")  # last used written once

    with CaptureQueriesContext(connection) as queries:
        authentication.authenticate(alice_key.plaintext, "127.0.0.1")

    assert len(queries) == 1, [q["sql"] for q in queries]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_revokes_existing_org_keys_of_non_admins():
    before, after = (
        [("tokens", "0004_encrypt_idempotency_response")],
        [("tokens", "0005_revoke_org_keys_of_non_admins")],
    )
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        # given: org keys made before the rule — an org admin's, a member's, a superuser's (no membership)
        old = executor.loader.project_state(before).apps
        org = old.get_model("organizations", "Organization").objects.create(name="Old", slug="old")
        keys = {}
        for username, role, superuser in [
            ("ada", "admin", False),
            ("max", "member", False),
            ("su", None, True),
        ]:
            user = old.get_model("auth", "User").objects.create(username=username, is_superuser=superuser)
            if role:
                old.get_model("organizations", "Membership").objects.create(
                    user=user, organization=org, role=role
                )
            keys[username] = old.get_model("tokens", "ApiKey").objects.create(
                name=username, kind="org", organization=org, user=user, prefix=f"{username:a<8}",
                secret_hash="0" * 64, pepper_id=1, grants=["orders:read"],
            )  # fmt: skip

        # when
        MigrationExecutor(connection).migrate(after)

        # then: only the member's key is revoked, with the reason, a history row and an event
        revoked = ApiKey.objects.get(pk=keys["max"].pk)
        assert (revoked.state(), revoked.revoked_by) == (KeyState.REVOKED, "system")
        assert revoked.revoke_reason == "owner max is not an org admin of Old"
        assert revoked.history.filter(revoked_at__isnull=False).count() == 1
        (event,) = IntegrationEvent.objects.filter(kind=EventKind.KEY, data__prefix=revoked.prefix)
        assert event.organization_id == org.pk and "revoked" in event.message
        assert (
            ApiKey.objects.filter(pk__in=[keys["ada"].pk, keys["su"].pk], revoked_at__isnull=True).count()
            == 2
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
