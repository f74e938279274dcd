"""
Secrets encrypted at rest: the connector schema's "writeOnly" settings move out of `Integration.settings`
into the encrypted `secret_settings`; `signing_secret` and `WebhookSubscription.secret` are encrypted in
place (under the first key of ENCRYPTION_KEYS). History rows that copied a secret setting lose it.

Values are read raw (cast to text: the encrypted fields would take a plaintext for ciphertext) and written
through the fields, which encrypt. A value some key already opens is left alone, so a re-run changes nothing.
Reversible: backwards, the values are decrypted and the secret settings merged back into `settings`.
"""

import json

from django.db import migrations, models
from django.db.models.functions import Cast

import core.fields
from core import crypto

CHUNK = 500


def _secret_names(schema) -> set[str]:
    # Historical models have no Connector.secret_fields: the same rule, spelled out.
    props = (schema or {}).get("properties", {}) if isinstance(schema, dict) else {}
    return {name for name, spec in props.items() if isinstance(spec, dict) and spec.get("writeOnly")}


def _raw(name):
    return Cast(name, output_field=models.TextField())


def _secrets_by_connector(apps) -> dict[int, set[str]]:
    Connector = apps.get_model("integrations", "Connector")
    return {
        pk: _secret_names(schema) for pk, schema in Connector.objects.values_list("pk", "settings_schema")
    }


def encrypt(apps, schema_editor):
    Integration = apps.get_model("integrations", "Integration")
    WebhookSubscription = apps.get_model("integrations", "WebhookSubscription")
    secrets_of = _secrets_by_connector(apps)

    rows = (
        Integration.objects.annotate(raw_signing=_raw("signing_secret"), raw_secrets=_raw("secret_settings"))
        .values("pk", "connector_id", "settings", "raw_signing", "raw_secrets")
        .order_by("pk")
    )
    for row in rows.iterator(chunk_size=CHUNK):
        updates = {}
        if row["raw_signing"] and not crypto.opens(row["raw_signing"]):
            updates["signing_secret"] = row["raw_signing"]  # the field encrypts it
        names = secrets_of.get(row["connector_id"], set())
        settings = row["settings"] if isinstance(row["settings"], dict) else {}
        moving = {k: v for k, v in settings.items() if k in names}
        if moving:
            stored = row["raw_secrets"]
            kept = json.loads(crypto.decrypt(stored, what="Integration.secret_settings")) if stored else {}
            updates["settings"] = {k: v for k, v in settings.items() if k not in names}
            updates["secret_settings"] = {**kept, **moving}
        if updates:
            Integration.objects.filter(pk=row["pk"]).update(**updates)

    subscriptions = WebhookSubscription.objects.annotate(raw=_raw("secret")).values_list("pk", "raw")
    for pk, raw in subscriptions.order_by("pk").iterator(chunk_size=CHUNK):
        if raw and not crypto.opens(raw):
            WebhookSubscription.objects.filter(pk=pk).update(secret=raw)

    # History recorded before this migration may hold copies of secret settings: scrubbed, not encrypted
    # (a history of secrets is not worth keeping, and the history tables are never decrypted).
    try:
        Historical = apps.get_model("integrations", "HistoricalIntegration")
    except LookupError:
        return
    history = Historical.objects.values_list("history_id", "connector_id", "settings").order_by("history_id")
    for history_id, connector_id, settings in history.iterator(chunk_size=CHUNK):
        names = secrets_of.get(connector_id, set())
        if isinstance(settings, dict) and names & set(settings):
            Historical.objects.filter(history_id=history_id).update(
                settings={k: v for k, v in settings.items() if k not in names}
            )


def decrypt(apps, schema_editor):
    Integration = apps.get_model("integrations", "Integration")
    WebhookSubscription = apps.get_model("integrations", "WebhookSubscription")

    def plain(raw, what):
        return crypto.decrypt(raw, what=what) if raw and crypto.opens(raw) else raw

    rows = (
        Integration.objects.annotate(raw_signing=_raw("signing_secret"), raw_secrets=_raw("secret_settings"))
        .values("pk", "settings", "raw_signing", "raw_secrets")
        .order_by("pk")
    )
    for row in rows.iterator(chunk_size=CHUNK):
        secrets = json.loads(crypto.decrypt(row["raw_secrets"])) if row["raw_secrets"] else {}
        Integration.objects.filter(pk=row["pk"]).update(
            settings={**(row["settings"] or {}), **secrets},
            secret_settings=models.Value("", output_field=models.TextField()),
            signing_secret=models.Value(
                plain(row["raw_signing"], f"Integration.signing_secret of row {row['pk']}") or "",
                output_field=models.TextField(),
            ),
        )
    subscriptions = WebhookSubscription.objects.annotate(raw=_raw("secret")).values_list("pk", "raw")
    for pk, raw in subscriptions.order_by("pk").iterator(chunk_size=CHUNK):
        WebhookSubscription.objects.filter(pk=pk).update(
            secret=models.Value(
                plain(raw, f"WebhookSubscription.secret of row {pk}") or "", output_field=models.TextField()
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0013_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="integration",
            name="secret_settings",
            field=core.fields.EncryptedJSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="integration",
            name="signing_secret",
            field=core.fields.EncryptedTextField(blank=True),
        ),
        migrations.AlterField(
            model_name="webhooksubscription",
            name="secret",
            field=core.fields.EncryptedTextField(
                help_text="The whsec_… signing secret; shown once, on creation."
            ),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
