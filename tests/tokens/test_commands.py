import json
import logging
from datetime import timedelta
from importlib import import_module
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from integrations.choices import EventKind, IntegrationStatus
from integrations.models import Connector, Integration, IntegrationEvent
from tests.fixtures.organizations import make_user
from tokens import authentication, hashing, issuing
from tokens.choices import KeyKind
from tokens.models import ApiKey

IP = "127.0.0.1"


def run(command, *args, **options):
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def last_line(out: str) -> str:
    return out.splitlines()[-1]


def issued_key(out: str) -> tuple[str, ApiKey]:
    """The plaintext on the last line (alone: nothing before or after it) and the key it authenticates as."""
    plaintext = last_line(out)
    assert hashing.KEY_PATTERN.fullmatch(plaintext), plaintext
    assert out.endswith(f"\n{plaintext}\n")
    return plaintext, authentication.authenticate(plaintext, IP)


def assert_refused(plaintext: str, code: str):
    with pytest.raises(authentication.KeyRefused) as refused:
        authentication.authenticate(plaintext, IP)
    assert refused.value.api_code == code


def assert_secret_stored_nowhere(plaintext: str):
    secret = plaintext.split("_", 2)[2]
    for key in ApiKey.objects.all():
        assert secret not in key.secret_hash and secret not in key.prefix
    for event in IntegrationEvent.objects.all():
        assert secret not in event.message
        assert secret not in json.dumps(event.data)
    if connection.vendor == "postgresql":
        # Every row of every table, as text: nothing may hold the secret, whatever a later change adds.
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names(cursor):
                cursor.execute(
                    f"SELECT count(*) FROM {connection.ops.quote_name(table)} AS t "  # noqa: S608
                    "WHERE position(%s in t::text) > 0",
                    [secret],
                )
                assert cursor.fetchone()[0] == 0, table


def assert_expires_in(key: ApiKey, days: int):
    expected = timezone.now() + timedelta(days=days)
    assert abs(key.expires_at - expected) < timedelta(minutes=1)


@pytest.fixture
def private_connector(org):
    """Acme's own connector, with the same key as a public one and grants of its own."""
    return Connector.objects.create(
        organization=org,
        key="custom-channel",
        name="Acme channel",
        type="channel",
        recommended_grants=["orders:read"],
    )


# --- register_integration ---------------------------------------------------------------------------------


def test_register_integration_creates_the_integration_and_its_first_key(org, channel_connector):
    out = run("register_integration", org="acme", connector="custom-channel", name="Shop")

    integration = Integration.objects.get(organization=org, name="Shop")
    assert integration.connector == channel_connector
    _, key = issued_key(out)
    assert (key.kind, key.integration, key.organization) == (KeyKind.INTEGRATION, integration, org)
    assert key.expires_at is None
    assert f"Registered integration {integration.pk} 'Shop' in acme" in out
    assert f": {integration.status}." in out
    assert key.display in out
    assert integration.events.get(kind=EventKind.CREATED).actor == "command"


def test_register_integration_defaults_to_the_connectors_recommended_grants(org, tpl_connector):
    out = run("register_integration", org="acme", connector="custom-3pl", name="Warehouse")

    _, key = issued_key(out)
    assert tpl_connector.recommended_grants
    assert sorted(key.grants) == sorted(tpl_connector.recommended_grants)
    assert ", ".join(key.grants) in out


def test_register_integration_with_grants_and_expiry(org, channel_connector):
    out = run(
        "register_integration",
        "--org=acme",
        "--connector=custom-channel",
        "--name=Shop",
        "--grants=orders:write, orders:read,orders:read",
        "--expires-in-days=30",
    )

    _, key = issued_key(out)
    assert key.grants == ["orders:read", "orders:write"]
    assert_expires_in(key, 30)


def test_register_integration_prefers_the_orgs_private_connector(org, private_connector):
    out = run("register_integration", org="acme", connector="custom-channel", name="Shop")

    integration = Integration.objects.get(organization=org, name="Shop")
    assert integration.connector == private_connector
    _, key = issued_key(out)
    assert key.grants == ["orders:read"]


def test_register_integration_cannot_use_another_orgs_private_connector(org, other_org):
    Connector.objects.create(organization=other_org, key="globex-store", name="Globex store", type="channel")

    with pytest.raises(CommandError, match="Unknown connector 'globex-store'"):
        run("register_integration", org="acme", connector="globex-store", name="Shop")
    assert not Integration.objects.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"org": "nope"}, "Unknown organization 'nope'"),
        ({"connector": "no-such-connector"}, "Unknown connector 'no-such-connector'"),
        ({"grants": "orders:read,orders:delete,bogus"}, "Unknown grant\\(s\\): bogus, orders:delete"),
        ({"grants": " , "}, "--grants names no grant"),
        ({"expires_in_days": 0}, "--expires-in-days must be at least 1"),
        ({"expires_in_days": -5}, "--expires-in-days must be at least 1"),
        ({"name": "   "}, "--name must not be blank"),
        ({"name": "x" * 121}, "longer than 120"),
    ],
)
def test_register_integration_refuses_bad_input_and_creates_nothing(org, channel_connector, options, message):
    given = {"org": "acme", "connector": "custom-channel", "name": "Shop", **options}

    with pytest.raises(CommandError, match=message):
        run("register_integration", **given)
    assert not Integration.objects.exists()
    assert not ApiKey.objects.exists()
    assert not IntegrationEvent.objects.exists()


def test_register_integration_refuses_a_duplicate_name(integration):
    with pytest.raises(CommandError, match="acme already has an integration named 'Acme web shop'"):
        run("register_integration", org="acme", connector="custom-channel", name="Acme web shop")
    assert Integration.objects.count() == 1
    assert not ApiKey.objects.exists()


def test_register_integration_allows_the_same_name_in_another_org(other_integration, org):
    out = run("register_integration", org="acme", connector="custom-channel", name="Globex web shop")

    _, key = issued_key(out)
    assert key.organization == org


def test_register_integration_requires_its_arguments(org):
    with pytest.raises(CommandError, match="--name"):
        run("register_integration", org="acme", connector="custom-channel")


# --- issue_key ----------------------------------------------------------------------------------------


def test_issue_key_for_an_integration_defaults_to_the_connectors_grants(org, integration, channel_connector):
    out = run("issue_key", org="acme", integration=integration.pk)

    _, key = issued_key(out)
    assert (key.kind, key.integration, key.organization) == (KeyKind.INTEGRATION, integration, org)
    assert sorted(key.grants) == sorted(channel_connector.recommended_grants)
    assert key.name == "Acme web shop key"
    assert f"Issued a key for integration {integration.pk} 'Acme web shop' of acme." in out


def test_issue_key_for_an_integration_with_grants_expiry_and_name(integration):
    out = run(
        "issue_key",
        "--org=acme",
        f"--integration={integration.pk}",
        "--grants=events:read",
        "--expires-in-days=7",
        "--name=Rotation spare",
    )

    _, key = issued_key(out)
    assert (key.grants, key.name) == (["events:read"], "Rotation spare")
    assert_expires_in(key, 7)


def test_issue_key_for_a_disabled_integration_says_the_key_is_refused_for_now(
    org, channel_connector, make_integration
):
    disabled = make_integration(org, channel_connector, "Old shop", status=IntegrationStatus.DISABLED)

    out = run("issue_key", org="acme", integration=disabled.pk)

    assert "the integration is disabled" in out
    assert_refused(last_line(out), "integration_disabled")


def test_issue_key_refuses_an_integration_of_another_org(org, other_integration):
    with pytest.raises(CommandError) as refused:
        run("issue_key", org="acme", integration=other_integration.pk)

    # The same answer as for an id that does not exist: nothing about the other organization.
    assert str(refused.value) == f"No integration {other_integration.pk} in acme."
    assert "Globex" not in str(refused.value) and "globex" not in str(refused.value)
    assert not ApiKey.objects.exists()


def test_issue_key_refuses_an_unknown_integration(org):
    with pytest.raises(CommandError, match="No integration 999999 in acme"):
        run("issue_key", org="acme", integration=999999)


@pytest.mark.parametrize("identifier", ["alice", "ALICE@example.test"])
def test_issue_key_for_a_user_makes_an_org_key(org, org_admin, identifier):
    out = run("issue_key", org="acme", user=identifier, grants="orders:read,products:read")

    _, key = issued_key(out)
    assert (key.kind, key.organization, key.user, key.integration) == (KeyKind.ORG, org, org_admin, None)
    assert key.grants == ["orders:read", "products:read"]
    assert "Issued a key for alice in acme." in out


def test_issue_key_for_a_user_needs_grants(org_admin):
    with pytest.raises(CommandError, match="--grants is required"):
        run("issue_key", org="acme", user="alice")
    assert not ApiKey.objects.exists()


def test_issue_key_for_a_user_outside_the_org_fails(org, other_admin):
    with pytest.raises(CommandError, match="not a member of Acme Outfitters"):
        run("issue_key", org="acme", user="oscar", grants="orders:read")
    assert not ApiKey.objects.exists()


def test_issue_key_for_an_unknown_user_fails(org):
    with pytest.raises(CommandError, match=r"No user with username or e-mail 'nobody@example\.test'"):
        run("issue_key", org="acme", user="nobody@example.test", grants="orders:read")


def test_issue_key_for_an_inactive_user_fails(org, org_admin):
    org_admin.is_active = False
    org_admin.save()

    with pytest.raises(CommandError, match="alice is inactive"):
        run("issue_key", org="acme", user="alice", grants="orders:read")


def test_issue_key_for_an_ambiguous_email_fails(org, org_admin):
    namesake = make_user("alice2")
    namesake.email = "alice@example.test"
    namesake.save()

    with pytest.raises(CommandError, match="More than one user"):
        run("issue_key", org="acme", user="alice@example.test", grants="orders:read")


@pytest.mark.parametrize("with_org", [False, True])
def test_issue_key_global(org, with_org):
    options = {"org": "acme"} if with_org else {}

    out = run("issue_key", "--global", grants="events:read", **options)

    _, key = issued_key(out)
    assert (key.kind, key.organization, key.integration, key.user) == (KeyKind.GLOBAL, None, None, None)
    assert key.grants == ["events:read"]
    assert "every organization" in out
    assert ("belongs to no organization" in out) is with_org


def test_issue_key_global_needs_grants(db):
    with pytest.raises(CommandError, match="--grants is required"):
        run("issue_key", "--global")


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ((), {"org": "acme"}, "one of the arguments --integration --user --global is required"),
        (("--global",), {"org": "acme", "user": "alice", "grants": "events:read"}, "not allowed with"),
        ((), {"user": "alice", "grants": "events:read"}, "--org is required"),
        ((), {"org": "nope", "user": "alice", "grants": "events:read"}, "Unknown organization 'nope'"),
        (("--global",), {"org": "nope", "grants": "events:read"}, "Unknown organization 'nope'"),
        (
            (),
            {"org": "acme", "user": "alice", "grants": "orders:read,nope:read"},
            "Unknown grant\\(s\\): nope:read",
        ),
        ((), {"org": "acme", "user": "alice", "grants": "orders:read", "expires_in_days": 0}, "at least 1"),
        ((), {"org": "acme", "user": "alice", "grants": "orders:read", "name": " "}, "must not be blank"),
    ],
)
def test_issue_key_refuses_bad_input(org, org_admin, args, options, message):
    with pytest.raises(CommandError, match=message):
        run("issue_key", *args, **options)
    assert not ApiKey.objects.exists()


def test_issue_key_integration_refuses_bad_grants_and_expiry(integration):
    with pytest.raises(CommandError, match="Unknown grant\\(s\\): orders:delete"):
        run("issue_key", org="acme", integration=integration.pk, grants="orders:delete")
    with pytest.raises(CommandError, match="at least 1"):
        run("issue_key", org="acme", integration=integration.pk, expires_in_days=-1)
    assert not ApiKey.objects.exists()


# --- the plaintext is shown once and kept nowhere ------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("register_integration", {"org": "acme", "connector": "custom-channel", "name": "Shop"}),
        ("issue_key", {"org": "acme", "integration": "INTEGRATION", "expires_in_days": 3}),
        ("issue_key", {"org": "acme", "user": "alice", "grants": "orders:read"}),
        ("issue_key", {"global_key": True, "grants": "events:read"}),
    ],
)
def test_the_plaintext_is_neither_stored_nor_logged(caplog, integration, org_admin, command, options):
    caplog.set_level(logging.DEBUG)
    if options.get("integration") == "INTEGRATION":
        options = {**options, "integration": integration.pk}

    out = run(command, **options)

    plaintext, key = issued_key(out)
    assert out.count(plaintext) == 1
    assert_secret_stored_nowhere(plaintext)
    secret = plaintext.split("_", 2)[2]
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.args)
    assert key.secret_hash == hashing.hash_secret(secret, key.pepper_id)


# --- revoke_keys --------------------------------------------------------------------------------------


@pytest.fixture
def keys(
    org, other_org, integration, other_integration, org_key, global_key, channel_connector, make_integration
):
    """Keys of two integrations of acme, an acme org key, a globex integration key and a global key."""
    second = make_integration(org, channel_connector, "Acme marketplace")
    issue = issuing.issue_key
    return {
        "shop": [issue(kind=KeyKind.INTEGRATION, name=f"Shop {n}", integration=integration) for n in (1, 2)],
        "marketplace": [issue(kind=KeyKind.INTEGRATION, name="Marketplace", integration=second)],
        "org": [org_key],
        "globex": [issue(kind=KeyKind.INTEGRATION, name="Globex", integration=other_integration)],
        "global": [global_key],
    }


def revoked(keys) -> set[str]:
    """The groups of `keys` whose keys are all revoked; a group is never half revoked."""
    result = set()
    for group, issued in keys.items():
        states = {ApiKey.objects.get(pk=i.key.pk).revoked_at is not None for i in issued}
        assert len(states) == 1, group
        if states == {True}:
            result.add(group)
    return result


def test_revoke_keys_by_integration(keys, integration):
    out = run("revoke_keys", integration=integration.pk, reason="leaked in a support ticket")

    assert out == "Revoked 2 keys.\n"
    assert revoked(keys) == {"shop"}
    for issued in keys["shop"]:
        assert_refused(issued.plaintext, "key_revoked")
        key = ApiKey.objects.get(pk=issued.key.pk)
        assert (key.revoked_by, key.revoke_reason) == ("command", "leaked in a support ticket")
    authentication.authenticate(keys["marketplace"][0].plaintext, IP)
    authentication.authenticate(keys["globex"][0].plaintext, IP)
    event = integration.events.filter(kind=EventKind.KEY, message__contains="revoked").first()
    assert event.actor == "command"


def test_revoke_keys_by_org_leaves_other_orgs_and_global_keys(keys, org):
    out = run("revoke_keys", org="acme")

    assert out == "Revoked 4 keys.\n"
    assert revoked(keys) == {"shop", "marketplace", "org"}
    assert_refused(keys["org"][0].plaintext, "key_revoked")
    assert_refused(keys["marketplace"][0].plaintext, "key_revoked")
    authentication.authenticate(keys["globex"][0].plaintext, IP)
    authentication.authenticate(keys["global"][0].plaintext, IP)


@pytest.mark.parametrize("form", ["{prefix}", "sy_{prefix}", "sy_{prefix}_…", "{plaintext}", "SY_{upper}"])
def test_revoke_keys_by_prefix_revokes_that_key_only(keys, form):
    target = keys["shop"][0]
    given = form.format(prefix=target.key.prefix, plaintext=target.plaintext, upper=target.key.prefix.upper())

    out = run("revoke_keys", prefix=given)

    assert out == "Revoked 1 key.\n"
    assert_refused(target.plaintext, "key_revoked")
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 1
    authentication.authenticate(keys["shop"][1].plaintext, IP)


def test_revoke_keys_of_a_global_key_by_prefix(keys):
    out = run("revoke_keys", prefix=keys["global"][0].key.prefix)

    assert out == "Revoked 1 key.\n"
    assert revoked(keys) == {"global"}
    assert_refused(keys["global"][0].plaintext, "key_revoked")


def test_revoke_keys_counts_only_keys_not_yet_revoked(keys, integration):
    issuing.revoke(keys["shop"][0].key, reason="earlier")

    assert run("revoke_keys", integration=integration.pk) == "Revoked 1 key.\n"
    assert run("revoke_keys", integration=integration.pk) == "Revoked 0 keys.\n"
    assert run("revoke_keys", prefix=keys["shop"][0].key.prefix) == "Revoked 0 keys.\n"
    # The first revocation's reason stands.
    assert ApiKey.objects.get(pk=keys["shop"][0].key.pk).revoke_reason == "earlier"


def test_revoke_keys_of_an_integration_without_keys(org, channel_connector, make_integration):
    empty = make_integration(org, channel_connector, "No keys yet")

    assert run("revoke_keys", integration=empty.pk) == "Revoked 0 keys.\n"


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ((), {"integration": 999999}, "No integration with id 999999"),
        ((), {"org": "nope"}, "Unknown organization 'nope'"),
        ((), {"prefix": "zzzz9999"}, "No key with prefix 'zzzz9999'"),
        ((), {"prefix": "sy_short"}, "--prefix is not a key prefix"),
        ((), {}, "one of the arguments --integration --org --prefix is required"),
        (("--org=acme",), {"prefix": "zzzz9999"}, "not allowed with"),
    ],
)
def test_revoke_keys_refuses_bad_input_and_revokes_nothing(keys, args, options, message):
    with pytest.raises(CommandError, match=message):
        run("revoke_keys", *args, **options)
    assert revoked(keys) == set()


def test_revoke_keys_does_not_echo_a_malformed_key(db):
    mangled = "sy_abc_" + "S3cret" * 8

    with pytest.raises(CommandError) as refused:
        run("revoke_keys", prefix=mangled)
    assert "S3cret" not in str(refused.value)


# --- from the shell: errors go to stderr and the exit status is non-zero -------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["register_integration", "--org=nope", "--connector=custom-channel", "--name=Shop"],
            "Unknown organization",
        ),
        (["issue_key", "--org=acme", "--user=nobody", "--grants=orders:read"], "No user with"),
        (["revoke_keys", "--prefix=zzzz9999"], "No key with prefix"),
    ],
)
def test_bad_input_exits_non_zero_from_the_command_line(org, argv, message):
    out, err = StringIO(), StringIO()
    command = import_module(f"tokens.management.commands.{argv[0]}").Command(stdout=out, stderr=err)

    with pytest.raises(SystemExit) as exited:
        command.run_from_argv(["manage.py", *argv])

    assert exited.value.code == 1
    assert message in err.getvalue()
    assert out.getvalue() == ""
