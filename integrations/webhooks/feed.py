"""
The catch-up feed's rules (GET /api/v1/webhook-events, issue 16): which recorded events it shows and in what
order. Webhooks are for speed; the feed is for completeness — a receiver that was down reads what it missed.

The order must never put a row behind one a reader has already passed, though transactions commit in any
order. On PostgreSQL each row records its writing transaction's id (`position`), and the feed shows only rows
whose transaction is older than every transaction still running (`pg_snapshot_xmin`): whatever appears later
belongs to a transaction that was still open, whose id is at least that horizon, so it sorts after all that was
shown. SQLite runs one writer at a time, so there insertion order already is commit order (position 0).
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, Func, Q, QuerySet
from django.utils import timezone

from ..models import WebhookEvent


class TransactionPosition(Func):
    """The writing transaction's id on PostgreSQL (xid8, as a bigint); 0 elsewhere."""

    output_field = BigIntegerField()

    def as_sql(self, compiler, connection, **extra):
        return "0", []

    def as_postgresql(self, compiler, connection, **extra):
        return "pg_current_xact_id()::text::bigint", []


def horizon() -> tuple[int, int | None] | None:
    """
    (the oldest transaction id still running, this transaction's own id if it has one) on PostgreSQL; None
    on SQLite.
    """
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
            "pg_current_xact_id_if_assigned()::text::bigint"
        )
        return cursor.fetchone()


def settled(queryset: QuerySet) -> QuerySet:
    """Only the rows no still-running transaction could come to sort before (and, as ever, one's own writes)."""
    limits = horizon()
    if limits is None:
        return queryset
    oldest_running, own = limits
    visible = Q(position__lt=oldest_running)
    return queryset.filter(visible | Q(position=own) if own is not None else visible)


def retention_cutoff(now=None):
    """Events recorded before this are pruned (WEBHOOK_EVENT_RETENTION_DAYS)."""
    return (now or timezone.now()) - timedelta(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)


def kept(queryset: QuerySet, now=None) -> QuerySet:
    """Rows still inside the retention (a prune that has not run yet hides nothing it would delete)."""
    return queryset.filter(created_at__gte=retention_cutoff(now))


def after(queryset: QuerySet, event: WebhookEvent) -> QuerySet:
    """The rows that sort after `event` in the feed's order (position, id)."""
    return queryset.filter(Q(position__gt=event.position) | Q(position=event.position, pk__gt=event.pk))
