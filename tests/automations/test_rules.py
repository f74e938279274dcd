"""Automation rules on an order: conditions of every kind, each action, ordering, scoping and the run log."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from automations import rules
from automations.choices import ActionType, MatchMode, RuleTrigger
from automations.models import RuleRun, SyncException
from core.sync_exceptions import ExceptionKind
from inventory.models import Location
from orders import services as order_services
from orders.choices import OrderStatus
from orders.models import Order

pytestmark = pytest.mark.django_db

TAG = {"type": ActionType.ADD_TAG, "tag": "matched"}


def matched(make_rule, order, conditions, match=MatchMode.ALL):
    """Does one rule with these conditions match the order? (through apply, as the engine runs it)"""
    rule = make_rule("probe", conditions, [TAG], match=match)
    runs = rules.apply(order, RuleTrigger.ORDER_CREATED)
    rule.delete()
    return runs[0].matched


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("eq", "33", True),
        ("eq", "33.00", True),
        ("ne", "33", False),
        ("gt", "32.99", True),
        ("gt", "33", False),
        ("gte", "33", True),
        ("lt", "33", False),
        ("lte", "33", True),
    ],
)
def test_number_operators_on_the_total(make_rule, new_order, operator, value, expected):
    assert (
        matched(make_rule, new_order, [{"field": "total", "operator": operator, "value": value}]) is expected
    )


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("quantity", "eq", "3", True),
        ("line_count", "eq", "2", True),
        ("subtotal", "gte", "33", True),
        ("country", "eq", "us", True),  # case does not matter
        ("country", "ne", "US", False),
        ("country", "in", "CA, US", True),
        ("country", "not_in", "CA, MX", True),
        ("customer_email", "ends_with", "@example.test", True),
        ("customer_email", "starts_with", "bob", False),
        ("customer_email", "contains", "lovelace", False),
        ("customer_email", "not_contains", "lovelace", True),
        ("shipping_method", "eq", "standard", True),  # the hub's code, not the channel's
        ("currency", "eq", "USD", True),
        ("payment_status", "eq", "paid", True),
        ("source", "eq", "Acme web shop", True),
        ("customer_email", "is_not_empty", "", True),
        ("customer_email", "is_empty", "", False),
    ],
)
def test_text_and_number_fields(make_rule, new_order, field, operator, value, expected):
    assert matched(make_rule, new_order, [{"field": field, "operator": operator, "value": value}]) is expected


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("sku", "eq", "MUG", True),
        ("sku", "ne", "MUG", False),
        ("sku", "in", "HAT, MUG", True),
        ("sku", "not_in", "HAT, CAP", True),
        ("sku", "contains", "SHIRT", True),
        ("sku", "starts_with", "TSHIRT", True),
        ("sku", "is_empty", "", False),
        ("tags", "is_empty", "", True),
        ("tags", "eq", "vip", False),
    ],
)
def test_list_fields(make_rule, new_order, field, operator, value, expected):
    assert matched(make_rule, new_order, [{"field": field, "operator": operator, "value": value}]) is expected


def test_tags_of_the_order_are_seen(make_rule, ingest_new, order_body):
    order = ingest_new(order_body, tags=["VIP", "wholesale"])
    assert matched(make_rule, order, [{"field": "tags", "operator": "eq", "value": "vip"}])
    assert not matched(make_rule, order, [{"field": "tags", "operator": "not_in", "value": "wholesale"}])


def test_all_needs_every_condition_any_needs_one(make_rule, new_order):
    conditions = [
        {"field": "country", "operator": "eq", "value": "US"},
        {"field": "total", "operator": "gt", "value": "500"},
    ]
    assert not matched(make_rule, new_order, conditions, MatchMode.ALL)
    assert matched(make_rule, new_order, conditions, MatchMode.ANY)


def test_no_conditions_match_every_order(make_rule, new_order):
    assert matched(make_rule, new_order, [])
    assert matched(make_rule, new_order, [], MatchMode.ANY)


def test_a_broken_stored_condition_never_matches_and_is_logged(make_rule, new_order):
    # Given a condition that was valid once but names a field that no longer exists
    make_rule("broken", [{"field": "weight", "operator": "gt", "value": "1"}], [TAG])
    # When the rules run
    (run,) = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    # Then it did not match, the engine went on, and the log says which condition failed
    assert run.matched is False
    assert run.results[0]["matched"] is False


def test_run_log_records_each_condition_with_the_orders_value(big_order_rule, new_order):
    (run,) = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    run.refresh_from_db()
    assert (run.rule, run.order, run.trigger, run.matched, run.dry_run) == (
        big_order_rule,
        new_order,
        "order.created",
        False,
        False,
    )
    assert run.results == [
        {"field": "total", "operator": "gt", "value": "500", "actual": "33.00", "matched": False}
    ]
    assert run.actions == []
    assert run.organization_id == new_order.organization_id


# --- actions --------------------------------------------------------------------------------------------


def test_hold_action_holds_with_its_reason(make_rule, new_order):
    make_rule("review", [], [{"type": ActionType.HOLD, "reason": "fraud check"}])
    (run,) = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    new_order.refresh_from_db()
    assert (new_order.status, new_order.hold_reason, new_order.hold_until) == ("on_hold", "fraud check", None)
    assert run.actions == [{"type": "hold", "done": True, "detail": "Held: fraud check."}]


def test_hold_without_reason_names_the_rule(make_rule, new_order):
    make_rule("Night orders", [], [{"type": ActionType.HOLD, "reason": ""}])
    rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    new_order.refresh_from_db()
    assert new_order.hold_reason == "Held by rule Night orders"


def test_hold_minutes_sets_the_release_time(make_rule, new_order):
    make_rule("wait", [], [{"type": ActionType.HOLD_MINUTES, "minutes": 30, "reason": "cool-off"}])
    rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.ON_HOLD
    remaining = (new_order.hold_until - new_order.updated_at).total_seconds()
    assert 29 * 60 < remaining <= 30 * 60


def test_two_hold_rules_keep_both_reasons(make_rule, new_order):
    make_rule("a", [], [{"type": ActionType.HOLD, "reason": "fraud check"}], position=1)
    make_rule("b", [], [{"type": ActionType.HOLD_MINUTES, "minutes": 10, "reason": "cool-off"}], position=2)
    rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    new_order.refresh_from_db()
    # The open-ended review outlasts the timed hold.
    assert (new_order.hold_reason, new_order.hold_until) == ("fraud check; cool-off", None)


def test_release_action_releases_a_held_order(make_rule, new_order):
    held = order_services.hold(new_order, "manual check")
    make_rule("release", [], [{"type": ActionType.RELEASE}], trigger=RuleTrigger.ORDER_UPDATED)
    (run,) = rules.apply(held, RuleTrigger.ORDER_UPDATED)
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY
    assert run.actions[0]["done"] is True


def test_release_refused_for_unmapped_order_is_logged_not_raised(make_rule, ingest_new, order_body):
    # Given an order held by ingest for an unmapped SKU
    order = ingest_new(order_body, lines=[{"sku": "NOPE", "quantity": 1}])
    assert order.status == OrderStatus.ON_HOLD
    make_rule("release", [], [{"type": ActionType.RELEASE}])
    # When a rule tries to release it
    (run,) = rules.apply(order, RuleTrigger.ORDER_CREATED)
    # Then it stays held and the log says why
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert run.actions[0]["done"] is False
    assert "unmapped SKU NOPE" in run.actions[0]["detail"]


def test_release_of_a_ready_order_is_not_done(make_rule, new_order):
    ready = order_services.make_ready(new_order)
    make_rule("release", [], [{"type": ActionType.RELEASE}], trigger=RuleTrigger.ORDER_UPDATED)
    (run,) = rules.apply(ready, RuleTrigger.ORDER_UPDATED)
    assert run.actions[0]["done"] is False
    assert "not on hold" in run.actions[0]["detail"]


def test_route_to_sets_the_routing_location(make_rule, new_order, warehouse):
    make_rule("east", [], [{"type": ActionType.ROUTE_TO, "location": warehouse.pk}])
    (run,) = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    new_order.refresh_from_db()
    assert new_order.routing_location == warehouse
    assert run.actions == [{"type": "route_to", "done": True, "detail": "Will be routed to East."}]


def test_route_to_a_location_gone_or_not_shipping_is_logged(make_rule, new_order, warehouse):
    rule = make_rule("east", [], [{"type": ActionType.ROUTE_TO, "location": warehouse.pk}])
    Location.objects.filter(pk=warehouse.pk).update(ships=False)
    (run,) = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    assert run.actions[0]["done"] is False and "cannot ship" in run.actions[0]["detail"]
    rule.actions = [{"type": ActionType.ROUTE_TO, "location": 999999}]
    rule.save()
    (run,) = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    assert run.actions[0]["done"] is False
    new_order.refresh_from_db()
    assert new_order.routing_location is None


def test_route_to_an_order_already_routed_is_not_done(make_rule, new_order, warehouse, stock):
    order_services.make_ready(new_order)
    order_services.create_shipping_request(new_order, warehouse)
    make_rule("east", [], [{"type": ActionType.ROUTE_TO, "location": warehouse.pk}])
    (run,) = rules.apply(Order.objects.get(pk=new_order.pk), RuleTrigger.ORDER_CREATED)
    assert run.actions[0]["done"] is False
    assert "sent to fulfillment" in run.actions[0]["detail"]


def test_add_tag_is_seen_by_later_rules(make_rule, new_order):
    # Given a rule that tags, and a later one that holds tagged orders
    make_rule("tag", [], [{"type": ActionType.ADD_TAG, "tag": "vip"}], position=1)
    make_rule("hold vip", [{"field": "tags", "operator": "eq", "value": "vip"}], position=2)
    # When the rules run
    first, second = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    # Then the second rule saw the tag the first added
    new_order.refresh_from_db()
    assert new_order.tags == ["vip"]
    assert (first.matched, second.matched) == (True, True)
    assert new_order.status == OrderStatus.ON_HOLD


def test_add_tag_already_there_is_not_done(make_rule, ingest_new, order_body):
    order = ingest_new(order_body, tags=["vip"])
    make_rule("tag", [], [{"type": ActionType.ADD_TAG, "tag": "vip"}])
    (run,) = rules.apply(order, RuleTrigger.ORDER_CREATED)
    assert run.actions == [{"type": "add_tag", "done": False, "detail": "Nothing to do."}]


def test_raise_exception_action(make_rule, new_order, integration):
    rule = make_rule("call", [], [{"type": ActionType.RAISE_EXCEPTION, "message": "Call the customer."}])
    rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    exception = SyncException.objects.get(kind=ExceptionKind.RULE_RAISED)
    assert (exception.integration, exception.entity_type, exception.entity_id) == (
        integration,
        "order",
        str(new_order.pk),
    )
    assert "Call the customer." in exception.message
    assert exception.data["rule"] == rule.pk


def test_actions_run_in_order(make_rule, new_order):
    make_rule(
        "several",
        [],
        [
            {"type": ActionType.ADD_TAG, "tag": "a"},
            {"type": ActionType.ADD_TAG, "tag": "b"},
            {"type": ActionType.HOLD, "reason": "r"},
        ],
    )
    (run,) = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    new_order.refresh_from_db()
    assert new_order.tags == ["a", "b"]
    assert [a["type"] for a in run.actions] == ["add_tag", "add_tag", "hold"]


# --- which rules, in what order ----------------------------------------------------------------------------


def test_rules_run_by_position_and_stop_processing_ends_the_pass(make_rule, new_order):
    third = make_rule("third", [], [{"type": ActionType.ADD_TAG, "tag": "3"}], position=30)
    first = make_rule("first", [], [{"type": ActionType.ADD_TAG, "tag": "1"}], position=10)
    second = make_rule("second", [], [{"type": ActionType.ADD_TAG, "tag": "2"}], position=20)
    assert [r.name for r in rules.applicable_rules(new_order, RuleTrigger.ORDER_CREATED)] == [
        "first",
        "second",
        "third",
    ]
    second.stop_processing = True
    second.save()
    runs = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    assert [run.rule for run in runs] == [first, second]
    new_order.refresh_from_db()
    assert new_order.tags == ["1", "2"]
    assert not RuleRun.objects.filter(rule=third).exists()


def test_stop_processing_only_when_the_rule_matched(make_rule, new_order):
    make_rule(
        "no match", [{"field": "total", "operator": "gt", "value": "500"}], position=1, stop_processing=True
    )
    make_rule("later", [], [TAG], position=2)
    runs = rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    assert [run.matched for run in runs] == [False, True]


def test_source_restricted_rules(make_rule, new_order, integration, org, channel_connector, make_integration):
    other_channel = make_integration(org, channel_connector, "Marketplace")
    mine = make_rule("mine", [], [TAG], source=integration)
    make_rule("theirs", [], [TAG], source=other_channel)
    everyone = make_rule("everyone", [], [TAG])
    assert list(rules.applicable_rules(new_order, RuleTrigger.ORDER_CREATED)) == [mine, everyone]


def test_inactive_rules_and_other_triggers_do_not_apply(make_rule, new_order):
    make_rule("off", [], [TAG], active=False)
    make_rule("updates", [], [TAG], trigger=RuleTrigger.ORDER_UPDATED)
    assert rules.apply(new_order, RuleTrigger.ORDER_CREATED) == []


def test_another_organizations_rule_never_applies(make_rule, new_order, other_org):
    make_rule("globex", [], [{"type": ActionType.HOLD, "reason": "x"}], organization=other_org)
    assert rules.apply(new_order, RuleTrigger.ORDER_CREATED) == []
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.NEW


def test_try_rule_refuses_another_organizations_rule(make_rule, new_order, other_org):
    rule = make_rule("globex", [], organization=other_org)
    with pytest.raises(ValueError, match="another organization"):
        rules.try_rule(rule, new_order, {})


def test_applicable_rules_is_one_query(make_rule, new_order, django_assert_num_queries):
    for n in range(5):
        make_rule(f"r{n}", [], [TAG])
    with django_assert_num_queries(1):
        assert len(list(rules.applicable_rules(new_order, RuleTrigger.ORDER_CREATED))) == 5


def test_dry_run_apply_records_what_would_be_done_and_changes_nothing(make_rule, new_order, warehouse):
    make_rule(
        "everything",
        [],
        [
            {"type": ActionType.HOLD, "reason": "review"},
            {"type": ActionType.ROUTE_TO, "location": warehouse.pk},
            {"type": ActionType.ADD_TAG, "tag": "x"},
        ],
    )
    (run,) = rules.apply(new_order, RuleTrigger.ORDER_CREATED, dry_run=True)
    new_order.refresh_from_db()
    assert (new_order.status, new_order.tags, new_order.routing_location) == ("new", [], None)
    assert run.dry_run is True
    assert [a["detail"] for a in run.actions] == [
        "Would hold for review (review).",
        "Would route to East.",
        "Would add tag “x”.",
    ]
    assert not any(a["done"] for a in run.actions)


# --- validation ---------------------------------------------------------------------------------------------


def test_validate_actions_cleans_each_type(org, warehouse):
    cleaned = rules.validate_actions(
        [
            {"type": "hold", "reason": "  review  ", "minutes": 5},
            {"type": "hold_minutes", "minutes": "30"},
            {"type": "release", "tag": "ignored"},
            {"type": "route_to", "location": str(warehouse.pk)},
            {"type": "add_tag", "tag": " vip "},
            {"type": "raise_exception", "message": "Call them"},
        ],
        org,
    )
    assert cleaned == [
        {"type": "hold", "reason": "review"},
        {"type": "hold_minutes", "minutes": 30, "reason": ""},
        {"type": "release"},
        {"type": "route_to", "location": warehouse.pk},
        {"type": "add_tag", "tag": "vip"},
        {"type": "raise_exception", "message": "Call them"},
    ]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"type": "teleport"}, "Unknown action type 'teleport'"),
        ({"type": "hold_minutes"}, "whole number"),
        ({"type": "hold_minutes", "minutes": 0}, "from 1 to 43200"),
        ({"type": "hold_minutes", "minutes": 43201}, "from 1 to 43200"),
        ({"type": "hold_minutes", "minutes": "1.5"}, "whole number"),
        ({"type": "hold_minutes", "minutes": True}, "whole number"),
        ({"type": "add_tag", "tag": "  "}, "The tag is needed"),
        ({"type": "add_tag", "tag": "a,b"}, "comma"),
        ({"type": "raise_exception"}, "The message is needed"),
        ({"type": "hold", "reason": "x" * 201}, "too long"),
        ({"type": "route_to"}, "Choose the location"),
        ("hold", "An action is an object"),
    ],
)
def test_validate_actions_refuses_bad_input(org, action, message):
    with pytest.raises(ValidationError, match=message) as error:
        rules.validate_actions([{"type": "release"}, action], org)
    assert error.value.messages[0].startswith("Action 2:")


def test_validate_actions_refuses_another_orgs_or_non_shipping_location(org, other_org, warehouse):
    theirs = Location.objects.create(organization=other_org, name="Globex DC")
    with pytest.raises(ValidationError, match="not a location of this organization"):
        rules.validate_actions([{"type": "route_to", "location": theirs.pk}], org)
    store = Location.objects.create(organization=org, name="Store", ships=False)
    with pytest.raises(ValidationError, match="cannot ship orders"):
        rules.validate_actions([{"type": "route_to", "location": store.pk}], org)


def test_validate_actions_needs_at_least_one(org):
    with pytest.raises(ValidationError, match="at least one action"):
        rules.validate_actions([], org)
    with pytest.raises(ValidationError, match="a list"):
        rules.validate_actions({"type": "hold"}, org)


def test_validate_conditions_gives_a_validation_error():
    assert rules.validate_conditions([{"field": "total", "operator": "gt", "value": " 500 "}]) == [
        {"field": "total", "operator": "gt", "value": "500"}
    ]
    with pytest.raises(ValidationError, match="cannot use 'contains'"):
        rules.validate_conditions([{"field": "total", "operator": "contains", "value": "5"}])


def test_describe_action():
    assert rules.describe_action({"type": "hold_minutes", "minutes": 15, "reason": "x"}) == (
        "Hold for 15 minutes (x)"
    )
    assert rules.describe_action({"type": "route_to", "location": 3}, {3: "East"}) == "Route to East"
    assert rules.describe_action({"type": "release"}) == "Release"


def test_decimal_facts_are_logged_as_text(make_rule, ingest_new, order_body):
    order = ingest_new(order_body, total="600.50")
    make_rule("big", [{"field": "total", "operator": "gt", "value": "500"}])
    (run,) = rules.apply(order, RuleTrigger.ORDER_CREATED)
    assert run.results[0]["actual"] == "600.50"
    assert Decimal(run.results[0]["actual"]) > 500


def test_a_dry_run_of_another_channels_rule_says_it_would_not_apply(
    make_rule, new_order, org, channel_connector, make_integration
):
    outlet = make_integration(org, channel_connector, "Outlet shop")
    rule = make_rule("Outlet only", [], [{"type": ActionType.HOLD, "reason": "outlet"}], source=outlet)

    run = rules.dry_run(rule, new_order)

    assert run.matched is False and run.dry_run is True
    assert run.actions == [
        {"type": "hold", "done": False, "detail": run.actions[0]["detail"]},
    ]
    assert "Not applied: the rule is for orders from Outlet shop" in run.actions[0]["detail"]
    assert Order.objects.get(pk=new_order.pk).status == OrderStatus.NEW
