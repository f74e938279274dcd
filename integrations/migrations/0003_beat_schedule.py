from django.db import migrations

TASK = "integrations.tasks.expire_stale_connecting_task"


def install(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.update_or_create(
        name="Integrations: expire stale connecting",
        defaults={
            "task": TASK,
            "interval": every,
            "enabled": True,
            "description": "Moves integrations stuck in Connecting past INTEGRATION_CONNECT_WINDOW to Error.",
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0002_builtin_connectors"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(install, remove)]
