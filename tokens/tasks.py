from celery import shared_task
from django.utils import timezone

from . import services
from .models import IdempotencyRecord


@shared_task(acks_late=True)
def key_expiry_task():
    """Beat: audit keys that expired, and warn integrations whose keys expire within the warning window."""
    return {"expired": services.record_expired(), "warned": services.notify_expiring()}


@shared_task(acks_late=True)
def prune_idempotency_records_task():
    """Beat: drop stored Idempotency-Key responses past their retention."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
