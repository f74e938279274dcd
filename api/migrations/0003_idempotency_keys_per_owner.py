"""
Idempotency-Keys become their owner's (an integration's, an organization's own keys', the platform's) instead
of one API key's: each kept record is given its key's owner, and the unique constraint moves to (owner, key).
Two records of one owner under the same key (sent with two of its API keys) keep the newer one.
"""

from django.db import migrations, models
from django.db.models import Max


def owner_of(api_key) -> str:
    if api_key.integration_id is not None:
        return f"integration:{api_key.integration_id}"
    if api_key.organization_id is not None:
        return f"organization:{api_key.organization_id}"
    return "global"


def give_owners(apps, schema_editor):
    IdempotencyRecord = apps.get_model("api", "IdempotencyRecord")
    for record in IdempotencyRecord.objects.select_related("api_key").only(
        "pk", "api_key__integration_id", "api_key__organization_id"
    ):
        IdempotencyRecord.objects.filter(pk=record.pk).update(owner=owner_of(record.api_key))
    newest = IdempotencyRecord.objects.values("owner", "key").annotate(newest=Max("pk")).values("newest")
    IdempotencyRecord.objects.exclude(pk__in=newest).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0002_prune_task_from_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="owner",
            field=models.CharField(
                default="", help_text="What the key acts for: integration:<id>, …", max_length=40
            ),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="api_key",
            field=models.ForeignKey(
                help_text="The API key that sent it first.",
                on_delete=models.deletion.CASCADE,
                related_name="+",
                to="tokens.apikey",
            ),
        ),
        migrations.RunPython(give_owners, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="idempotencyrecord", name="idempotency_unique_key_per_api_key"
        ),
        migrations.AddConstraint(
            model_name="idempotencyrecord",
            constraint=models.UniqueConstraint(
                fields=("owner", "key"), name="idempotency_unique_key_per_owner"
            ),
        ),
    ]
