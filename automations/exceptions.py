"""
The keeper of exceptions (SyncException, the business records a person fixes): opening one or counting it
again, resolving it when its cause cleared, closing it by hand. Every app raises and resolves through
core.sync_exceptions, which calls this module (registered in automations/apps.py); the admin's bulk actions
call close_exceptions here.
"""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .choices import ExceptionStatus
from .models import SyncException


def raise_exception(
    organization, kind, message, *, integration=None, entity_type="", entity_id="", data=None
):
    """Open an exception, or count another occurrence of the open one with the same cause."""
    cause = {
        "organization_id": organization if isinstance(organization, int) else organization.pk,
        "integration": integration,
        "kind": kind,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "status": ExceptionStatus.OPEN,
    }
    now = timezone.now()
    # One transaction: on SQLite (no partial unique index there) its write lock is what keeps two raisers
    # from both inserting; on PostgreSQL the one-open-per-cause constraint decides, as below.
    with transaction.atomic():
        return _count_or_open(cause, message, data, now)


def _count_or_open(cause, message, data, now):
    for _ in range(2):
        updated = SyncException.objects.filter(**cause).update(
            occurrences=F("occurrences") + 1, last_seen=now, message=message, data=data or {}, updated_at=now
        )
        if updated:
            row = SyncException.objects.filter(**cause).first()
            if row is not None:
                return row
            continue  # resolved between the count and the read: open a new one
        try:
            with transaction.atomic():
                return SyncException.objects.create(**cause, message=message, data=data or {})
        except IntegrityError:
            continue  # raised concurrently: count it on the row that won
    return SyncException.objects.filter(**cause).first()


def resolve(organization, kind, *, integration=None, entity_type="", entity_id="") -> int:
    """Auto-resolve the open exception of a cause that cleared; returns how many were resolved."""
    # updated_at set by hand (.update() skips auto_now): `updated_since` lists must see the resolution.
    now = timezone.now()
    return SyncException.objects.filter(
        organization=organization,
        integration=integration,
        kind=kind,
        entity_type=entity_type,
        entity_id=str(entity_id),
        status=ExceptionStatus.OPEN,
    ).update(status=ExceptionStatus.RESOLVED, resolved_at=now, updated_at=now)


def close_exceptions(queryset, status) -> int:
    """A person resolves or dismisses exceptions (admin bulk action); only open ones move."""
    if status not in (ExceptionStatus.RESOLVED, ExceptionStatus.DISMISSED):
        raise ValueError(f"Cannot close exceptions as {status!r}.")
    now = timezone.now()
    return queryset.filter(status=ExceptionStatus.OPEN).update(status=status, resolved_at=now, updated_at=now)
