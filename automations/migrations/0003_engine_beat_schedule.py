from django.db import migrations

from core.beat import schedule

# The engines' safety nets: they react on commit; these sweeps pick up whatever a dead worker or a stopped
# broker left behind, and do the time-based work (expired holds, retries, stuck orders, digests).
TASKS = {
    "automations.tasks.hold_sweep_task": (
        "Engines: hold sweep",
        (30, "seconds"),
        "Releases holds whose time passed and applies rules to new orders a worker missed.",
    ),
    "automations.tasks.routing_sweep_task": (
        "Engines: routing sweep",
        (60, "seconds"),
        "Routes ready orders a worker missed and retries unroutable ones whose retry is due.",
    ),
    "automations.tasks.inventory_sweep_task": (
        "Engines: inventory sweep",
        (60, "seconds"),
        "Recomputes channel availability for stock changes not yet processed.",
    ),
    "automations.tasks.exceptions_sweep_task": (
        "Engines: exceptions sweep",
        (5, "minutes"),
        "Raises stuck-order exceptions, resolves stale ones, sends notification digests.",
    ),
}


class Migration(migrations.Migration):
    dependencies = [
        ("automations", "0002_engines_rules_routing"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [schedule(TASKS)]
