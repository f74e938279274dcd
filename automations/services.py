"""Raising and resolving exceptions (the exceptions engine's records)."""

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


# --- engine settings ----------------------------------------------------------------------------------


def engine_settings(organization):
    """The organization's engine settings; every engine on, with defaults, until an admin changes them."""
    from .models import EngineSettings

    org_id = organization if isinstance(organization, int) else organization.pk
    settings, _ = EngineSettings.objects.get_or_create(organization_id=org_id)
    return settings


def engine_enabled(organization, engine) -> bool:
    from .models import EngineSettings

    org_id = organization if isinstance(organization, int) else organization.pk
    flag = (
        EngineSettings.objects.filter(organization_id=org_id)
        .values_list(f"{engine}_enabled", flat=True)
        .first()
    )
    return True if flag is None else flag  # no row yet: the defaults, every engine on
