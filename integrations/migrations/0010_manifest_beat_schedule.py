from django.db import migrations

from core.beat import schedule

TASKS = {
    "integrations.tasks.check_manifest_health_task": (
        "Manifest: health checks",
        (5, "minutes"),
        "Calls the health endpoint of every connected or connecting manifest integration.",
    ),
}


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0009_delivery_beat_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [schedule(TASKS)]
