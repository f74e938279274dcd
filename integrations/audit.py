"""
The audit trail of integrations: one IntegrationEvent per thing that happened to an integration (a status
move, a configuration change, a delivery, an API request), and who did it.
"""

from datetime import timedelta

from django.utils import timezone

from .models import Integration, IntegrationEvent


def actor_label(actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return f"user:{actor.get_username()}"


def record_event(integration, kind, message, *, actor=None, data=None, organization=None, touch=True):
    """Append one IntegrationEvent; `integration` may be None for org-level events."""
    user = actor if actor is not None and not isinstance(actor, str) else None
    if touch and integration is not None and integration.pk:
        # Last activity is written at most once a minute per integration, judged from the loaded row.
        now = timezone.now()
        if integration.last_activity_at is None or now - integration.last_activity_at >= timedelta(minutes=1):
            Integration.objects.filter(pk=integration.pk).update(last_activity_at=now)
            integration.last_activity_at = now
    return IntegrationEvent.objects.create(
        organization=organization or integration.organization,
        integration=integration,
        integration_name=integration.name if integration else "",
        kind=kind,
        actor_user=user,
        actor=actor_label(actor),
        message=message,
        data=data or {},
    )
