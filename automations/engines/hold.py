"""
The hold engine: a new order gets its organization's automation rules (which may hold, tag, route or raise)
and the default new-order hold, then moves on to `ready`. process_order() says whether the order is ready,
and its caller routes it: the task at once (automations/tasks.py), the sweep through the routing task. A beat
sweep releases holds whose time passed (announced to the routing engine like any release) and processes new
orders whose message was lost.
"""

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from core.queue import enqueue
from orders import services as orders
from orders.choices import OrderStatus
from orders.models import Order

from .. import rules
from ..choices import ActionType, Engine, RuleTrigger, RunTrigger
from ..handlers import ROUTE_ORDER
from . import Skipped, each_organization, merge, running

logger = logging.getLogger(__name__)

# Orders handled per organization per sweep; the next sweep takes the rest.
BATCH = django_settings.ENGINE_SWEEP_BATCH
# A new order's own message normally arrives within a second: only older ones count as lost.
GRACE = timedelta(seconds=django_settings.ENGINE_LOST_MESSAGE_SECONDS)
# order.updated rules touch orders whose routing is not decided yet (never routed, fulfilled, canceled).
UPDATABLE = (OrderStatus.NEW, OrderStatus.ON_HOLD, OrderStatus.READY)
# A created order's rules run once (Order.rules_applied_at), while its routing is not decided: new, held
# (by ingest, for mappings), or ready (mapped again before its message was processed).
UNPROCESSED = (OrderStatus.NEW, OrderStatus.ON_HOLD, OrderStatus.READY)


def process_order(order_id, *, trigger, run_trigger=RunTrigger.EVENT) -> dict:
    """
    Apply the rules for `trigger` to one order (its row locked for the run); counts of what happened, "ready"
    among them when the order is ready to route (the caller routes it: nothing else is told).
    """
    org_id = Order.objects.filter(pk=order_id).values_list("organization_id", flat=True).first()
    if org_id is None:
        return {"missing": 1}
    try:
        with running(org_id, Engine.HOLD, run_trigger) as (engine_settings, counts):
            merge(counts, _process(order_id, trigger, engine_settings))
    except Skipped:
        return {"skipped": 1}
    return counts


def _process(order_id, trigger, engine_settings, *, skip_locked=False) -> dict:
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",), skip_locked=skip_locked)
            .select_related("source", "shipping_method")
            .prefetch_related("lines")
            .filter(pk=order_id)
            .first()
        )
        if order is None:
            return {"missing": 1} if not skip_locked else {"busy": 1}
        if trigger == RuleTrigger.ORDER_CREATED:
            return _created(order, engine_settings)
        return _updated(order)


def _created(order, engine_settings) -> dict:
    # A duplicate message or an overlapping sweep: the first run (committed before our lock) did it all.
    if order.rules_applied_at is not None:
        return {"orders": 1, "already_processed": 1}
    orders.mark_rules_applied(order)
    if order.status not in UNPROCESSED:
        # Routed, canceled or fulfilled meanwhile (the hold engine was off then): too late for rules.
        return {"orders": 1, "already_processed": 1}
    runs = rules.apply(order, RuleTrigger.ORDER_CREATED)
    order = Order.objects.get(pk=order.pk)
    released = any(
        entry["done"] and entry["type"] == ActionType.RELEASE
        for run in runs
        if run.matched
        for entry in run.actions
    )
    minutes = engine_settings.default_hold_minutes
    if minutes and not released and order.status in UNPROCESSED:
        # A rule's explicit release means "route now"; otherwise every new order waits its minutes.
        until = order.created_at + timedelta(minutes=minutes)
        if until > timezone.now():
            order = orders.hold(order, f"new-order hold ({minutes} min)", add=True, until=until)
    if order.status == OrderStatus.NEW:
        order = orders.make_ready(order, announce=False)
    return _counts(order, runs)


def _updated(order) -> dict:
    if order.status not in UPDATABLE:
        return {"orders": 1, "not_updatable": 1}
    runs = rules.apply(order, RuleTrigger.ORDER_UPDATED)
    return _counts(Order.objects.get(pk=order.pk), runs)


def _counts(order, runs) -> dict:
    return {
        "orders": 1,
        "rules_matched": sum(1 for run in runs if run.matched),
        "held": int(order.status == OrderStatus.ON_HOLD),
        "ready": int(order.status == OrderStatus.READY),
    }


# --- the sweep ------------------------------------------------------------------------------------------


def sweep(organization=None, *, trigger=RunTrigger.SCHEDULE, grace=GRACE) -> dict:
    """Per organization with the engine on: release expired holds, process new orders whose message was lost."""

    def work(org, engine_settings):
        return merge(_release_expired(org), _process_lost(org, engine_settings, grace))

    return each_organization(Engine.HOLD, organization, trigger, work, tally_organizations=True)


def run_now(organization=None, *, trigger=RunTrigger.COMMAND) -> dict:
    """`manage.py run_engine hold`: the sweep at once, new orders included however recent."""
    return sweep(organization, trigger=trigger, grace=timedelta(0))


def _release_expired(org) -> dict:
    now = timezone.now()
    expired = Order.objects.filter(organization=org, status=OrderStatus.ON_HOLD, hold_until__lte=now)
    # Orders release() would refuse (unmapped) stay held; left out of the batch so they never crowd it.
    unmapped = expired.filter(orders.has_unmapped_line() | orders.UNMAPPED_METHOD)
    still_unmapped = unmapped.count()
    counts = {"still_unmapped": still_unmapped} if still_unmapped else {}
    due = expired.exclude(pk__in=unmapped.values("pk")).order_by("hold_until", "pk")
    for order_id in due.values_list("pk", flat=True)[:BATCH]:
        outcome = _each(order_id, _release_one, now)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _release_one(order_id, now) -> str:
    with transaction.atomic():
        # SKIP LOCKED: an order another sweep (or an event) is working on is theirs.
        order = (
            Order.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(pk=order_id, status=OrderStatus.ON_HOLD, hold_until__lte=now)
            .first()
        )
        if order is None:
            return "busy"
        try:
            orders.release(order)
        except orders.OrderConflict:
            return "still_unmapped"  # mapped between the query and now, then unmapped again: held as is
        return "released"


def _process_lost(org, engine_settings, grace) -> dict:
    """Orders the rules never saw (their message was lost): new, and held or ready ones not yet routed."""
    lost = Order.objects.filter(
        organization=org,
        status__in=UNPROCESSED,
        rules_applied_at__isnull=True,
        created_at__lte=timezone.now() - grace,
    ).order_by("created_at", "pk")
    counts: dict[str, int] = {}
    for order_id in lost.values_list("pk", flat=True)[:BATCH]:
        result = _each(order_id, _process_one, engine_settings)
        merge(counts, result if isinstance(result, dict) else {result: 1})
    return counts


def _process_one(order_id, engine_settings) -> dict:
    counts = _process(order_id, RuleTrigger.ORDER_CREATED, engine_settings, skip_locked=True)
    if counts.get("ready"):
        # The routing task routes it (after the commit, when a caller's transaction is open), as the task of
        # its lost message would have at once.
        transaction.on_commit(partial(enqueue, ROUTE_ORDER, args=[order_id]))
    return {**counts, "lost_messages": int("orders" in counts and "already_processed" not in counts)}


def _each(order_id, work, *args):
    """One order's work in its own transaction; a failure is logged and counted, the others go on."""
    try:
        return work(order_id, *args)
    except Exception:  # one bad order must not stop the sweep of the rest
        logger.exception("The hold engine failed on order %s.", order_id)
        return "failed"
