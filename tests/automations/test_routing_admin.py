"""The routing-card admin: cards in order, conditions as rows, locations limited to the org's shipping ones."""

import pytest
from django.urls import reverse

from automations.models import RoutingRule
from inventory.models import Location

CHANGELIST = reverse("admin:automations_routingrule_changelist")
ADD = reverse("admin:automations_routingrule_add")


def change_url(rule):
    return reverse("admin:automations_routingrule_change", args=[rule.pk])


@pytest.fixture
def acme_client(admin_client_for, org_admin):
    return admin_client_for(org_admin)


def card_post(org, *, conditions=(), locations=(), **fields):
    """The add form as the browser posts it: conditions rows and the location inline."""
    data = {
        "organization": org.pk,
        "name": "Canada",
        "match": "all",
        "allow_split": "",
        "position": 10,
        "active": "on",
        "conditions-TOTAL_FORMS": len(conditions),
        "conditions-INITIAL_FORMS": 0,
        "preferences-TOTAL_FORMS": len(locations),
        "preferences-INITIAL_FORMS": 0,
        **fields,
    }
    for index, (field, operator, value) in enumerate(conditions):
        data |= {
            f"conditions-{index}-field": field,
            f"conditions-{index}-operator": operator,
            f"conditions-{index}-value": value,
        }
    for index, location in enumerate(locations):
        data |= {f"preferences-{index}-location": location.pk, f"preferences-{index}-position": index}
    return data


def test_changelist_shows_cards_in_order_and_explains_the_default_card(
    acme_client, org, warehouse, west, card, other_org
):
    card("Big orders", [west, warehouse], [{"field": "total", "operator": "gt", "value": "500"}], position=2)
    card("Canada", [warehouse], [{"field": "country", "operator": "eq", "value": "CA"}], position=1)
    card("Anything", [], [], allow_split=True, position=3)
    RoutingRule.objects.create(organization=other_org, name="Globex secret card")

    page = acme_client.get(CHANGELIST)

    text = page.content.decode()
    assert page.status_code == 200
    assert text.index("Canada") < text.index("Big orders") < text.index("Anything")
    assert "Order total is more than 500" in text
    assert "West → East" in text
    assert "Every shipping location, by priority" in text
    assert "Split allowed" in text and "One location" in text
    assert "the default card applies" in text
    assert "Default card now: East, West; split allowed." in text
    assert "Globex secret card" not in text


def test_changelist_query_count_does_not_grow_with_cards(
    acme_client, org, warehouse, west, card, django_assert_max_num_queries
):
    for n in range(15):
        card(f"Card {n}", [west, warehouse], [{"field": "country", "operator": "eq", "value": "CA"}])

    with django_assert_max_num_queries(16):
        page = acme_client.get(CHANGELIST)

    assert page.status_code == 200
    assert page.content.decode().count("West → East") == 15


def test_another_organizations_card_is_404(acme_client, other_org):
    foreign = RoutingRule.objects.create(organization=other_org, name="Globex card")

    assert acme_client.get(change_url(foreign)).status_code == 404
    assert acme_client.post(change_url(foreign), {"name": "mine now"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.name == "Globex card"


def test_add_a_card_with_condition_rows_and_locations_in_order(acme_client, org, warehouse, west):
    response = acme_client.post(
        ADD,
        card_post(
            org,
            conditions=[("country", "in", "CA, MX"), ("total", "gte", "100")],
            locations=[west, warehouse],
            allow_split="on",
        ),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    rule = RoutingRule.objects.get(name="Canada")
    assert rule.organization == org
    assert rule.conditions == [
        {"field": "country", "operator": "in", "value": ["CA", "MX"]},
        {"field": "total", "operator": "gte", "value": "100"},
    ]
    assert rule.allow_split is True
    assert [p.location.name for p in rule.preferences.order_by("position")] == ["West", "East"]


def test_a_wrong_condition_is_shown_beside_its_row_and_nothing_is_saved(acme_client, org, warehouse):
    response = acme_client.post(
        ADD, card_post(org, conditions=[("total", "gt", "lots")], locations=[warehouse])
    )

    assert response.status_code == 200
    assert "&#x27;lots&#x27; is not a number." in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_another_organizations_location_cannot_be_listed(acme_client, org, other_org, warehouse):
    foreign = Location.objects.create(organization=other_org, name="Globex DC")

    response = acme_client.post(ADD, card_post(org, locations=[warehouse, foreign]))

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_a_superuser_cannot_mix_organizations_on_a_card(
    admin_client_for, superuser, org, other_org, warehouse
):
    foreign = Location.objects.create(organization=other_org, name="Globex DC")

    response = admin_client_for(superuser).post(ADD, card_post(org, locations=[warehouse, foreign]))

    assert response.status_code == 200
    assert "This location belongs to another organization." in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_location_choices_are_the_orgs_shipping_locations(acme_client, org, other_org, warehouse, west, card):
    Location.objects.create(organization=org, name="Returns desk", ships=False)
    Location.objects.create(organization=org, name="Closed site", active=False)
    Location.objects.create(organization=other_org, name="Globex DC")
    rule = card("Canada", [west], [])

    page = acme_client.get(change_url(rule))

    choices = page.content.decode()
    assert page.status_code == 200
    assert "East" in choices and "West" in choices
    for hidden in ("Returns desk", "Closed site", "Globex DC"):
        assert hidden not in choices
    # the stored conditions come back as rows, not JSON
    assert 'name="conditions-TOTAL_FORMS"' in choices


def test_position_is_editable_from_the_list(acme_client, org, card):
    first, second = card("First", position=1), card("Second", position=2)

    response = acme_client.post(
        CHANGELIST,
        {
            "form-TOTAL_FORMS": 2,
            "form-INITIAL_FORMS": 2,
            "form-0-id": first.pk,
            "form-0-position": 5,
            "form-1-id": second.pk,
            "form-1-position": 2,
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    first.refresh_from_db()
    assert first.position == 5
