from django.db import migrations

from core.beat import schedule

TASKS = {
    "inventory.tasks.manifest_inventory_sweep_task": (
        "Manifest: push inventory",
        (30, "seconds"),
        "Pushes changed available-to-sell figures to manifest channels.",
    ),
}


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [schedule(TASKS)]
