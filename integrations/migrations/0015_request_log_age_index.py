"""The request log's prune (REQUEST_LOG_RETENTION_DAYS) finds API-request events by age: a partial index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0014_encrypt_secrets"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="integrationevent",
            index=models.Index(
                condition=models.Q(("kind", "api_request")),
                fields=["created_at"],
                name="event_api_request_age_idx",
            ),
        ),
    ]
