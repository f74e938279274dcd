from celery import shared_task

from . import services


@shared_task(acks_late=True)
def expire_stale_connecting_task():
    """Beat: integrations that never completed the handshake within the window move to `error`."""
    return services.expire_stale_connecting()
