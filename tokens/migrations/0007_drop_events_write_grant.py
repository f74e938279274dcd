"""
Issue 17: `events:write` is no grant any more. No endpoint ever required it (the event feed is read-only), so
holding it meant nothing; it is taken off the keys that hold it and off connectors that recommend it.
"""

from django.db import migrations

GONE = "events:write"


def drop_grant(apps, schema_editor):
    ApiKey = apps.get_model("tokens", "ApiKey")
    Connector = apps.get_model("integrations", "Connector")
    for model, field in ((ApiKey, "grants"), (Connector, "recommended_grants")):
        # Read in Python, not with a JSON `__contains` lookup: SQLite (the screenshots' database) has none.
        for pk, grants in model.objects.values_list("pk", field).iterator():
            if isinstance(grants, list) and GONE in grants:
                model.objects.filter(pk=pk).update(**{field: [g for g in grants if g != GONE]})


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0006_idempotencyrecord_to_api"),
        ("integrations", "0018_webhook_events"),
    ]
    operations = [migrations.RunPython(drop_grant, migrations.RunPython.noop)]
