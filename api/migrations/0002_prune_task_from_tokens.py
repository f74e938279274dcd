"""
The beat task that prunes idempotency records moved with the model: tokens/0002 installed it as
tokens.tasks.prune_idempotency_records_task, it is api.tasks.prune_idempotency_records_task now. The row
keeps its name, schedule and switch (an operator may have changed them); only the task it runs is renamed.
"""

from django.db import migrations

OLD, NEW = "tokens.tasks.prune_idempotency_records_task", "api.tasks.prune_idempotency_records_task"


def rename(old, new):
    def run(apps, schema_editor):
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=old).update(task=new)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_idempotencyrecord_from_tokens"),
        ("tokens", "0002_beat_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(rename(OLD, NEW), rename(NEW, OLD))]
