"""
The exceptions engine's sweep, per organization, in this order: raise stuck orders and shipping requests not
acknowledged in time (acknowledgement.py); resolve exceptions whose
cause cleared (a safety net beside the engines that resolve on the spot); resolve stale ones; send the
notification digest; prune old rule runs and closed exceptions. Every step is one or a few set-based
statements, bounded per run, and idempotent: a second or overlapping sweep finds nothing left to do.
"""

from datetime import timedelta

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import CharField, Exists, F, Func, JSONField, OuterRef, Subquery, Value
from django.db.models.functions import Cast
from django.utils import timezone

from core.sync_exceptions import ExceptionKind
from integrations.models import Integration
from orders import services as order_services
from orders.choices import OrderStatus
from orders.models import Order, ShippingRequest
from orders.services import OPEN_REQUEST, UNROUTABLE_REASON

from .. import notifications
from ..choices import Engine, ExceptionStatus, RunTrigger
from ..models import RuleRun, SyncException
from . import acknowledgement, each_organization, merge

STUCK_STATUSES = (OrderStatus.READY, OrderStatus.SENT_TO_FULFILLMENT)
# Per organization and run; what is left over is taken by the next sweep.
STUCK_BATCH = 1000
RESOLVE_BATCH = 5000
STALE_BATCH = 5000
DELETE_BATCH = 5000
RULE_RUN_RETENTION_DAYS = django_settings.RULE_RUN_RETENTION_DAYS
CLOSED_EXCEPTION_RETENTION_DAYS = django_settings.EXCEPTION_RETENTION_DAYS


class JSONMerge(Func):
    """`data || patch` in one UPDATE (PostgreSQL jsonb; json_patch elsewhere): the row's other keys are kept."""

    output_field = JSONField()
    arg_joiner = " || "
    template = "(%(expressions)s)"

    def __init__(self, field: str, patch: dict):
        super().__init__(F(field), Value(patch, output_field=JSONField()))

    def as_sqlite(self, compiler, connection, **extra):
        return self._call(compiler, connection, "JSON_PATCH")

    def as_mysql(self, compiler, connection, **extra):
        return self._call(compiler, connection, "JSON_MERGE_PATCH")

    def _call(self, compiler, connection, function):
        return self.as_sql(
            compiler, connection, function=function, template="%(function)s(%(expressions)s)", arg_joiner=", "
        )


def sweep(organization=None, *, trigger=RunTrigger.SCHEDULE, force_digest=False) -> dict:
    """Every step for each organization with the exceptions engine on; returns the summed counts."""

    def work(org, settings):
        now = timezone.now()
        counts = {
            "stuck": raise_stuck(org, settings, now),
            "unacknowledged": acknowledgement.raise_unacknowledged(org, now),
            "resolved": resolve_cleared(org, settings, now),
            "stale": resolve_stale(org, settings, now),
        }
        if force_digest or digest_due(settings, now):
            merge(counts, notifications.send_digest(org, settings, now))
        counts["pruned"] = prune(org, now)
        return counts

    totals = {"stuck": 0, "unacknowledged": 0, "resolved": 0, "stale": 0, "mailed": 0, "notified": 0}
    return merge(totals, each_organization(Engine.EXCEPTIONS, organization, trigger, work))


def run_now(organization=None, *, trigger=RunTrigger.COMMAND) -> dict:
    """`run_engine exceptions`: the sweep, with the digest sent now whatever `digest_minutes` says."""
    return sweep(organization, trigger=trigger, force_digest=True)


def digest_due(settings, now) -> bool:
    last = settings.last_digest_at
    return last is None or last <= now - timedelta(minutes=settings.digest_minutes)


# --- 1. stuck orders ----------------------------------------------------------------------------------


def _order_key():
    """An order's pk as the text SyncException.entity_id holds (casting the other way fails on other ids)."""
    return Cast(OuterRef("pk"), CharField())


def _open(org, kind):
    return SyncException.objects.filter(
        organization=org, kind=kind, status=ExceptionStatus.OPEN, entity_type="order"
    )


def _stuck_orders(org, settings, now):
    since = now - timedelta(hours=settings.stuck_after_hours)
    return Order.objects.filter(organization=org, status__in=STUCK_STATUSES, updated_at__lt=since)


def raise_stuck(org, settings, now) -> int:
    """Orders ready or sent to fulfillment for longer than `stuck_after_hours` and not yet raised."""
    # One transaction: on SQLite (no partial unique index) its write lock keeps an overlapping sweep from
    # inserting the same exceptions; on PostgreSQL the one-open-per-cause constraint skips them.
    with transaction.atomic():
        return _raise_stuck(org, settings, now)


def _raise_stuck(org, settings, now) -> int:
    stuck = _stuck_orders(org, settings, now)
    # Still stuck and already raised: seen again now, so the stale rule never closes a live cause.
    _open(org, ExceptionKind.STUCK_ORDER).filter(
        entity_id__in=stuck.annotate(key=Cast("pk", CharField())).values("key")
    ).update(last_seen=now)
    fulfiller = (
        ShippingRequest.objects.filter(order=OuterRef("pk"), status__in=OPEN_REQUEST, fulfiller__isnull=False)
        .order_by("pk")
        .values("fulfiller")[:1]
    )
    raised = _open(org, ExceptionKind.STUCK_ORDER).filter(entity_id=_order_key())
    candidates = list(
        stuck.filter(~Exists(raised))
        .annotate(fulfiller_id=Subquery(fulfiller))
        .only("pk", "number", "external_id", "status", "updated_at", "source", "organization")
        .order_by("updated_at", "pk")[:STUCK_BATCH]
    )
    integrations = Integration.objects.in_bulk({o.fulfiller_id or o.source_id for o in candidates} - {None})
    # One INSERT for the batch: none of them is open yet, and one an overlapping sweep inserted first is
    # skipped by the one-open-per-cause constraint.
    SyncException.objects.bulk_create(
        [
            _stuck_exception(
                org, order, integrations.get(order.fulfiller_id or order.source_id), settings, now
            )
            for order in candidates
        ],
        ignore_conflicts=True,
    )
    return len(candidates)


def _stuck_exception(org, order, integration, settings, now) -> SyncException:
    since = f"{order.updated_at:%Y-%m-%d %H:%M} UTC"
    if order.status == OrderStatus.READY:
        message = (
            f"Order {order} has been ready since {since} (over {settings.stuck_after_hours} h) and was not "
            "routed: check that the routing engine is on and that a location can ship it."
        )
    else:
        by = integration.name if integration else "its fulfiller"
        message = (
            f"Order {order} has been sent to fulfillment since {since} (over {settings.stuck_after_hours} h) "
            f"and nothing was shipped: check that {by} is connected and has acknowledged its shipping request."
        )
    return SyncException(
        organization=org,
        integration=integration,
        kind=ExceptionKind.STUCK_ORDER,
        entity_type="order",
        entity_id=str(order.pk),
        message=message,
        data={"status": order.status, "since": order.updated_at.isoformat()},
        first_seen=now,
        last_seen=now,
    )


# --- 2. causes that cleared -----------------------------------------------------------------------------


def resolve_cleared(org, settings, now) -> int:
    """Open order exceptions whose order no longer has the problem (or is gone) are resolved."""
    # The order's pk compared as text: casting entity_id to a number instead could fail on odd rows.
    order = Order.objects.annotate(key=Cast("pk", CharField())).filter(
        organization=org, key=OuterRef("entity_id")
    )
    open_order = order.exclude(status=OrderStatus.CANCELED)
    still = {
        ExceptionKind.STUCK_ORDER: order.filter(
            status__in=STUCK_STATUSES, updated_at__lt=now - timedelta(hours=settings.stuck_after_hours)
        ),
        ExceptionKind.UNROUTABLE_ORDER: order.filter(
            status=OrderStatus.ON_HOLD, hold_reason__contains=UNROUTABLE_REASON
        ),
        ExceptionKind.UNMAPPED_SKU: open_order.filter(order_services.has_unmapped_line()),
        ExceptionKind.UNMAPPED_SHIPPING_METHOD: open_order.filter(order_services.UNMAPPED_METHOD),
    }
    return sum(
        _close(_open(org, kind).filter(~Exists(problem)), RESOLVE_BATCH, now, "cause_cleared")
        for kind, problem in still.items()
    ) + _close(acknowledgement.cleared(org), RESOLVE_BATCH, now, "cause_cleared")


def _close(queryset, limit, now, why) -> int:
    """Resolve up to `limit` rows of `queryset` in one UPDATE, noting why in `data` (other keys kept)."""
    batch = SyncException.objects.filter(
        pk__in=list(queryset.order_by("pk").values_list("pk", flat=True)[:limit])
    )
    return batch.filter(status=ExceptionStatus.OPEN).update(
        status=ExceptionStatus.RESOLVED,
        resolved_at=now,
        updated_at=now,  # .update() skips auto_now; `updated_since` lists must see the resolution
        data=JSONMerge("data", {"resolved_by": why}),
    )


# --- 3. stale --------------------------------------------------------------------------------------------


def resolve_stale(org, settings, now) -> int:
    """With `stale_after_days` set, open exceptions not seen again for that long are resolved as stale."""
    if not settings.stale_after_days:
        return 0
    stale = SyncException.objects.filter(
        organization=org,
        status=ExceptionStatus.OPEN,
        last_seen__lt=now - timedelta(days=settings.stale_after_days),
    )
    return _close(stale, STALE_BATCH, now, "stale")


# --- 5. retention --------------------------------------------------------------------------------------


def prune(org, now) -> int:
    """Rule runs past RULE_RUN_RETENTION_DAYS and closed exceptions past CLOSED_EXCEPTION_RETENTION_DAYS."""
    runs = RuleRun.objects.filter(
        organization=org, created_at__lt=now - timedelta(days=RULE_RUN_RETENTION_DAYS)
    )
    closed = SyncException.objects.filter(
        organization=org,
        status__in=[ExceptionStatus.RESOLVED, ExceptionStatus.DISMISSED],
        resolved_at__lt=now - timedelta(days=CLOSED_EXCEPTION_RETENTION_DAYS),
    )
    deleted = 0
    for queryset in (runs, closed):
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:DELETE_BATCH])
        if pks:
            deleted += queryset.model.objects.filter(pk__in=pks).delete()[0]
    return deleted
