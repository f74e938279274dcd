"""
Tenancy through the models' managers (organizations/scoping.py): `Model.objects.restrict(user, action)` and
`Model.objects.tenancy.allows(user, action, obj)`. A user of one organization never reaches another's rows
through them, whatever the action; members reach only what is granted on an integration.
"""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import models
from guardian.shortcuts import assign_perm

from integrations.models import Connector, Integration, IntegrationEvent, WebhookDelivery
from inventory.models import InventoryLevel, Location, Product
from organizations.models import Membership, Organization
from organizations.scoping import RestrictedQuerySet, restricted
from tests.fixtures.organizations import join, make_user
from tokens.models import ApiKey

ACTIONS = ["view", "change", "add", "delete", "manage_keys"]


@pytest.fixture
def two_orgs(org, other_org, org_admin, other_admin, integration, other_integration):
    """Each organization with an integration, an event, a product, a location with stock and a key."""
    for owner, integ in ((org, integration), (other_org, other_integration)):
        IntegrationEvent.objects.create(
            organization=owner, integration=integ, integration_name=integ.name, kind="created", message="x"
        )
        product = Product.objects.create(organization=owner, sku=f"SKU-{owner.slug}", name="Mug")
        location = Location.objects.create(organization=owner, name=f"{owner.slug} store", managed_by=integ)
        InventoryLevel.objects.create(product=product, location=location, on_hand=3)
    return org, other_org


def org_ids_of(queryset, path):
    return set(queryset.values_list(path, flat=True))


# Models and the lookup path to their organization, across the layers that declare a tenancy.
MODELS = [
    (Organization, "pk"),
    (Membership, "organization_id"),
    (Integration, "organization_id"),
    (IntegrationEvent, "organization_id"),
    (Product, "organization_id"),
    (Location, "organization_id"),
    (InventoryLevel, "product__organization_id"),
]


def test_the_models_under_test_are_restricted():
    assert MODELS
    for model, _ in MODELS:
        assert isinstance(model.objects.all(), RestrictedQuerySet), model


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(("model", "path"), MODELS, ids=[m.__name__ for m, _ in MODELS])
def test_an_org_admin_reaches_only_their_organizations_rows(two_orgs, org_admin, model, path, action):
    org, other_org = two_orgs
    assert model.objects.filter(**{path: other_org.pk}).exists()

    reached = org_ids_of(model.objects.restrict(org_admin, action), path)

    assert reached == {org.pk}
    for row in model.objects.all():
        row_org = row.pk if model is Organization else model.objects.tenancy.organization_id_of(row)
        assert model.objects.tenancy.allows(org_admin, action, row) == (row_org == org.pk)


@pytest.mark.parametrize(("model", "path"), MODELS, ids=[m.__name__ for m, _ in MODELS])
def test_a_superuser_reaches_every_row_and_nobody_reaches_none(two_orgs, superuser, model, path):
    assert model.objects.restrict(superuser, "change").count() == model.objects.count() > 0
    assert not model.objects.restrict(AnonymousUser(), "view").exists()
    assert not model.objects.restrict(make_user("nobody"), "view").exists()


def test_a_member_reaches_only_what_is_granted_on_an_integration(
    two_orgs, member, integration, other_integration, channel_connector, make_integration
):
    org, _ = two_orgs
    hidden = make_integration(org, channel_connector, "Not granted")
    # Granted on another organization's integration: not a member there, so it counts for nothing.
    assign_perm("integrations.view_integration", member, other_integration)
    assert not Integration.objects.restrict(member, "view").exists()

    assign_perm("integrations.view_integration", member, integration)

    assert list(Integration.objects.restrict(member, "view")) == [integration]
    assert not Integration.objects.restrict(member, "change").exists()  # viewing is not changing
    assert set(IntegrationEvent.objects.restrict(member, "view").values_list("integration", flat=True)) == {
        integration.pk
    }
    assert list(Location.objects.restrict(member, "view").values_list("managed_by", flat=True)) == [
        integration.pk
    ]
    assert not Integration.objects.restrict(member, "add").exists()
    assert not Integration.objects.restrict(member, "delete").exists()
    assert Integration.objects.tenancy.allows(member, "view", integration)
    assert not Integration.objects.tenancy.allows(member, "view", hidden)
    assert not Integration.objects.tenancy.allows(member, "change", integration)

    assign_perm("integrations.change_integration", member, integration)
    assert list(Integration.objects.restrict(member, "change")) == [integration]
    assert Integration.objects.tenancy.allows(member, "change", integration)
    assert not Integration.objects.tenancy.allows(member, "delete", integration)


def test_keys_are_reached_by_members_who_manage_the_integrations_keys(
    two_orgs, member, integration, integration_key, other_integration_key
):
    assign_perm("integrations.change_integration", member, integration)
    assert not ApiKey.objects.restrict(member, "view").exists()  # changing is not managing keys

    assign_perm("integrations.manage_keys_integration", member, integration)

    assert list(ApiKey.objects.restrict(member, "change")) == [integration_key.key]
    assert list(Integration.objects.restrict(member, "manage_keys")) == [integration]


def test_members_see_their_organization_itself_but_change_nothing(two_orgs, member):
    org, _ = two_orgs

    assert list(Organization.objects.restrict(member, "view")) == [org]
    assert not Organization.objects.restrict(member, "change").exists()
    assert not Organization.objects.restrict(member, "add").exists()


def test_public_connectors_are_shared_for_viewing_only(two_orgs, org_admin, channel_connector, other_org):
    private = Connector.objects.create(
        key="globex-erp", name="Globex ERP", type="erp", organization=other_org
    )

    viewed = Connector.objects.restrict(org_admin, "view")

    assert channel_connector in viewed and private not in viewed
    assert not Connector.objects.restrict(org_admin, "change").filter(pk=channel_connector.pk).exists()


def test_a_user_of_both_organizations_as_admin_of_one_and_member_of_the_other(
    two_orgs, org_admin, other_integration
):
    org, other_org = two_orgs
    join(org_admin, other_org, role="member")
    org_admin._switchyard_scope = None  # a new membership: the scope is read again

    assert org_ids_of(Integration.objects.restrict(org_admin, "change"), "organization_id") == {org.pk}
    assign_perm("integrations.change_integration", org_admin, other_integration)

    assert org_ids_of(Integration.objects.restrict(org_admin, "change"), "organization_id") == {
        org.pk,
        other_org.pk,
    }
    assert org_ids_of(Integration.objects.restrict(org_admin, "delete"), "organization_id") == {org.pk}


def test_related_managers_restrict_too(two_orgs, org_admin, other_integration):
    assert not other_integration.events.restrict(org_admin, "view").exists()
    assert (
        not WebhookDelivery.objects.restrict(org_admin, "view").filter(integration=other_integration).exists()
    )


def test_restricted_makes_a_manager_that_keeps_its_declaration():
    manager = restricted(organization="rule__organization", member_access="integration")

    assert isinstance(manager, models.Manager)
    assert manager.tenancy.organization == "rule__organization"
    assert manager.tenancy.member_access == "integration"
