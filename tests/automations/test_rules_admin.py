"""The automation rules admin: rows instead of JSON, validation before saving, dry run, run log, scoping."""

import pytest
from django.urls import reverse

from automations import rules
from automations.choices import ActionType, RuleTrigger
from automations.engines import hold
from automations.models import AutomationRule, RuleRun
from inventory.models import Location
from orders.choices import OrderStatus

pytestmark = pytest.mark.django_db

ADD = reverse("admin:automations_automationrule_add")
CHANGELIST = reverse("admin:automations_automationrule_changelist")
RUNS = reverse("admin:automations_rulerun_changelist")


def change_url(rule):
    return reverse("admin:automations_automationrule_change", args=[rule.pk])


def dry_run_url(rule):
    return reverse("admin:automations_automationrule_dry_run", args=[rule.pk])


def rows(prefix, items, *, initial=0, extra=1):
    """Formset POST data: `items` as rows (dicts of field → value), plus `extra` blank rows."""
    data = {f"{prefix}-TOTAL_FORMS": str(len(items) + extra), f"{prefix}-INITIAL_FORMS": str(initial)}
    for number, item in enumerate(items):
        data.update({f"{prefix}-{number}-{key}": value for key, value in item.items()})
    return data


def rule_post(org, conditions, actions, **fields):
    return {
        "organization": org.pk,
        "name": "Big orders",
        "source": "",
        "trigger": RuleTrigger.ORDER_CREATED,
        "match": "all",
        "position": "10",
        "active": "on",
        **fields,
        **rows("conditions", conditions),
        **rows("actions", actions),
    }


@pytest.fixture
def acme_client(admin_client_for, org_admin):
    return admin_client_for(org_admin)


def test_create_total_over_500_hold_for_review_through_the_form(acme_client, org, ingest_new, order_body):
    # Given the org admin fills the form: one condition row and one action row, no JSON
    data = rule_post(
        org,
        [{"field": "total", "operator": "gt", "value": "500"}],
        [{"type": "hold", "reason": "review"}],
    )
    # When they save it
    response = acme_client.post(ADD, data)
    # Then the rule is stored in the engines' format
    assert response.status_code == 302, response.content.decode()[:3000]
    rule = AutomationRule.objects.get()
    assert (rule.organization, rule.name, rule.position, rule.active) == (org, "Big orders", 10, True)
    assert rule.conditions == [{"field": "total", "operator": "gt", "value": "500"}]
    assert rule.actions == [{"type": "hold", "reason": "review"}]
    # And it holds a big order the engine processes
    order = ingest_new(order_body, total="650")
    hold.process_order(order.pk, trigger=RuleTrigger.ORDER_CREATED)
    order.refresh_from_db()
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, "review")


def test_the_add_page_renders_rows_with_the_fields_labels(acme_client, org, warehouse):
    html = acme_client.get(ADD).content.decode()
    assert 'name="conditions-TOTAL_FORMS"' in html and 'name="actions-TOTAL_FORMS"' in html
    assert ">Order total</option>" in html and ">is one of</option>" in html
    assert ">Hold for N minutes</option>" in html
    assert f'<option value="{warehouse.pk}">' in html
    assert f'<option value="{org.pk}" selected>' in html  # their one organization, preselected


def test_change_round_trip_keeps_and_edits_rows(acme_client, org, make_rule, warehouse):
    rule = make_rule(
        "Canada",
        [{"field": "country", "operator": "in", "value": ["CA", "US"]}],
        [{"type": ActionType.ROUTE_TO, "location": warehouse.pk}],
    )
    page = acme_client.get(change_url(rule)).content.decode()
    assert 'value="CA, US"' in page
    assert f'<option value="{warehouse.pk}" selected>' in page
    # When the admin adds a second action and posts the first rows unchanged
    data = {
        "name": "Canada",
        "source": "",
        "trigger": RuleTrigger.ORDER_CREATED,
        "match": "any",
        "position": "5",
        "active": "on",
        **rows("conditions", [{"field": "country", "operator": "in", "value": "CA, US"}], initial=1),
        **rows(
            "actions",
            [{"type": "route_to", "location": warehouse.pk}, {"type": "add_tag", "tag": "north"}],
            initial=1,
        ),
    }
    response = acme_client.post(change_url(rule), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    rule.refresh_from_db()
    assert rule.conditions == [{"field": "country", "operator": "in", "value": ["CA", "US"]}]
    assert rule.actions == [
        {"type": "route_to", "location": warehouse.pk},
        {"type": "add_tag", "tag": "north"},
    ]
    assert (rule.match, rule.position) == ("any", 5)


def test_deleting_a_row(acme_client, org, make_rule):
    rule = make_rule(
        "two",
        [
            {"field": "total", "operator": "gt", "value": "1"},
            {"field": "country", "operator": "eq", "value": "US"},
        ],
    )
    data = {
        "name": "two",
        "source": "",
        "trigger": RuleTrigger.ORDER_CREATED,
        "match": "all",
        "position": "1",
        "active": "on",
        **rows(
            "conditions",
            [
                {"field": "total", "operator": "gt", "value": "1", "DELETE": "on"},
                {"field": "country", "operator": "eq", "value": "US"},
            ],
            initial=2,
        ),
        **rows("actions", [{"type": "hold", "reason": ""}], initial=1),
    }
    assert acme_client.post(change_url(rule), data).status_code == 302
    rule.refresh_from_db()
    assert rule.conditions == [{"field": "country", "operator": "eq", "value": "US"}]


@pytest.mark.parametrize(
    ("conditions", "actions", "error"),
    [
        ([{"field": "total", "operator": "contains", "value": "5"}], [{"type": "hold"}], "cannot use"),
        ([{"field": "total", "operator": "gt", "value": "lots"}], [{"type": "hold"}], "is not a number"),
        ([{"field": "country", "operator": "eq", "value": ""}], [{"type": "hold"}], "a value is needed"),
        ([{"field": "", "operator": "eq", "value": "US"}], [{"type": "hold"}], "Choose a field"),
        ([], [], "A rule needs at least one action."),
        ([], [{"type": "hold_minutes", "minutes": ""}], "whole number"),
        ([], [{"type": "hold_minutes", "minutes": "0"}], "greater than or equal to 1"),
        ([], [{"type": "add_tag", "tag": ""}], "The tag is needed"),
        ([], [{"type": "raise_exception"}], "The message is needed"),
        ([], [{"type": "route_to"}], "Choose the location"),
        ([], [{"reason": "no type"}], "Choose what the action does"),
    ],
)
def test_invalid_rows_show_their_error_and_nothing_is_saved(acme_client, org, conditions, actions, error):
    response = acme_client.post(ADD, rule_post(org, conditions, actions))
    assert response.status_code == 200
    html = response.content.decode()
    assert error in html
    assert "fix the conditions or actions marked below" in html
    assert not AutomationRule.objects.exists()


def test_another_orgs_location_cannot_be_chosen(acme_client, org, other_org):
    theirs = Location.objects.create(organization=other_org, name="Globex DC")
    response = acme_client.post(ADD, rule_post(org, [], [{"type": "route_to", "location": theirs.pk}]))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not AutomationRule.objects.exists()


def test_a_superuser_cannot_route_to_another_organizations_location(client, superuser, org, other_org):
    # Given a superuser, whose location choices span every organization
    theirs = Location.objects.create(organization=other_org, name="Globex DC")
    client.force_login(superuser)
    # When the rule of one organization names another's location
    response = client.post(ADD, rule_post(org, [], [{"type": "route_to", "location": theirs.pk}]))
    # Then the row says so and nothing is saved
    assert response.status_code == 200
    assert "not a location of this organization" in response.content.decode()
    assert not AutomationRule.objects.exists()


def test_another_orgs_channel_cannot_be_the_source(acme_client, superuser, client, org, other_integration):
    client.force_login(superuser)
    response = client.post(ADD, rule_post(org, [], [{"type": "hold"}], source=other_integration.pk))
    assert response.status_code == 200
    assert "must all belong to the same organization" in response.content.decode()


def test_another_orgs_rule_is_404(acme_client, make_rule, other_org):
    theirs = make_rule("Globex", organization=other_org)
    assert acme_client.get(change_url(theirs)).status_code == 404
    assert acme_client.get(dry_run_url(theirs)).status_code == 404
    assert acme_client.post(dry_run_url(theirs), {"order": "1"}).status_code == 404
    assert "Globex" not in acme_client.get(CHANGELIST).content.decode()


def test_changelist_shows_rules_in_words_with_bounded_queries(
    acme_client, make_rule, warehouse, new_order, django_assert_max_num_queries
):
    # Given 30 rules, each routing to a location, with runs
    for n in range(30):
        make_rule(
            f"Rule {n}",
            [{"field": "country", "operator": "eq", "value": "US"}],
            [
                {"type": ActionType.ROUTE_TO, "location": warehouse.pk},
                {"type": ActionType.ADD_TAG, "tag": "t"},
            ],
            position=n,
        )
    rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    # When the changelist is opened, then the number of queries does not grow with the rules
    with django_assert_max_num_queries(11):  # 10 measured, for 3 rules as for 30
        response = acme_client.get(CHANGELIST)
    html = response.content.decode()
    assert html.count("Route to East; Add tag “t”") == 30
    assert "Ship-to country is US" in html
    assert 'class="field-matches_7d">1<' in html


def test_list_edits_position_and_active(acme_client, make_rule):
    rule = make_rule("r", position=1)
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": rule.pk,
        "form-0-position": "7",
        "_save": "Save",
    }
    assert acme_client.post(CHANGELIST, data).status_code == 302
    rule.refresh_from_db()
    assert (rule.position, rule.active) == (7, False)


def test_dry_run_page_shows_each_condition_and_changes_nothing(
    acme_client, make_rule, ingest_new, order_body
):
    # Given a rule and an order it matches
    rule = make_rule(
        "Big US orders",
        [
            {"field": "total", "operator": "gt", "value": "500"},
            {"field": "country", "operator": "eq", "value": "US"},
        ],
        [{"type": ActionType.HOLD, "reason": "review"}],
    )
    order = ingest_new(order_body, total="650")
    assert "Dry run on an order" in acme_client.get(change_url(rule)).content.decode()
    assert acme_client.get(dry_run_url(rule)).status_code == 200
    # When the admin tries it by the order's number
    response = acme_client.post(dry_run_url(rule), {"order": "#1001"})
    # Then each condition, the order's value and the actions that would run are shown
    html = response.content.decode()
    assert "the rule matches" in html
    assert "Order total is more than 500" in html and "650.00" in html
    assert "Would hold for review (review)." in html
    # And the run is logged as a dry run; the order is unchanged
    run = RuleRun.objects.get()
    assert (run.dry_run, run.matched, run.order) == (True, True, order)
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW
    # And it is listed on the rule's page
    assert "dry run" in acme_client.get(change_url(rule)).content.decode()


def test_dry_run_by_id_and_no_match(acme_client, make_rule, new_order):
    rule = make_rule("Big", [{"field": "total", "operator": "gt", "value": "500"}])
    html = acme_client.post(dry_run_url(rule), {"order": str(new_order.pk)}).content.decode()
    assert "the rule does not match" in html and "33.00" in html


def test_dry_run_refuses_another_orgs_order(acme_client, make_rule, other_integration):
    from orders import services as order_services

    theirs, _ = order_services.ingest_order(
        other_integration, {"external_id": "G1", "number": "#G1", "lines": [{"sku": "X", "quantity": 1}]}
    )
    rule = make_rule("Any")
    html = acme_client.post(dry_run_url(rule), {"order": str(theirs.pk)}).content.decode()
    assert "No order" in html
    assert not RuleRun.objects.exists()


def test_a_member_cannot_dry_run(admin_client_for, member, make_rule):
    rule = make_rule("r")
    client = admin_client_for(member)
    assert client.post(dry_run_url(rule), {"order": "1"}).status_code == 404  # not in their scope
    assert not RuleRun.objects.exists()


def test_run_log_is_scoped_and_filterable(
    acme_client, make_rule, new_order, other_org, django_assert_max_num_queries
):
    rule = make_rule("Mine")
    theirs = make_rule("Globex rule", organization=other_org)
    RuleRun.objects.create(organization=other_org, rule=theirs, trigger="order.created", matched=True)
    for _ in range(5):
        rules.apply(new_order, RuleTrigger.ORDER_CREATED)
    with django_assert_max_num_queries(12):
        html = acme_client.get(RUNS).content.decode()
    assert html.count('class="field-rule nowrap">Mine<') == 5
    assert "Globex rule" not in html
    filtered = acme_client.get(f"{RUNS}?rule__id__exact={rule.pk}&matched__exact=1&dry_run__exact=1")
    assert "0 rule runs" in filtered.content.decode()
    other = RuleRun.objects.get(rule=theirs)
    assert acme_client.get(reverse("admin:automations_rulerun_change", args=[other.pk])).status_code == 404
    mine = RuleRun.objects.filter(rule=rule).first()
    detail = acme_client.get(reverse("admin:automations_rulerun_change", args=[mine.pk])).content.decode()
    assert "No conditions." in detail and "Held: Held by rule Mine." in detail
