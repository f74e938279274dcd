"""
Beat schedules installed by data migrations: django-celery-beat rows, visible and editable in
the admin. A migration lists its tasks and runs `schedule(TASKS)`; unapplying it removes them.
"""

from django.db import migrations


def schedule(tasks: dict) -> migrations.RunPython:
    """`tasks`: {task path: (name, (every, period), description)} → the RunPython that installs them."""

    def install(apps, schema_editor):
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        for task, (name, (every, period), description) in tasks.items():
            interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
            PeriodicTask.objects.update_or_create(
                name=name,
                defaults={"task": task, "interval": interval, "enabled": True, "description": description},
            )

    def remove(apps, schema_editor):
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task__in=list(tasks)).delete()

    return migrations.RunPython(install, remove)
