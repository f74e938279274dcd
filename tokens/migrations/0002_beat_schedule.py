from django.db import migrations

TASKS = [
    ("API keys: expiry audit and warnings", "tokens.tasks.key_expiry_task", 60, "minutes"),
    ("API: prune idempotency records", "tokens.tasks.prune_idempotency_records_task", 60, "minutes"),
]


def install(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in TASKS:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True}
        )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        task__in=[t[1] for t in TASKS]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("tokens", "0001_initial"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(install, remove)]
