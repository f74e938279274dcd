"""
An org key is valid only while its owner is an org admin of its organization, or a superuser (security
finding 3). Authentication now refuses the others; this revokes them so the admin shows them as they are,
with the reason, a history row and an event on the organization's trail, as tokens.issuing.revoke does.
"""

from django.db import migrations
from django.db.models import Exists, OuterRef
from django.utils import timezone


def revoke_org_keys_of_non_admins(apps, schema_editor):
    ApiKey = apps.get_model("tokens", "ApiKey")
    HistoricalApiKey = apps.get_model("tokens", "HistoricalApiKey")
    Membership = apps.get_model("organizations", "Membership")
    IntegrationEvent = apps.get_model("integrations", "IntegrationEvent")

    admin_of_the_org = Membership.objects.filter(
        user=OuterRef("user"), organization=OuterRef("organization"), role="admin"
    )
    stale = (
        ApiKey.objects.filter(kind="org", revoked_at__isnull=True, user__is_superuser=False)
        .exclude(Exists(admin_of_the_org))
        .select_related("user", "organization")
    )
    tracked = [f.attname for f in HistoricalApiKey._meta.fields if not f.name.startswith("history_")]
    now = timezone.now()
    for key in stale:
        reason = f"owner {key.user.username} is not an org admin of {key.organization.name}"
        key.revoked_at, key.revoked_by, key.revoke_reason = now, "system", reason[:300]
        key.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        HistoricalApiKey.objects.create(
            **{name: getattr(key, name) for name in tracked},
            history_date=now,
            history_type="~",
            history_change_reason="owner is not an org admin",
        )
        IntegrationEvent.objects.create(
            organization_id=key.organization_id,
            kind="key",
            actor="system",
            message=f"Key sy_{key.prefix}_… revoked: {reason}.",
            data={"prefix": key.prefix},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0004_encrypt_idempotency_response"),
        ("organizations", "0001_initial"),
        ("integrations", "0014_encrypt_secrets"),
    ]

    operations = [migrations.RunPython(revoke_org_keys_of_non_admins, migrations.RunPython.noop)]
