from celery import shared_task

from . import expiry


@shared_task(acks_late=True)
def key_expiry_task():
    """Beat: audit keys that expired, and warn integrations whose keys expire within the warning window."""
    return {"expired": expiry.record_expired(), "warned": expiry.notify_expiring()}
