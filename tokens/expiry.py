"""
The expiry sweeps (tokens.tasks.key_expiry_task, on beat): warning before a key expires, and the audit line
once it has. Expiry itself is enforced at every request (tokens.authentication).
"""

from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from .issuing import record_key_event
from .models import ApiKey


def notify_expiring(now=None) -> int:
    """E-mail each key's address about keys expiring within the warning window; once per key."""
    now = now or timezone.now()
    horizon = now + timedelta(days=settings.API_KEY_EXPIRY_WARNING_DAYS)
    due = ApiKey.objects.filter(
        revoked_at__isnull=True,
        replaced_by__isnull=True,
        expires_at__gt=now,
        expires_at__lte=horizon,
        expiry_notified_at__isnull=True,
    ).select_related("integration__organization", "organization", "user")
    sent = 0
    for key in due.iterator(chunk_size=200):
        address = key.notify_address
        if address:
            send_mail(
                f"Switchyard: API key {key.display} expires on {key.expires_at:%Y-%m-%d}",
                f"The API key “{key.name}” ({key.display}) of {key.scope} expires on {key.expires_at:%Y-%m-%d %H:%M} UTC.\n"
                "Rotate it in the Switchyard admin before then so its connector keeps working.",
                None,
                [address],
            )
            sent += 1
        ApiKey.objects.filter(pk=key.pk).update(expiry_notified_at=now)
    return sent


def record_expired(now=None) -> int:
    """Audit the keys that expired since the last sweep (expiry itself is enforced at every request)."""
    now = now or timezone.now()
    expired = ApiKey.objects.filter(
        revoked_at__isnull=True, expires_at__lte=now, expiry_recorded_at__isnull=True
    )
    count = 0
    for key in expired.select_related("integration__organization", "organization").iterator(chunk_size=200):
        ApiKey.objects.filter(pk=key.pk).update(expiry_recorded_at=now)
        record_key_event(key, f"Key {key.display} expired.", None)
        count += 1
    return count
