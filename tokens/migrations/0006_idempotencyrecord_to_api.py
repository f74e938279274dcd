"""
IdempotencyRecord leaves tokens for the api app (api/0001): state only, the table and its rows stay.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0005_revoke_org_keys_of_non_admins"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotencyRecord")],
            database_operations=[],
        ),
    ]
