from django.db import migrations

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


def install(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task, (name, (every, period), description) in TASKS.items():
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "enabled": True, "description": description},
        )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task__in=list(TASKS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0008_webhook_deliveries"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(install, remove)]
