"""The API machinery's beat task: its housekeeping (api/idempotency.py keeps the rule)."""

from celery import shared_task

from api import idempotency


@shared_task(acks_late=True)
def prune_idempotency_records_task():
    """Beat: drop stored Idempotency-Key responses past their retention."""
    return idempotency.prune()
