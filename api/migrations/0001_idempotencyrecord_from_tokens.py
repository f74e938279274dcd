"""
IdempotencyRecord comes to the api app from tokens (only the API machinery uses it). State only: the table
stays `tokens_idempotencyrecord` with its rows, constraint and index, and tokens/0006 drops the model from
the tokens app's state.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import core.fields


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("tokens", "0005_revoke_org_keys_of_non_admins"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyRecord",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("key", models.CharField(max_length=255)),
                        (
                            "fingerprint",
                            models.CharField(
                                help_text="SHA-256 of method, path and canonical body.", max_length=64
                            ),
                        ),
                        (
                            "status_code",
                            models.PositiveSmallIntegerField(
                                blank=True, help_text="Empty while in progress.", null=True
                            ),
                        ),
                        (
                            "response_body",
                            core.fields.EncryptedJSONField(blank=True, default=None, null=True),
                        ),
                        ("response_headers", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("expires_at", models.DateTimeField()),
                        (
                            "api_key",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="tokens.apikey",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tokens_idempotencyrecord",
                        "indexes": [models.Index(fields=["expires_at"], name="idempotency_expires_idx")],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("api_key", "key"), name="idempotency_unique_key_per_api_key"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
