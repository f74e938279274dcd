from django.db import migrations

# The admin searches deliveries by webhook-id as a case-insensitive prefix: UPPER(event_id) LIKE 'EVT_…%'.
CREATE = (
    "CREATE INDEX IF NOT EXISTS delivery_event_id_idx "
    "ON integrations_webhookdelivery ((UPPER(event_id::text)) text_pattern_ops)"
)
DROP = "DROP INDEX IF EXISTS delivery_event_id_idx"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":  # SQLite (make run's default) goes without it
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0010_manifest_beat_schedule")]
    operations = [migrations.RunPython(forwards, backwards)]
