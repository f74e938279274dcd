"""Placing an integration in a status directly, and reading what a move recorded (the lifecycle tests)."""

from datetime import timedelta

from django.utils import timezone

from integrations.models import Integration, IntegrationEvent


def put(integration, status, *, since=None):
    """Place `integration` in `status` (directly: the moves are what is under test) with an old timestamp."""
    since = since or timezone.now() - timedelta(days=3)
    Integration.objects.filter(pk=integration.pk).update(status=status, status_changed_at=since)
    integration.refresh_from_db()
    return integration


def event_mark():
    last = IntegrationEvent.objects.order_by("-pk").first()
    return last.pk if last else 0


def new_events(integration, mark):
    return list(IntegrationEvent.objects.filter(integration=integration, pk__gt=mark).order_by("pk"))


def row(integration):
    return Integration.objects.filter(pk=integration.pk).values().get()
