from django.db import migrations

from integrations.catalog import BUILTIN_CONNECTORS, install_builtin_connectors


def install(apps, schema_editor):
    install_builtin_connectors(apps.get_model("integrations", "Connector"))


def remove(apps, schema_editor):
    Connector = apps.get_model("integrations", "Connector")
    Connector.objects.filter(organization=None, key__in=[c["key"] for c in BUILTIN_CONNECTORS]).delete()


class Migration(migrations.Migration):
    dependencies = [("integrations", "0001_initial")]
    operations = [migrations.RunPython(install, remove)]
