"""
Automation rules applied to an order: which rules apply, whether their conditions match, and their actions
(hold, hold for N minutes, release, route to a location, add a tag, raise an exception). Every evaluation is
logged as a RuleRun with each condition's result and what was done — or, on a dry run, what would be.
"""

from datetime import timedelta

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.sync_exceptions import ExceptionKind
from inventory.models import Location
from orders import services as orders
from orders.choices import OrderStatus

from . import conditions, exceptions
from .choices import ActionType
from .models import AutomationRule, RuleRun

MAX_HOLD_MINUTES = 43200  # 30 days: a longer wait is a hold for review, released by a person
MAX_REASON = 200  # the order's hold_reason holds 300 characters, shared by every reason
MAX_TAG = 60
MAX_MESSAGE = 1000
# What each action type stores beside its type (everything else is dropped when it is cleaned).
ACTION_FIELDS = {
    ActionType.HOLD: ("reason",),
    ActionType.HOLD_MINUTES: ("minutes", "reason"),
    ActionType.RELEASE: (),
    ActionType.ROUTE_TO: ("location",),
    ActionType.ADD_TAG: ("tag",),
    ActionType.RAISE_EXCEPTION: ("message",),
}
# Statuses in which an order's routing is still to be decided (afterwards a route_to is too late).
UNROUTED = (OrderStatus.NEW, OrderStatus.ON_HOLD, OrderStatus.READY)


# --- validation -----------------------------------------------------------------------------------------


def shipping_locations(organization):
    """The locations a rule may route to: the organization's active locations that ship orders."""
    return Location.objects.filter(organization=organization, active=True, ships=True)


def _org_id(organization):
    return organization if isinstance(organization, int) else organization.pk


def _text(action, key, limit, *, required, label):
    value = action.get(key)
    value = "" if value is None else str(value).strip()
    if required and not value:
        raise ValidationError(f"{label} is needed.")
    if len(value) > limit:
        raise ValidationError(f"{label} is too long ({len(value)} characters; at most {limit}).")
    return value


def _minutes(value) -> int:
    if isinstance(value, bool):
        value = None  # True is an int to Python, not a number of minutes to a person
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValidationError(f"Minutes must be a whole number; got {value!r}.") from None
    if str(minutes) != str(value).strip() or not 1 <= minutes <= MAX_HOLD_MINUTES:
        raise ValidationError(f"Minutes must be a whole number from 1 to {MAX_HOLD_MINUTES} (30 days).")
    return minutes


def _location(value, organization) -> int:
    location_id = value.pk if isinstance(value, Location) else value
    try:
        location_id = int(str(location_id).strip())
    except (TypeError, ValueError):
        raise ValidationError("Choose the location to route to.") from None
    location = Location.objects.filter(pk=location_id, organization_id=_org_id(organization)).first()
    if location is None:
        raise ValidationError(f"Location {location_id} is not a location of this organization.")
    if not (location.active and location.ships):
        raise ValidationError(f"{location} cannot ship orders (inactive, or not a shipping location).")
    return location.pk


def validate_action(action, organization) -> dict:
    """One action cleaned for storage (only the keys its type uses); ValidationError naming the problem."""
    if not isinstance(action, dict):
        raise ValidationError("An action is an object with a type and that type's fields.")
    kind = action.get("type")
    if kind not in ActionType.values:
        raise ValidationError(f"Unknown action type {kind!r}; one of: {', '.join(ActionType.values)}.")
    cleaned = {"type": kind}
    if kind in (ActionType.HOLD, ActionType.HOLD_MINUTES):
        cleaned["reason"] = _text(action, "reason", MAX_REASON, required=False, label="The reason")
    if kind == ActionType.HOLD_MINUTES:
        cleaned["minutes"] = _minutes(action.get("minutes"))
    elif kind == ActionType.ROUTE_TO:
        cleaned["location"] = _location(action.get("location"), organization)
    elif kind == ActionType.ADD_TAG:
        cleaned["tag"] = _text(action, "tag", MAX_TAG, required=True, label="The tag")
        if "," in cleaned["tag"]:
            raise ValidationError("One tag per action: a tag cannot contain a comma.")
    elif kind == ActionType.RAISE_EXCEPTION:
        cleaned["message"] = _text(action, "message", MAX_MESSAGE, required=True, label="The message")
    return {key: cleaned[key] for key in ("type", *ACTION_FIELDS[ActionType(kind)])}


def validate_actions(actions, organization) -> list[dict]:
    """A rule's actions cleaned for storage; at least one is needed. Errors name the action's position."""
    if not isinstance(actions, list):
        raise ValidationError("Actions are a list.")
    if not actions:
        raise ValidationError("A rule needs at least one action.")
    cleaned = []
    for number, action in enumerate(actions, start=1):
        try:
            cleaned.append(validate_action(action, organization))
        except ValidationError as error:
            raise ValidationError(f"Action {number}: {' '.join(error.messages)}") from None
    return cleaned


def validate_conditions(items) -> list[dict]:
    """Conditions cleaned for storage, a ConditionError turned into a ValidationError for forms."""
    try:
        return conditions.validate_all(items)
    except conditions.ConditionError as error:
        raise ValidationError(str(error)) from None


# --- words for people -----------------------------------------------------------------------------------


def describe_action(action, location_names=None) -> str:
    """An action in words, e.g. "Hold for 30 minutes (fraud check)"; `location_names` maps id → name."""
    kind = action.get("type")
    reason = action.get("reason") or ""
    suffix = f" ({reason})" if reason else ""
    if kind == ActionType.HOLD:
        return f"Hold for review{suffix}"
    if kind == ActionType.HOLD_MINUTES:
        return f"Hold for {action.get('minutes')} minutes{suffix}"
    if kind == ActionType.RELEASE:
        return "Release"
    if kind == ActionType.ROUTE_TO:
        location = action.get("location")
        name = (location_names or {}).get(location)
        return f"Route to {name}" if name else f"Route to location {location}"
    if kind == ActionType.ADD_TAG:
        return f"Add tag “{action.get('tag')}”"
    if kind == ActionType.RAISE_EXCEPTION:
        return f"Raise an exception: {action.get('message')}"
    return str(action)


def location_names(actions_lists) -> dict[int, str]:
    """Names of every location the given action lists route to, in one query."""
    ids = {
        a.get("location")
        for actions in actions_lists
        for a in actions or []
        if isinstance(a, dict) and a.get("type") == ActionType.ROUTE_TO
    }
    ids = {i for i in ids if isinstance(i, int)}
    return dict(Location.objects.filter(pk__in=ids).values_list("pk", "name")) if ids else {}


# --- applying rules -------------------------------------------------------------------------------------


def applicable_rules(order, trigger):
    """The order's organization's active rules for `trigger`, for every channel or the order's, in order."""
    source = Q(source__isnull=True)
    if order.source_id:
        source |= Q(source_id=order.source_id)
    return (
        AutomationRule.objects.filter(organization_id=order.organization_id, active=True, trigger=trigger)
        .filter(source)
        .order_by("position", "pk")
    )


def try_rule(rule, order, facts) -> tuple[bool, list[dict]]:
    """(matched, each condition's result) of one rule on one order's facts."""
    if rule.organization_id != order.organization_id:
        raise ValueError(f"Rule {rule.pk} belongs to another organization than order {order.pk}.")
    return conditions.evaluate(rule.conditions, rule.match, facts)


def apply(order, trigger, *, dry_run=False) -> list[RuleRun]:
    """
    Try each applicable rule on the order (as it is now: the engine passes it locked) and run the actions
    of those that match (on a dry run: only record what would be done). Every evaluation is logged.
    """
    lines = list(order.lines.all())
    facts = conditions.facts(order, lines)
    runs = []
    for rule in applicable_rules(order, trigger):
        matched, results = try_rule(rule, order, facts)
        done = []
        if matched:
            for action in rule.actions:
                if dry_run:
                    done.append(_entry(action, False, f"Would {_verb(action, order)}."))
                    continue
                order, entry = _run_action(rule, order, action)
                done.append(entry)
                if entry["done"] and action.get("type") == ActionType.ADD_TAG:
                    facts = conditions.facts(order, lines)  # later rules see the new tag
        runs.append(
            RuleRun(
                organization_id=order.organization_id,
                rule=rule,
                order=order,
                trigger=trigger,
                matched=matched,
                results=results,
                actions=done,
                dry_run=dry_run,
            )
        )
        if matched and rule.stop_processing:
            break
    return RuleRun.objects.bulk_create(runs)


def dry_run(rule, order) -> RuleRun:
    """Try one rule on an order without changing it; the run is logged as a dry run."""
    order = type(order).objects.select_related("source", "shipping_method").get(pk=order.pk)
    matched, results = try_rule(rule, order, conditions.facts(order))
    if rule.source_id and rule.source_id != order.source_id:
        # The engine never tries a rule on another channel's orders: say so rather than "would hold".
        note = f"Not applied: the rule is for orders from {rule.source}, this one came from {order.source or 'no channel'}."
        actions = [_entry(a, False, note) for a in rule.actions]
        matched = False
    else:
        actions = [_entry(a, False, f"Would {_verb(a, order)}.") for a in rule.actions] if matched else []
    return RuleRun.objects.create(
        organization_id=order.organization_id,
        rule=rule,
        order=order,
        trigger=rule.trigger,
        matched=matched,
        results=results,
        actions=actions,
        dry_run=True,
    )


def _entry(action, done, detail) -> dict:
    return {"type": action.get("type", ""), "done": done, "detail": detail}


def _verb(action, order) -> str:
    text = describe_action(action, location_names([[action]]))
    return text[0].lower() + text[1:]


def _run_action(rule, order, action):
    """(order as it is now, the log entry). An action that cannot apply is logged as not done."""
    kind = action.get("type")
    handler = HANDLERS.get(kind)
    if handler is None:
        return order, _entry(action, False, f"Unknown action type {kind!r}: skipped.")
    try:
        # A savepoint: a refused action leaves nothing half-written, and the rules pass goes on.
        with transaction.atomic():
            order, detail = handler(rule, order, action)
    except (orders.OrderConflict, ValidationError, ObjectDoesNotExist) as error:
        message = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        return order, _entry(action, False, message)
    if detail is None:
        return order, _entry(action, False, "Nothing to do.")
    return order, _entry(action, True, detail)


def _hold(rule, order, action):
    reason = action.get("reason") or f"Held by rule {rule.name}"
    return orders.hold(order, reason, add=True), f"Held: {reason}."


def _hold_minutes(rule, order, action):
    minutes = _minutes(action.get("minutes"))
    until = timezone.now() + timedelta(minutes=minutes)
    reason = action.get("reason") or f"Held by rule {rule.name}"
    order = orders.hold(order, reason, add=True, until=until)
    return order, f"Held for {minutes} minutes: {reason}."


def _release(rule, order, action):
    if order.status == OrderStatus.NEW:
        # A new order has no hold to lift: let it through to routing now.
        # The hold engine routes the orders it lets through itself: no ORDER_READY.
        return orders.make_ready(order, announce=False), "Ready to be routed."
    if order.status != OrderStatus.ON_HOLD:
        raise orders.OrderConflict(f"Order {order} is not on hold ({order.get_status_display().lower()}).")
    return orders.release(order, announce=False), "Released."


def _route_to(rule, order, action):
    if order.status not in UNROUTED:
        raise orders.OrderConflict(f"Order {order} is already {order.get_status_display().lower()}.")
    location = Location.objects.get(pk=action.get("location"), organization_id=order.organization_id)
    if not (location.active and location.ships):
        raise ValidationError(f"{location} cannot ship orders any more.")
    return orders.set_routing_location(order, location), f"Will be routed to {location}."


def _add_tag(rule, order, action):
    tag = str(action.get("tag") or "").strip()
    if not tag:
        raise ValidationError("The tag is empty.")
    if tag in (order.tags or []):
        return order, None
    return orders.add_tags(order, [tag]), f"Tagged “{tag}”."


def _raise_exception(rule, order, action):
    message = str(action.get("message") or f"Raised by rule {rule.name}")
    exceptions.raise_exception(
        order.organization_id,
        ExceptionKind.RULE_RAISED,
        f"Order {order}: {message}",
        integration=order.source,
        entity_type="order",
        entity_id=order.pk,
        data={"rule": rule.pk, "rule_name": rule.name},
    )
    return order, f"Exception raised: {message}"


HANDLERS = {
    ActionType.HOLD: _hold,
    ActionType.HOLD_MINUTES: _hold_minutes,
    ActionType.RELEASE: _release,
    ActionType.ROUTE_TO: _route_to,
    ActionType.ADD_TAG: _add_tag,
    ActionType.RAISE_EXCEPTION: _raise_exception,
}
