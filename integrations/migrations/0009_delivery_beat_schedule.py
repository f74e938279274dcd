from django.db import migrations

from core.beat import schedule

TASKS = {
    "integrations.tasks.sweep_deliveries_task": (
        "Webhooks: sweep deliveries",
        (5, "seconds"),
        "Dispatches outbox rows no message announced and wakes workers for due retries.",
    ),
    "integrations.tasks.prune_deliveries_task": (
        "Webhooks: prune old deliveries",
        (1, "days"),
        "Deletes succeeded deliveries and dispatched outbox rows past WEBHOOK_RETENTION_DAYS.",
    ),
}


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0008_webhook_deliveries"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [schedule(TASKS)]
