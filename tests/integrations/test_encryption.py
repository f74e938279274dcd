"""
Secrets at rest: the writeOnly settings, the manifest signing secret and the webhook secrets are stored
encrypted under ENCRYPTION_KEYS, `settings` never holds a secret, keys rotate, and a value no key opens
fails loudly and alone.
"""

import json

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from console import transfer
from core import crypto, signing
from integrations import connector_settings, manifest
from integrations.choices import DeliveryStatus
from integrations.models import Integration, WebhookDelivery, WebhookSubscription
from integrations.webhooks import delivery, outbox, subscriptions
from tests.config.test_settings import run
from tests.fixtures.integrations import GOOD_SETTINGS, STRICT_SCHEMA
from tokens import issuing as key_services
from tokens.choices import KeyKind

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
TOKEN = GOOD_SETTINGS["api_token"]
HOOKS = "/api/v1/webhooks"


def raw(table, pk, *columns):
    """The stored values, as PostgreSQL holds them (no field decodes them)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE id = %s", [pk])  # noqa: S608 - test constants
        return cursor.fetchone()


@pytest.fixture
def shop_key(integration):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION,
        name="hooks",
        integration=integration,
        grants=["webhooks:read", "webhooks:write", "orders:read"],
    )


@pytest.fixture
def strict(org, strict_connector, make_integration):
    return make_integration(org, strict_connector, "Strict", settings=GOOD_SETTINGS)


def secrets_of(integration, subscription):
    integration = Integration.objects.get(pk=integration.pk)
    return (
        connector_settings.full_settings(integration)["api_token"],
        integration.signing_secret,
        WebhookSubscription.objects.get(pk=subscription.pk).secret,
    )


def make_secrets(strict, integration):
    """A secret setting, a signing secret and a webhook secret, as the hub makes them."""
    signing_secret = manifest.signing_secret(strict)
    subscription = WebhookSubscription.objects.create(
        integration=integration, url="https://hooks.example.test/in", event_types=["order.created"],
        secret=signing.new_secret(),
    )  # fmt: skip
    return signing_secret, subscription


# --- at rest -------------------------------------------------------------------------------------------------


def test_no_table_holds_a_plaintext_secret(strict, integration, api_client, shop_key):
    signing_secret = manifest.signing_secret(strict)
    created = api_client(shop_key).post(
        HOOKS, {"url": "https://93.184.216.34/hooks", "events": ["order.created"]}, format="json"
    )
    hook_secret = created.json()["secret"]  # the API shows it, this once

    settings, secret_settings, stored_signing = raw(
        "integrations_integration", strict.pk, "settings::text", "secret_settings", "signing_secret"
    )
    assert json.loads(settings) == {k: v for k, v in GOOD_SETTINGS.items() if k != "api_token"}
    assert TOKEN not in secret_settings and "api_token" not in secret_settings
    assert signing_secret not in stored_signing and not stored_signing.startswith("whsec_")
    (stored_hook,) = raw("integrations_webhooksubscription", created.json()["id"], "secret")
    assert hook_secret not in stored_hook and not stored_hook.startswith("whsec_")
    with connection.cursor() as cursor:  # nor did the history copy one
        cursor.execute("SELECT settings::text FROM integrations_historicalintegration")
        history = [row[0] for row in cursor.fetchall()]
    assert history and not any(TOKEN in row or "api_token" in row for row in history)
    # and the hub reads them back
    assert connector_settings.full_settings(Integration.objects.get(pk=strict.pk)) == GOOD_SETTINGS
    assert Integration.objects.get(pk=strict.pk).signing_secret == signing_secret
    assert WebhookSubscription.objects.get(pk=created.json()["id"]).secret == hook_secret


OUR_APPS = ("organizations", "integrations", "tokens", "automations", "orders", "inventory", "api", "console")


def test_no_column_of_ours_holds_a_plaintext_secret(strict, integration, api_client, shop_key):
    """Every text, varchar and json(b) column of every table of our apps, history tables included."""
    signing_secret = manifest.signing_secret(strict)
    created = api_client(shop_key).post(
        HOOKS,
        {"url": "https://93.184.216.34/hooks", "events": ["order.created"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="hook-1",  # the response, secret included, is kept for replay
    )
    assert created.status_code == 201, created.content
    hook_secret = created.json()["secret"]
    secrets = [TOKEN, signing_secret, hook_secret, hook_secret.removeprefix("whsec_")]

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'json', 'jsonb') AND split_part(table_name, '_', 1) "
            "= ANY(%s) ORDER BY 1, 2",
            [list(OUR_APPS)],
        )
        columns = cursor.fetchall()
        assert {t for t, _ in columns} >= {
            "tokens_idempotencyrecord", "integrations_historicalintegration", "integrations_integration"
        }  # fmt: skip
        found = []
        for table, column in columns:
            for secret in secrets:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, %s) > 0',  # noqa: S608 - names from the catalog
                    [secret],
                )
                if cursor.fetchone()[0]:
                    found.append(f"{table}.{column}")
    assert found == []
    # and the replay still answers the secret, read back
    again = api_client(shop_key).post(
        HOOKS,
        {"url": "https://93.184.216.34/hooks", "events": ["order.created"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="hook-1",
    )
    assert again["Idempotent-Replayed"] == "true" and again.json() == created.json()


def test_public_and_exported_settings_leave_the_secret_out(strict):
    assert connector_settings.public_settings(strict) == {
        k: v for k, v in GOOD_SETTINGS.items() if k != "api_token"
    }
    assert TOKEN not in json.dumps(transfer.export_configuration(strict))


def test_a_secret_written_straight_into_settings_is_moved_on_save(strict):
    # e.g. a shell or a fixture bypassing the services: the model still keeps the secret out of `settings`
    strict.settings = {**strict.settings, "api_token": "tok-from-the-shell"}
    strict.save(update_fields=["settings"])

    (settings,) = raw("integrations_integration", strict.pk, "settings::text")
    assert "tok-from-the-shell" not in settings
    assert (
        connector_settings.full_settings(Integration.objects.get(pk=strict.pk))["api_token"]
        == "tok-from-the-shell"
    )


def test_same_secret_encrypts_differently_and_only_empty_lookups_are_allowed(strict, integration):
    secret, subscription = make_secrets(strict, integration)
    WebhookSubscription.objects.filter(pk=subscription.pk).update(secret=secret)
    (first,) = raw("integrations_integration", strict.pk, "signing_secret")
    (second,) = raw("integrations_webhooksubscription", subscription.pk, "secret")

    assert first != second  # a fresh IV per value: equal secrets are not visible as equal
    assert Integration.objects.filter(pk=strict.pk, signing_secret="").count() == 0
    with pytest.raises(TypeError, match="encrypted"):
        list(Integration.objects.filter(signing_secret=secret))
    with pytest.raises(FieldError):
        list(Integration.objects.filter(signing_secret__startswith="whsec_"))


# --- keys ----------------------------------------------------------------------------------------------------


def test_rotation_moves_every_value_to_the_first_key(settings, strict, integration):
    settings.ENCRYPTION_KEYS = [KEY_A]
    strict.settings = {**GOOD_SETTINGS, "api_token": "tok-under-key-a"}
    strict.save()
    signing_secret, subscription = make_secrets(strict, integration)
    expected = ("tok-under-key-a", signing_secret, subscription.secret)

    # given B put first, A kept
    settings.ENCRYPTION_KEYS = [KEY_B, KEY_A]
    with pytest.raises(CommandError, match="3 value"):
        call_command("rotate_encryption_keys", "--check", stdout=(out := _Out()))
    assert "integrations.Integration.signing_secret: 1 value(s), 1 not under the first key" in out.text

    call_command("rotate_encryption_keys", stdout=(out := _Out()))
    assert "integrations.Integration.secret_settings: 1 re-encrypted, 0 already" in out.text
    assert "integrations.WebhookSubscription.secret: 1 re-encrypted, 0 already" in out.text
    assert "api.IdempotencyRecord.response_body: " in out.text  # found, not listed

    # then B alone opens them all, --check is clean, and a second run changes nothing
    settings.ENCRYPTION_KEYS = [KEY_B]
    assert secrets_of(strict, subscription) == expected
    call_command("rotate_encryption_keys", "--check", stdout=(out := _Out()))
    assert "the older keys can be removed" in out.text
    before = raw("integrations_integration", strict.pk, "secret_settings", "signing_secret")
    call_command("rotate_encryption_keys", stdout=(out := _Out()))
    assert "integrations.Integration.signing_secret: 0 re-encrypted, 1 already" in out.text
    assert raw("integrations_integration", strict.pk, "secret_settings", "signing_secret") == before


def test_a_save_racing_the_rotation_does_not_put_an_old_key_value_back(settings, strict):
    settings.ENCRYPTION_KEYS = [KEY_A]
    strict.save()  # its secret settings, made under the default key, now under A
    manifest.signing_secret(strict)
    loaded = Integration.objects.get(pk=strict.pk)  # ciphertexts under A, not yet read
    settings.ENCRYPTION_KEYS = [KEY_B, KEY_A]
    call_command("rotate_encryption_keys", stdout=_Out())

    loaded.name = "Renamed"
    loaded.save()  # writes back the secrets it never read

    settings.ENCRYPTION_KEYS = [KEY_B]
    call_command("rotate_encryption_keys", "--check", stdout=_Out())  # raises if any needs A


def test_a_value_no_key_opens_is_a_clear_error_where_it_is_used(settings, strict, integration):
    settings.ENCRYPTION_KEYS = [KEY_A]
    make_secrets(strict, integration)
    settings.ENCRYPTION_KEYS = [KEY_B]  # A removed before rotating

    loaded = Integration.objects.get(pk=strict.pk)  # loading the row works (admin lists, sweeps)
    assert loaded.name == "Strict"
    stored = raw("integrations_integration", strict.pk, "secret_settings", "signing_secret")
    loaded.notification_email = "ops@acme.test"
    loaded.save()  # so does saving what it does not read: the ciphertexts go back as they were
    assert raw("integrations_integration", strict.pk, "secret_settings", "signing_secret") == stored
    with pytest.raises(crypto.DecryptionError, match=rf"Integration.signing_secret of row {strict.pk}.*"):
        loaded.signing_secret  # noqa: B018 - the read is the test
    with pytest.raises(crypto.DecryptionError, match="ENCRYPTION_KEYS"):
        connector_settings.full_settings(loaded)
    with pytest.raises(CommandError, match=rf"no key in ENCRYPTION_KEYS opens: .*row {strict.pk}"):
        call_command("rotate_encryption_keys", stdout=_Out())
    with pytest.raises(CommandError, match="no key in ENCRYPTION_KEYS opens"):
        call_command("rotate_encryption_keys", "--check", stdout=_Out())


def test_a_webhook_secret_no_key_opens_fails_its_delivery_alone(
    settings, shop_key, receiver, ingest, order_body, products
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    integration = shop_key.key.integration
    good, good_secret = subscriptions.subscribe(
        integration, receiver.url + "/", ["order.created"], shop_key.key
    )
    bad, _ = subscriptions.subscribe(integration, receiver.url + "/bad", ["order.created"], shop_key.key)
    lost_key = Fernet(Fernet.generate_key())
    WebhookSubscription.objects.filter(pk=bad.pk).update(
        secret=models.Value(lost_key.encrypt(b"whsec_x").decode(), output_field=models.TextField())
    )
    ingest(order_body)

    while outbox.dispatch_outbox()[0]:
        pass
    delivery.deliver_due()

    statuses = dict(WebhookDelivery.objects.values_list("subscription_id", "status"))
    assert statuses == {good.pk: DeliveryStatus.SUCCEEDED, bad.pk: DeliveryStatus.FAILED}
    assert (
        "Cannot decrypt WebhookSubscription.secret"
        in WebhookDelivery.objects.get(subscription=bad).last_error
    )
    [request] = receiver.requests
    Webhook(good_secret).verify(request.body, request.headers)


def test_malformed_keys_are_refused_without_echoing_them():
    with pytest.raises(ImproperlyConfigured, match="key 2 of 2 is not a Fernet key") as bad:
        crypto.encryption_keys([KEY_A, "c2hvcnQ="], "secret")
    assert "c2hvcnQ=" not in str(bad.value)
    with pytest.raises(ImproperlyConfigured, match="not a Fernet key"):
        crypto.encryption_keys(["not base64 at all!"], "secret")
    with pytest.raises(ImproperlyConfigured, match="twice"):
        crypto.encryption_keys([KEY_A, KEY_A], "secret")


def test_unset_keys_derive_one_from_the_secret_key():
    assert crypto.encryption_keys([], "one") == [crypto.derived_key("one")]
    assert crypto.derived_key("one") != crypto.derived_key("two")
    Fernet(crypto.derived_key("one"))  # a usable key
    assert crypto.encryption_keys([f" {KEY_A}", "", KEY_B], "one") == [KEY_A, KEY_B]


def test_a_malformed_key_in_the_environment_stops_startup(tmp_path):
    result = run(
        "import django; django.setup()",
        {"DJANGO_SETTINGS_MODULE": "config.settings", "VAR_DIR": str(tmp_path), "ENCRYPTION_KEYS": "nope"},
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured: ENCRYPTION_KEYS: key 1 of 1 is not a Fernet key" in result.stderr


def test_generate_key_prints_a_usable_key():
    call_command("rotate_encryption_keys", "--generate-key", stdout=(out := _Out()))
    assert crypto.encryption_keys([out.text.strip()], "x") == [out.text.strip()]


# --- the data migration --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_encrypts_and_moves_existing_secrets_and_back():
    before, after = [("integrations", "0013_history")], [("integrations", "0014_encrypt_secrets")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        org = old.get_model("organizations", "Organization").objects.create(name="Old", slug="old")
        connector = old.get_model("integrations", "Connector").objects.create(
            key="old-strict", name="Old strict", type="channel", settings_schema=STRICT_SCHEMA
        )
        row = old.get_model("integrations", "Integration").objects.create(
            organization=org, connector=connector, name="Old", settings=GOOD_SETTINGS,
            signing_secret="whsec_b2xkLXNpZ25pbmc=",
        )  # fmt: skip
        hook = old.get_model("integrations", "WebhookSubscription").objects.create(
            integration=row, url="https://hooks.example.test/in", event_types=["order.created"],
            secret="whsec_b2xkLWhvb2s=",
        )  # fmt: skip
        old.get_model("integrations", "HistoricalIntegration").objects.create(
            id=row.pk, organization_id=org.pk, connector_id=connector.pk, name="Old", settings=GOOD_SETTINGS,
            created_at=timezone.now(), history_date=timezone.now(), history_type="+",
        )  # fmt: skip

        executor = MigrationExecutor(connection)
        executor.migrate(after)

        settings, secret_settings, stored_signing = raw(
            "integrations_integration", row.pk, "settings::text", "secret_settings", "signing_secret"
        )
        assert "api_token" not in json.loads(settings) and TOKEN not in secret_settings
        assert "whsec_" not in stored_signing
        assert "whsec_" not in raw("integrations_webhooksubscription", hook.pk, "secret")[0]
        with connection.cursor() as cursor:
            cursor.execute("SELECT settings::text FROM integrations_historicalintegration")
            assert all(TOKEN not in text for (text,) in cursor.fetchall())
        migrated = Integration.objects.get(pk=row.pk)
        assert connector_settings.full_settings(migrated) == GOOD_SETTINGS
        assert migrated.signing_secret == "whsec_b2xkLXNpZ25pbmc="
        # only(): the model has columns later migrations add (the rotation's previous secret)
        assert WebhookSubscription.objects.only("secret").get(pk=hook.pk).secret == "whsec_b2xkLWhvb2s="

        # backwards: plaintext again, the secret back in settings
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        assert raw("integrations_integration", row.pk, "signing_secret") == ("whsec_b2xkLXNpZ25pbmc=",)
        assert json.loads(raw("integrations_integration", row.pk, "settings::text")[0]) == GOOD_SETTINGS
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_encrypts_stored_idempotent_responses_and_back(integration):
    from api.models import IdempotencyRecord

    before, after = [("tokens", "0003_history")], [("tokens", "0004_encrypt_idempotency_response")]
    key = key_services.issue_key(kind=KeyKind.INTEGRATION, name="old", integration=integration, grants=[])
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        Old = executor.loader.project_state(before).apps.get_model("tokens", "IdempotencyRecord")
        bodies = [{"id": "7", "secret": "whsec_b2xkLWhvb2s="}, {}, None, [1, "two"]]
        rows = [
            Old.objects.create(
                api_key_id=key.key.pk, key=f"k{i}", fingerprint="f", status_code=201, response_body=body,
                expires_at=timezone.now(),
            ).pk
            for i, body in enumerate(bodies)
        ]  # fmt: skip

        executor = MigrationExecutor(connection)
        executor.migrate(after)

        assert "whsec_" not in raw("tokens_idempotencyrecord", rows[0], "response_body")[0]
        # only(): the model's later columns (owner, api 0003) are not there yet at this migration
        assert [
            IdempotencyRecord.objects.only("response_body").get(pk=pk).response_body for pk in rows
        ] == bodies

        executor = MigrationExecutor(connection)
        executor.migrate(before)
        assert [
            json.loads(raw("tokens_idempotencyrecord", pk, "response_body::text")[0] or "null") for pk in rows
        ] == bodies
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
