"""tokens.issuing, tokens.expiry and tokens.grants: grants, the rules of issuing, revoking, rotating, and the
expiry sweeps (docs/connectors/01-concepts.md, "Keys and grants")."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.choices import EventKind
from integrations.models import Integration, IntegrationEvent
from tokens import authentication, expiry, grants, issuing
from tokens.choices import KeyKind, KeyState
from tokens.models import ApiKey


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def key_events(key):
    return list(
        IntegrationEvent.objects.filter(kind=EventKind.KEY, data__prefix=key.prefix)
        .order_by("pk")
        .values_list("message", flat=True)
    )


# --- grants -------------------------------------------------------------------------------------------


def test_grants_are_deduplicated_and_in_registry_order():
    assert grants.normalize(["events:read", "orders:write", "orders:read", "events:read"]) == [
        "orders:read",
        "orders:write",
        "events:read",
    ]
    assert grants.normalize("events:read, orders:read,") == ["orders:read", "events:read"]
    assert grants.normalize([]) == []


def test_unknown_grants_are_rejected_naming_each():
    with pytest.raises(grants.UnknownGrant) as refused:
        grants.normalize(["orders:read", "orders:delete", "bogus"])

    assert "bogus, orders:delete." in str(refused.value)


def test_every_grant_is_resource_colon_access():
    assert all(g.count(":") == 1 and g.split(":")[1] in ("read", "write") for g in grants.GRANTS)


# --- issuing ------------------------------------------------------------------------------------------


def test_integration_key_defaults_to_the_connectors_recommended_grants(integration, channel_connector):
    issued = issuing.issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration)

    assert issued.key.grants == grants.normalize(channel_connector.recommended_grants)
    assert issued.key.organization_id == integration.organization_id
    assert issued.key.user_id is None


def test_integration_key_with_chosen_grants(integration):
    chosen = issuing.issue_key(
        kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=["events:read"]
    )
    none = issuing.issue_key(kind=KeyKind.INTEGRATION, name="k2", integration=integration, grants=[])

    assert (chosen.key.grants, none.key.grants) == (["events:read"], [])


def test_unknown_grant_is_refused_and_nothing_is_made(integration):
    with pytest.raises(ValidationError, match="orders:delete"):
        issuing.issue_key(
            kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=["orders:delete"]
        )

    assert not ApiKey.objects.exists()


def test_integration_key_needs_an_integration(org):
    with pytest.raises(ValidationError):
        issuing.issue_key(kind=KeyKind.INTEGRATION, name="k", organization=org)


def test_org_key_requires_an_org_admin(org, org_admin, other_admin, member):
    with pytest.raises(ValidationError, match="not a member"):
        issuing.issue_key(
            kind=KeyKind.ORG, name="k", organization=org, user=other_admin, grants=["orders:read"]
        )
    with pytest.raises(ValidationError):
        issuing.issue_key(kind=KeyKind.ORG, name="k", organization=org, grants=["orders:read"])
    # An org key reaches the whole organization, which a member may not (security finding 3).
    with pytest.raises(ValidationError, match="not an org admin"):
        issuing.issue_key(kind=KeyKind.ORG, name="k", organization=org, user=member, grants=["orders:read"])

    issued = issuing.issue_key(kind=KeyKind.ORG, name="alice key", organization=org, user=org_admin)
    assert (issued.key.kind, issued.key.user_id, issued.key.integration_id) == ("org", org_admin.pk, None)


def test_superuser_may_own_an_org_key_without_membership(org, superuser):
    issued = issuing.issue_key(kind=KeyKind.ORG, name="k", organization=org, user=superuser)
    assert issued.key.organization_id == org.pk


def test_global_key_is_for_superusers_only(org, org_admin, superuser):
    with pytest.raises(ValidationError, match="superusers"):
        issuing.issue_key(kind=KeyKind.GLOBAL, name="k", user=org_admin)
    with pytest.raises(ValidationError):
        issuing.issue_key(kind=KeyKind.GLOBAL, name="k", user=superuser, organization=org)

    issued = issuing.issue_key(kind=KeyKind.GLOBAL, name="k", user=superuser, grants=["events:read"])
    assert (issued.key.organization_id, issued.key.integration_id) == (None, None)


def test_expiry_must_be_in_the_future(integration):
    with pytest.raises(ValidationError):
        issuing.issue_key(
            kind=KeyKind.INTEGRATION,
            name="k",
            integration=integration,
            expires_at=timezone.now() - timedelta(1),
        )


def test_allowed_ips_are_normalised_and_checked(integration):
    issued = issuing.issue_key(
        kind=KeyKind.INTEGRATION,
        name="k",
        integration=integration,
        allowed_ips=[" 10.1.2.3/16", "2001:db8::1/32"],
    )
    assert issued.key.allowed_ips == ["10.1.0.0/16", "2001:db8::/32"]

    with pytest.raises(ValidationError, match="Not an IP range"):
        issuing.issue_key(
            kind=KeyKind.INTEGRATION, name="k2", integration=integration, allowed_ips=["10.0.0.300"]
        )


def test_issuing_is_recorded_with_the_prefix_only(integration):
    issued = issuing.issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration)

    (message,) = key_events(issued.key)
    assert issued.key.prefix in message
    assert issued.plaintext.split("_", 2)[2] not in message


def test_expiry_policies(integration):
    now = timezone.now()
    assert issuing.expires_at_for("never", now=now) is None
    assert issuing.expires_at_for("90", now=now) == now + timedelta(days=90)
    assert issuing.expires_at_for("date", now + timedelta(days=3)) == now + timedelta(days=3)
    with pytest.raises(ValidationError):
        issuing.expires_at_for("date")


# --- revoking -----------------------------------------------------------------------------------------


def test_revoke_is_idempotent(integration_key, org_admin):
    key = integration_key.key

    assert issuing.revoke(key, actor=org_admin, reason="leaked") is True
    first = ApiKey.objects.get(pk=key.pk).revoked_at
    assert issuing.revoke(key, actor=org_admin, reason="again") is False

    key.refresh_from_db()
    assert key.revoked_at == first
    assert (key.revoked_by, key.revoke_reason) == ("user:alice", "leaked")
    assert key.state() == KeyState.REVOKED
    assert len([m for m in key_events(key) if "revoked" in m]) == 1


def test_revoke_many(integration, issue_key):
    keys = [issue_key(kind=KeyKind.INTEGRATION, name=f"k{i}", integration=integration).key for i in range(3)]
    issuing.revoke(keys[0])

    count = issuing.revoke_many(ApiKey.objects.filter(pk__in=[k.pk for k in keys]), reason="bulk")

    assert count == 2
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()
    assert issuing.revoke_many(ApiKey.objects.all()) == 0


def test_regenerate_revokes_at_once_and_links_the_successor(integration_key):
    new = issuing.regenerate(integration_key.key)

    old = ApiKey.objects.get(pk=integration_key.key.pk)
    assert old.state() == KeyState.REVOKED
    assert old.replaced_by_id == new.key.pk
    assert (new.key.grants, new.key.integration_id) == (old.grants, old.integration_id)


# --- rotating -----------------------------------------------------------------------------------------


def test_rotate_gives_the_old_key_the_grace_period(integration_key):
    before = timezone.now()
    new = issuing.rotate(integration_key.key, grace=timedelta(hours=6))
    after = timezone.now()

    old = ApiKey.objects.get(pk=integration_key.key.pk)
    assert before + timedelta(hours=6) <= old.expires_at <= after + timedelta(hours=6)
    assert old.replaced_by_id == new.key.pk
    assert old.state() == KeyState.ROTATING
    assert old.revoked_at is None


def test_rotate_default_grace_comes_from_settings(integration_key, settings):
    settings.API_KEY_ROTATION_GRACE_HOURS = 3

    issuing.rotate(integration_key.key)

    expires = ApiKey.objects.get(pk=integration_key.key.pk).expires_at
    assert abs(expires - (timezone.now() + timedelta(hours=3))) < timedelta(seconds=5)


def test_rotate_never_extends_an_earlier_expiry(issue_key, integration):
    soon = timezone.now() + timedelta(hours=1)
    issued = issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration, expires_at=soon)

    issuing.rotate(issued.key, grace=timedelta(hours=24))

    assert ApiKey.objects.get(pk=issued.key.pk).expires_at == soon


def test_rotating_a_key_about_to_expire_gives_a_successor_that_outlives_it(issue_key, integration):
    """The expiry e-mail says: rotate it before then. The successor must not die at the same moment."""
    issued = issue_key(
        kind=KeyKind.INTEGRATION,
        name="k",
        integration=integration,
        expires_at=timezone.now() + timedelta(days=3),
    )
    ApiKey.objects.filter(pk=issued.key.pk).update(
        created_at=timezone.now() - timedelta(days=87)
    )  # a 90-day key
    old = ApiKey.objects.get(pk=issued.key.pk)

    new = issuing.rotate(old)

    assert new.key.expires_at > old.expires_at
    assert abs(new.key.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)


def test_rotating_a_key_that_never_expires_gives_one_that_never_expires(integration_key):
    assert issuing.rotate(integration_key.key).key.expires_at is None


def test_rotate_keeps_grants_and_ranges(issue_key, integration):
    issued = issue_key(
        kind=KeyKind.INTEGRATION,
        name="k",
        integration=integration,
        grants=["events:read"],
        allowed_ips=["10.0.0.0/8"],
    )

    new = issuing.rotate(issued.key).key

    assert (new.kind, new.integration_id, new.grants, new.allowed_ips, new.name) == (
        "integration",
        integration.pk,
        ["events:read"],
        ["10.0.0.0/8"],
        "k",
    )


def test_a_revoked_key_cannot_be_rotated(integration_key):
    issuing.revoke(integration_key.key)

    with pytest.raises(ValidationError):
        issuing.rotate(ApiKey.objects.get(pk=integration_key.key.pk))


# --- expiry warnings and audit ------------------------------------------------------------------------


def expiring(issue_key, integration, name, days):
    return issue_key(
        kind=KeyKind.INTEGRATION,
        name=name,
        integration=integration,
        expires_at=timezone.now() + timedelta(days=days),
    ).key


def test_notify_expiring_mails_each_key_once_to_the_integrations_address(
    issue_key, integration, other_integration, mailoutbox, settings
):
    settings.API_KEY_EXPIRY_WARNING_DAYS = 7
    Integration.objects.filter(pk=integration.pk).update(notification_email="shop-team@acme.test")
    integration.refresh_from_db()
    soon = expiring(issue_key, integration, "soon", 3)
    edge = expiring(issue_key, other_integration, "edge", 6.9)  # no address of its own: the org's
    expiring(issue_key, integration, "later", 30)
    issuing.revoke(expiring(issue_key, integration, "revoked", 2))
    issuing.issue_key(kind=KeyKind.INTEGRATION, name="forever", integration=integration)

    assert expiry.notify_expiring() == 2
    assert expiry.notify_expiring() == 0

    assert sorted((m.to, m.subject) for m in mailoutbox) == sorted(
        [
            (
                ["shop-team@acme.test"],
                f"Switchyard: API key {soon.display} expires on {soon.expires_at:%Y-%m-%d}",
            ),
            (
                ["ops@globex.test"],
                f"Switchyard: API key {edge.display} expires on {edge.expires_at:%Y-%m-%d}",
            ),
        ]
    )
    assert set(ApiKey.objects.filter(expiry_notified_at__isnull=False).values_list("name", flat=True)) == {
        "soon",
        "edge",
    }


def test_notify_expiring_skips_keys_already_rotated(issue_key, integration, mailoutbox):
    key = expiring(issue_key, integration, "soon", 3)
    issuing.rotate(key)

    expiry.notify_expiring()

    assert [m.subject for m in mailoutbox if key.display in m.subject] == []


def test_record_expired_audits_each_expired_key_once(issue_key, integration, superuser):
    expired = expiring(issue_key, integration, "expired", 1)
    revoked = expiring(issue_key, integration, "revoked", 1)
    issuing.revoke(revoked)
    expiring(issue_key, integration, "valid", 10)
    global_key = issuing.issue_key(
        kind=KeyKind.GLOBAL, name="g", user=superuser, expires_at=timezone.now() + timedelta(days=1)
    ).key
    ApiKey.objects.filter(pk__in=[expired.pk, revoked.pk, global_key.pk]).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    assert expiry.record_expired() == 2
    assert expiry.record_expired() == 0

    assert [m for m in key_events(expired) if "expired" in m] == [f"Key {expired.display} expired."]
    assert not [m for m in key_events(revoked) if "expired" in m]
    assert ApiKey.objects.get(pk=global_key.pk).expiry_recorded_at is not None


def test_issuing_a_key_records_its_owner_user(org, org_admin):
    issued = issuing.issue_key(
        kind=KeyKind.ORG,
        name="k",
        organization=org,
        user=org_admin,
        created_by=org_admin,
        grants=["orders:read"],
    )

    (event,) = IntegrationEvent.objects.filter(kind=EventKind.KEY, data__prefix=issued.key.prefix)
    assert (event.organization_id, event.integration_id, event.actor) == (org.pk, None, "user:alice")


def test_an_org_key_of_a_member_authenticates_as_its_owner(org, org_admin):
    issued = issuing.issue_key(kind=KeyKind.ORG, name="k", organization=org, user=org_admin)

    key = authentication.authenticate(issued.plaintext, "127.0.0.1")

    assert (key.pk, key.user.pk, key.user.is_active, key.user.is_superuser) == (
        issued.key.pk,
        org_admin.pk,
        True,
        False,
    )


# --- what a key belongs to ----------------------------------------------------------------------------


def test_each_kind_of_key_answers_what_it_belongs_to(integration_key, org_key, global_key, integration, org):
    integration_scope = ApiKey.objects.get(pk=integration_key.key.pk).scope
    org_scope = ApiKey.objects.get(pk=org_key.key.pk).scope
    global_scope = ApiKey.objects.get(pk=global_key.key.pk).scope

    assert (integration_scope.organization, integration_scope.integration) == (org, integration)
    assert (org_scope.organization, org_scope.integration) == (org, None)
    assert (global_scope.organization, global_scope.integration) == (None, None)
    assert [s.is_global for s in (integration_scope, org_scope, global_scope)] == [False, False, True]
    assert [str(s) for s in (integration_scope, org_scope, global_scope)] == [
        integration.name,
        org.name,
        "the platform",
    ]


def test_a_keys_news_goes_to_its_integration_else_its_owner_else_its_organization(
    integration_key, org_key, global_key, integration, org, org_admin, superuser
):
    Integration.objects.filter(pk=integration.pk).update(notification_email="shop@example.com")
    org.notification_email = "ops@example.com"
    org.save(update_fields=["notification_email"])
    org_admin.email = ""
    org_admin.save(update_fields=["email"])
    superuser.email = "root@example.com"
    superuser.save(update_fields=["email"])

    def address(issued):
        return ApiKey.objects.get(pk=issued.key.pk).notify_address

    assert [address(k) for k in (integration_key, org_key, global_key)] == [
        "shop@example.com",
        "ops@example.com",
        "root@example.com",
    ]


def test_authenticating_loads_what_a_request_reads_of_the_key_in_its_one_query(integration, org_admin, org):
    issued = issuing.issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration)
    owner_key = issuing.issue_key(kind=KeyKind.ORG, name="o", organization=org, user=org_admin)
    authentication.authenticate(issued.plaintext, "127.0.0.1")  # first use writes last_used_at
    authentication.authenticate(owner_key.plaintext, "127.0.0.1")

    with CaptureQueriesContext(connection) as queries:
        key = authentication.authenticate(issued.plaintext, "127.0.0.1")
        scope = key.scope
        read = (
            scope.organization.name,
            scope.integration.name,
            scope.integration.status,
            scope.integration.last_activity_at is not None,
            scope.integration.connector.key,
            scope.integration.organization.name,
            key.grants,
        )
        owner = authentication.authenticate(owner_key.plaintext, "127.0.0.1")
        owner_read = (
            owner.user.username,
            owner.user.is_active,
            owner.owner_role,
            owner.scope.organization.name,
        )

    assert len(queries) == 2, [q["sql"] for q in queries]
    assert read[:2] == (org.name, integration.name)
    assert owner_read == (org_admin.username, True, "admin", org.name)
