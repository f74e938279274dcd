from django.db import migrations

from core.beat import schedule

TASKS = {
    "orders.tasks.manifest_orders_sweep_task": (
        "Manifest: pull orders and push dispatches",
        (30, "seconds"),
        "Pulls orders from manifest channels whose poll is due and reports their shipments.",
    ),
}


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_json_mappings_to_rows"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [schedule(TASKS)]
