"""
The routing engine: a ready order goes to the location(s) that can ship it (docs/architecture.md, "A routing
decision").

The org's routing cards are tried in order and the first whose conditions match decides (none: the default
card, every active shipping location by priority). Within a card, one location that can ship every line in
full wins (by preference, or most stock); only when none can, and the card allows it, the order is split
greedily across the card's locations — and only if the split covers everything. Planning reads stock
without locks; the plan is then checked again with its stock rows locked (inventory/allocation.py) before
the shipping requests commit it. An order nothing can ship is held and raised as an exception, and retried
on a schedule and as soon as stock of its products moves.
"""

import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Prefetch, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from core.sync_exceptions import ExceptionKind
from inventory import allocation, archive
from inventory.models import Location
from orders import services as order_services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import Order, OrderLine, ShippingRequest
from orders.services import UNROUTABLE_REASON

from .. import conditions, exceptions
from ..choices import Engine, ExceptionStatus, RoutingStrategy, RuleTrigger, RunTrigger
from ..engine_settings import engine_enabled
from ..models import RoutingRule, RoutingRuleLocation, SyncException
from . import Skipped, each_organization, hold, merge, running

logger = logging.getLogger(__name__)

# A plan whose stock another routing took between planning and locking is made again this many times.
ATTEMPTS = 4
# Orders per category and organization in one sweep; more wait for the next beat run.
SWEEP_BATCH = django_settings.ENGINE_SWEEP_BATCH
# A ready order untouched this long lost its routing message (it is routed within a second of commit).
LOST_MESSAGE_AFTER = timedelta(seconds=django_settings.ENGINE_LOST_MESSAGE_SECONDS)
# With the hold engine off, a new order older than this was not made ready by ingest (the switch flipped).
NEW_ORDER_GRACE = timedelta(seconds=2 * django_settings.ENGINE_LOST_MESSAGE_SECONDS)
DEFAULT_CARD = "Default (every shipping location by priority)"


@dataclass
class RouteResult:
    """What routing one order did: its shipping requests, or why there are none."""

    routed: bool
    requests: list[ShippingRequest] = field(default_factory=list)
    reason: str = ""
    held: bool = False  # found unroutable: held (or, on a retry, counted again) with an exception


@dataclass(frozen=True)
class Card:
    """The card that decides an order: the locations to try, in order of preference, and whether to split."""

    name: str
    locations: tuple[Location, ...]
    allow_split: bool
    rule_id: int | None = None  # None: the implicit default card


class _StockTaken(Exception):
    """The locked figures no longer cover the plan: another routing took the stock first."""


# --- cards --------------------------------------------------------------------------------------------


def shipping_locations(organization_id) -> list[Location]:
    """Every location of the organization routing may use, by priority."""
    return list(
        Location.objects.filter(organization_id=organization_id, active=True, ships=True).order_by(
            "priority", "name", "pk"
        )
    )


def active_cards(organization_id) -> list[RoutingRule]:
    """The organization's active cards in order, each with its preference list (two queries)."""
    preferences = RoutingRuleLocation.objects.select_related("location").order_by("position", "pk")
    return list(
        RoutingRule.objects.filter(organization_id=organization_id, active=True)
        .order_by("position", "pk")
        .prefetch_related(Prefetch("preferences", queryset=preferences))
    )


def _usable(location, organization_id) -> bool:
    return location.organization_id == organization_id and location.active and location.ships


def choose_card(order, lines, settings, cards=None, locations=None) -> Card:
    """The first active card whose conditions match the order, else the default card."""
    cards = active_cards(order.organization_id) if cards is None else cards
    locations = shipping_locations(order.organization_id) if locations is None else locations
    facts = conditions.facts(order, lines)
    for card in cards:
        matched, _ = conditions.evaluate(card.conditions, card.match, facts)
        if not matched:
            continue
        listed = [p.location for p in card.preferences.all()]
        # Listed locations that cannot ship (switched off, another org's) are skipped, not replaced.
        chosen = [loc for loc in listed if _usable(loc, order.organization_id)] if listed else locations
        return Card(card.name, tuple(chosen), card.allow_split, card.pk)
    return Card(DEFAULT_CARD, tuple(locations), settings.allow_split)


# --- planning (no locks) ------------------------------------------------------------------------------

Plan = list[tuple[Location, list[tuple[OrderLine, int]]]]


def _demand(lines) -> dict[int, int]:
    demand: dict[int, int] = {}
    for line in lines:
        demand[line.product_id] = demand.get(line.product_id, 0) + line.quantity
    return demand


def _ships_all(location, demand, stock) -> bool:
    return all(stock.get((pid, location.pk), 0) >= qty for pid, qty in demand.items())


def _single(locations, demand, stock, strategy):
    able = [loc for loc in locations if _ships_all(loc, demand, stock)]
    if not able:
        return None
    if strategy == RoutingStrategy.MOST_STOCK:
        # max() keeps the first of equals: a tie goes to the card's preference order.
        return max(able, key=lambda loc: sum(stock.get((pid, loc.pk), 0) for pid in demand))
    return able[0]


def _split(locations, lines, stock) -> Plan | None:
    """Each location in turn takes what it can of what remains; None unless everything is covered."""
    left = {line.pk: line.quantity for line in lines}
    free = dict(stock)
    plan: Plan = []
    for location in locations:
        taken = []
        for line in lines:
            key = (line.product_id, location.pk)
            take = min(left[line.pk], free.get(key, 0))
            if take:
                taken.append((line, take))
                left[line.pk] -= take
                free[key] -= take
        if taken:
            plan.append((location, taken))
        if not any(left.values()):
            return plan
    return None


def make_plan(order, lines, card, stock, strategy, *, refused=()) -> Plan | None:
    """
    Where each line ships from (routing_location first, then the card), or None when nothing covers it.
    `refused`: ids of locations that rejected the order's request (the card is given without them).
    """
    demand = _demand(lines)
    everything = [(line, line.quantity) for line in lines]
    preferred = order.routing_location
    usable = (
        preferred is not None and preferred.pk not in refused and _usable(preferred, order.organization_id)
    )
    if usable and _ships_all(preferred, demand, stock):
        return [(preferred, everything)]
    single = _single(card.locations, demand, stock, strategy)
    if single is not None:
        return [(single, everything)]
    return _split(card.locations, lines, stock) if card.allow_split else None


def _needs(plan: Plan) -> dict[tuple[int, int], int]:
    needs: dict[tuple[int, int], int] = {}
    for location, taken in plan:
        for line, qty in taken:
            key = (line.product_id, location.pk)
            needs[key] = needs.get(key, 0) + qty
    return needs


# --- routing one order --------------------------------------------------------------------------------


def _held_unroutable(order) -> bool:
    """On hold for no reason but that no location could ship it: the retries may release it."""
    return order_services.held_only_for(order, UNROUTABLE_REASON)


def route(order, settings) -> RouteResult:
    """Route a ready order (or retry one held as unroutable): shipping requests, else hold + exception."""
    retry = _held_unroutable(order)
    if order.status == OrderStatus.READY and order.rules_applied_at is None and settings.hold_enabled:
        # Never route past the rules: an order whose hold-engine message was lost gets them first.
        hold.process_order(order.pk, trigger=RuleTrigger.ORDER_CREATED)
        order = Order.objects.select_related("source", "routing_location", "shipping_method").get(pk=order.pk)
    if order.status != OrderStatus.READY and not retry:
        return RouteResult(False, reason=f"the order is {order.get_status_display().lower()}")
    lines = list(order.lines.all())
    if not lines or any(line.product_id is None for line in lines):
        # Unmapped orders are held for mapping; routing them would ship the wrong thing or nothing.
        return RouteResult(False, reason="the order has no lines or unmapped lines")
    card = choose_card(order, lines, settings)
    if archived := archive.archived_skus(line.product_id for line in lines):
        # Sold nowhere: held until a person restores the product (its figures' recompute retries the order).
        reason = f"{', '.join(archived)} archived"
        return RouteResult(False, reason=reason, held=_unroutable(order, card, reason, retry=retry))
    # A location that rejected the order's request is never asked again (one request per order and location).
    refused = _refused(order)
    card = replace(card, locations=tuple(loc for loc in card.locations if loc.pk not in refused))
    candidates = {loc.pk for loc in card.locations}
    if order.routing_location_id and order.routing_location_id not in refused:
        candidates.add(order.routing_location_id)
    stock: dict = {}
    contended = False
    for _ in range(ATTEMPTS):
        stock = allocation.routable_stock(order.organization_id, order.source_id, _demand(lines), candidates)
        plan = make_plan(order, lines, card, stock, settings.routing_strategy, refused=refused)
        if plan is None:
            contended = False
            break
        try:
            requests = _commit(order, plan, lines, retry=retry)
        except _StockTaken:
            contended = True  # every attempt lost its stock to other orders: say so, not "short"
            continue
        if requests is None:
            return RouteResult(False, reason="the order changed while it was being routed")
        return RouteResult(True, requests)
    reason = _why(card, lines, stock, contended=contended)
    if refused:
        reason += f"; {', '.join(sorted(refused.values()))} rejected its shipping request"
    held = _unroutable(order, card, reason, retry=retry)
    return RouteResult(False, reason=reason, held=held)


def _refused(order) -> dict[int, str]:
    """{location id: name} of the locations whose 3PL rejected a shipping request of the order."""
    rejected = ShippingRequest.objects.filter(order=order, status=ShippingRequestStatus.REJECTED)
    return dict(rejected.values_list("location_id", "location__name"))


def _lines_of(lines) -> list[tuple[int, int, int]]:
    return sorted((line.pk, line.product_id, line.quantity) for line in lines)


def _commit(order, plan: Plan, lines, *, retry) -> list[ShippingRequest] | None:
    """
    In one transaction: lock the order, lock and re-check the plan's stock (fixed order), then create the
    shipping requests. None when the order moved meanwhile (its status, or its lines: a channel's re-push
    may remap or replace them, and the plan would ship what was ordered before); _StockTaken (nothing
    written) when stock did.
    """
    with transaction.atomic():
        locked = Order.objects.select_for_update(of=("self",)).select_related("source").get(pk=order.pk)
        if _lines_of(OrderLine.objects.filter(order=locked)) != _lines_of(lines):
            return None  # the update that changed them enqueued the order again (order_received)
        if retry:
            if not _held_unroutable(locked):
                return None
            order_services.release(locked, announce=False)  # routed right here
        elif locked.status != OrderStatus.READY:
            return None  # routed by another worker (a duplicate message, an overlapping sweep)
        if allocation.lock_and_check(locked.organization_id, locked.source_id, _needs(plan)):
            raise _StockTaken
        requests = [
            order_services.create_shipping_request(locked, location, taken) for location, taken in plan
        ]
        exceptions.resolve(
            locked.organization_id,
            ExceptionKind.UNROUTABLE_ORDER,
            integration=locked.source,
            entity_type="order",
            entity_id=locked.pk,
        )
    return requests


def _why(card, lines, stock, *, contended=False) -> str:
    where = ", ".join(loc.name for loc in card.locations)
    if not card.locations:
        return f"card “{card.name}” has no active location that ships"
    if contended:
        return f"other orders took the stock it needed while it was being routed (looked at {where})"
    short = []
    for pid, qty in _demand(lines).items():
        figures = [stock.get((pid, loc.pk), 0) for loc in card.locations]
        available = sum(figures) if card.allow_split else max(figures)
        if available < qty:
            sku = next(line.sku or line.external_sku for line in lines if line.product_id == pid)
            short.append(f"{sku} ({qty} ordered, {available} available)")
    scope = "across" if card.allow_split else "at any one of"
    if short:
        return f"short of {', '.join(short)} {scope} {where} (card “{card.name}”)"
    return f"no single location of {where} has all of it and card “{card.name}” does not allow a split"


def _unroutable(order, card, reason, *, retry) -> bool:
    """
    Hold the order for UNROUTABLE_REASON and raise (or count again) its exception, under the order lock;
    False when the order moved on meanwhile (then nothing failed).
    """
    with transaction.atomic():
        locked = Order.objects.select_for_update(of=("self",)).select_related("source").get(pk=order.pk)
        if retry:
            if not _held_unroutable(locked):
                return False  # released or routed meanwhile
        elif locked.status != OrderStatus.READY:
            return False
        else:
            order_services.hold(locked, UNROUTABLE_REASON, add=True)
        exceptions.raise_exception(
            locked.organization_id,
            ExceptionKind.UNROUTABLE_ORDER,
            f"Order {locked} cannot be routed: {reason}. It is tried again as soon as stock of its products "
            "moves, and on the routing schedule.",
            integration=locked.source,
            entity_type="order",
            entity_id=locked.pk,
            data={"card": card.name, "locations": [loc.pk for loc in card.locations]},
        )
    return True


def _route_one(order_id, settings, counts, *, retry=False) -> None:
    """
    Route one ready order (`retry`: one held as unroutable) in its own transactions; an order found in
    another state was dealt with by an overlapping run. A failure is logged and counted, never passed on.
    """
    try:
        order = (
            Order.objects.select_related("source", "routing_location", "shipping_method")
            .filter(pk=order_id)
            .first()
        )
        expected = (
            _held_unroutable(order) if retry else order is not None and order.status == OrderStatus.READY
        )
        if not expected:
            counts["unchanged"] = counts.get("unchanged", 0) + 1
            return
        result = route(order, settings)
    except Exception:
        logger.exception("Routing order %s failed.", order_id)
        counts["failed"] = counts.get("failed", 0) + 1
        return
    merge(counts, _outcome(result, retry=retry))


def _outcome(result: RouteResult, *, retry=False) -> dict:
    if result.routed:
        split = {"split": 1} if len(result.requests) > 1 else {}
        return {"retried_routed" if retry else "routed": 1, **split}
    return {"unroutable": 1} if result.held else {"unchanged": 1}


# --- entry points (tasks, run_engine, the inventory engine) ------------------------------------------


def route_order_by_id(order_id, *, trigger=RunTrigger.EVENT) -> dict:
    """An order became ready: route it. Anything but ready (a duplicate message) is left as it is."""
    organization_id = Order.objects.filter(pk=order_id).values_list("organization_id", flat=True).first()
    if organization_id is None:
        return {"missing": 1}
    try:
        with running(organization_id, Engine.ROUTING, trigger) as (settings, counts):
            order = Order.objects.select_related("source", "routing_location", "shipping_method").get(
                pk=order_id
            )
            if order.status != OrderStatus.READY:
                counts["unchanged"] = 1  # a duplicate message, or moved on by someone else
            else:
                merge(counts, _outcome(route(order, settings)))
    except Skipped:
        return {"skipped": 1}
    return counts


def _batches(queryset):
    """Order ids of `queryset` in bounded batches (keyset on pk), so a backlog never loads at once."""
    last = 0
    while True:
        ids = list(queryset.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:SWEEP_BATCH])
        if not ids:
            return
        yield ids
        last = ids[-1]


def _unroutable_orders(organization_id):
    return Order.objects.filter(
        organization_id=organization_id, status=OrderStatus.ON_HOLD, hold_reason=UNROUTABLE_REASON
    )


def retry_for_products(organization_id, product_ids) -> dict:
    """
    Stock of these products moved (ids, or a queryset of them): retry now every order held as unroutable
    that has one of them. Nothing waiting: nothing recorded, so the engine's last run stays a real one.
    """
    if not engine_enabled(organization_id, Engine.ROUTING):
        return {"skipped": 1}
    if not isinstance(product_ids, QuerySet):
        product_ids = list(product_ids)
    lines = OrderLine.objects.filter(product_id__in=product_ids).values("order_id")
    waiting = _unroutable_orders(organization_id).filter(pk__in=lines)
    if not waiting.exists():
        return {}
    try:
        with running(organization_id, Engine.ROUTING, RunTrigger.EVENT) as (settings, counts):
            for ids in _batches(waiting):
                for order_id in ids:
                    _route_one(order_id, settings, counts, retry=True)
    except Skipped:
        return {"skipped": 1}
    return counts


def _due_retries(organization_id, settings, now):
    """Orders held as unroutable whose last attempt (their open exception's last_seen) is old enough."""
    recent = SyncException.objects.filter(
        organization_id=organization_id,
        kind=ExceptionKind.UNROUTABLE_ORDER,
        status=ExceptionStatus.OPEN,
        entity_type="order",
        entity_id=Cast(OuterRef("pk"), CharField()),
        last_seen__gt=now - timedelta(minutes=settings.unroutable_retry_minutes),
    )
    return _unroutable_orders(organization_id).exclude(Exists(recent))


def _sweep_org(organization, settings, counts, *, grace) -> None:
    now = timezone.now()
    # Retries due are listed first: an order this run finds unroutable is not tried twice in one run.
    due = _unroutable_orders(organization.pk) if not grace else _due_retries(organization.pk, settings, now)
    due_ids = list(due.order_by("pk").values_list("pk", flat=True)[:SWEEP_BATCH])
    lost = Order.objects.filter(organization=organization, status=OrderStatus.READY)
    if grace:
        lost = lost.filter(updated_at__lt=now - LOST_MESSAGE_AFTER)
    for order_id in lost.order_by("pk").values_list("pk", flat=True)[:SWEEP_BATCH]:
        _route_one(order_id, settings, counts)
    if not settings.hold_enabled:
        # Nothing else moves a new order on while the hold engine is off.
        new = Order.objects.filter(organization=organization, status=OrderStatus.NEW)
        if grace:
            new = new.filter(created_at__lt=now - NEW_ORDER_GRACE)
        for order_id in new.order_by("pk").values_list("pk", flat=True)[:SWEEP_BATCH]:
            if _make_ready(order_id, counts):
                _route_one(order_id, settings, counts)
    for order_id in due_ids:
        _route_one(order_id, settings, counts, retry=True)


def _make_ready(order_id, counts) -> bool:
    """`new` → `ready` for the sweep (the hold engine being off); False when it had moved on or failed."""
    try:
        order = order_services.make_ready(Order(pk=order_id), announce=False)  # the sweep routes it next
    except Exception:
        logger.exception("Making order %s ready failed.", order_id)
        counts["failed"] = counts.get("failed", 0) + 1
        return False
    key = "made_ready" if order.status == OrderStatus.READY else "unchanged"
    counts[key] = counts.get(key, 0) + 1
    return key == "made_ready"


def sweep(organization=None, *, trigger=RunTrigger.SCHEDULE, grace=True) -> dict:
    """
    Per organization with routing on: ready orders whose message was lost, new orders nothing made ready
    (hold engine off), unroutable orders whose retry is due. `grace=False` takes every one of them now.
    """

    def work(org, settings):
        counts: dict[str, int] = {}
        _sweep_org(org, settings, counts, grace=grace)
        return counts

    return each_organization(Engine.ROUTING, organization, trigger, work)


def run_now(organization=None, *, trigger=RunTrigger.COMMAND) -> dict:
    """`run_engine routing`: the sweep with no grace periods, every unroutable order retried now."""
    return sweep(organization, trigger=trigger, grace=False)
