from django.db import migrations

from integrations.catalog import BUILTIN_CONNECTORS


def install(apps, schema_editor):
    Connector = apps.get_model("integrations", "Connector")
    for spec in BUILTIN_CONNECTORS:
        Connector.objects.update_or_create(organization=None, key=spec["key"], defaults=spec)


def remove(apps, schema_editor):
    Connector = apps.get_model("integrations", "Connector")
    Connector.objects.filter(organization=None, key__in=[c["key"] for c in BUILTIN_CONNECTORS]).delete()


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_initial")]
    operations = [migrations.RunPython(install, remove)]
