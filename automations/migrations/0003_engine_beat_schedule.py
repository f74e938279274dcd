from django.db import migrations

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
        ("automations", "0002_engines_rules_routing"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(install, remove)]
