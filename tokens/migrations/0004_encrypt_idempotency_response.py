"""
`IdempotencyRecord.response_body` encrypted at rest: a replayed response may hold a secret shown once (the
whsec_… of a new webhook subscription), and was kept as plain jsonb for IDEMPOTENCY_TTL_HOURS.

The existing rows are encrypted, not deleted: they are only a 24 h replay cache, but deleting them would let
a client's retry within that window run its POST a second time (a second subscription, a second order).
The column becomes text (PostgreSQL casts the jsonb to its text form), then each value is written back
through the field, which encrypts it; a value some key already opens is left alone, so a re-run changes
nothing. Backwards, the values are decrypted in place and the column cast back to jsonb.

Self-contained (core.crypto aside, as in integrations/0014_encrypt_secrets): no app code that may change.
"""

import json

from django.db import migrations, models
from django.db.models.functions import Cast

import core.fields
from core import crypto

CHUNK = 500


def _rows(IdempotencyRecord):
    raw = IdempotencyRecord.objects.annotate(raw=Cast("response_body", output_field=models.TextField()))
    return raw.exclude(raw="").filter(raw__isnull=False).values_list("pk", "raw").order_by("pk")


def encrypt(apps, schema_editor):
    IdempotencyRecord = apps.get_model("tokens", "IdempotencyRecord")
    for pk, raw in _rows(IdempotencyRecord).iterator(chunk_size=CHUNK):
        if not crypto.opens(raw):
            IdempotencyRecord.objects.filter(pk=pk).update(
                response_body=json.loads(raw)
            )  # the field encrypts


def decrypt(apps, schema_editor):
    IdempotencyRecord = apps.get_model("tokens", "IdempotencyRecord")
    # "" is how the field stores {}: jsonb needs it spelled out before the column is cast back.
    IdempotencyRecord.objects.annotate(raw=Cast("response_body", output_field=models.TextField())).filter(
        raw=""
    ).update(response_body=models.Value("{}", output_field=models.TextField()))
    for pk, raw in _rows(IdempotencyRecord).iterator(chunk_size=CHUNK):
        if crypto.opens(raw):
            plain = crypto.decrypt(raw, what=f"IdempotencyRecord.response_body of row {pk}")
            IdempotencyRecord.objects.filter(pk=pk).update(
                response_body=models.Value(plain, output_field=models.TextField())
            )


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0003_history"),
    ]

    operations = [
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="response_body",
            field=core.fields.EncryptedJSONField(blank=True, default=None, null=True),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
