"""The engines' beat schedules come with the migrations, and every scheduled task of the hub exists."""

from django_celery_beat.models import PeriodicTask

from config.celery import app

ENGINE_SWEEPS = {
    "automations.tasks.hold_sweep_task": (30, "seconds"),
    "automations.tasks.routing_sweep_task": (60, "seconds"),
    "automations.tasks.inventory_sweep_task": (60, "seconds"),
    "automations.tasks.exceptions_sweep_task": (5, "minutes"),
}


def test_the_engine_sweeps_are_scheduled_by_the_migration(db):
    rows = PeriodicTask.objects.filter(task__startswith="automations.").select_related("interval")

    assert {row.task: (row.interval.every, row.interval.period) for row in rows} == ENGINE_SWEEPS
    assert all(row.enabled and row.description for row in rows)


def test_every_scheduled_task_is_a_registered_task(db):
    app.loader.import_default_modules()  # the apps' tasks modules, as a worker imports them

    scheduled = set(
        PeriodicTask.objects.exclude(task="celery.backend_cleanup").values_list("task", flat=True)
    )

    assert scheduled and scheduled <= set(app.tasks)
