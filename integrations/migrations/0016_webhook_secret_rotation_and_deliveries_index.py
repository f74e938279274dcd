"""
A rotated-out webhook signing secret, kept (encrypted) while it still signs beside the new one; a
subscription's deliveries indexed newest first (made before the plain foreign-key index it replaces goes).
"""

import django.db.models.deletion
from django.db import migrations, models

import core.fields


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0015_request_log_age_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhooksubscription",
            name="previous_secret",
            field=core.fields.EncryptedTextField(
                blank=True, help_text="The secret before the last rotation."
            ),
        ),
        migrations.AddField(
            model_name="webhooksubscription",
            name="previous_secret_until",
            field=models.DateTimeField(
                blank=True,
                help_text="Until when deliveries are also signed with the previous secret.",
                null=True,
            ),
        ),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(fields=["subscription", "-created_at"], name="delivery_subscription_idx"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="subscription",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="integrations.webhooksubscription",
            ),
        ),
    ]
