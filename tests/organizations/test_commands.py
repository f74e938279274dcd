from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from organizations.choices import Role
from organizations.models import Membership, Organization
from tests.fixtures.organizations import PASSWORD

GOOD_PASSWORD = "Orbital-Lantern-77"


def run(*args, **options):
    out = StringIO()
    call_command("create_org", *args, stdout=out, **options)
    return out.getvalue()


def test_create_org_creates_an_organization(db):
    out = run("initech", name="Initech", notification_email="ops@initech.test")

    org = Organization.objects.get(slug="initech")
    assert (org.name, org.notification_email) == ("Initech", "ops@initech.test")
    assert org.memberships.count() == 0
    assert "Created organization initech" in out


def test_create_org_with_first_admin(db):
    out = run("initech", name="Initech", admin_email="Peter@Initech.test", admin_password=GOOD_PASSWORD)

    user = get_user_model().objects.get(username="peter@initech.test")
    assert (user.email, user.is_staff, user.is_superuser) == ("peter@initech.test", True, False)
    membership = Membership.objects.get(user=user)
    assert (membership.organization.slug, membership.role) == ("initech", Role.ADMIN)
    assert authenticate(username="peter@initech.test", password=GOOD_PASSWORD) == user
    assert "Created org admin peter@initech.test" in out


def test_create_org_adds_an_existing_user_without_changing_their_password(db):
    # given a user who already has an account (not staff) and a password of their own
    user = get_user_model().objects.create_user("bob@acme.test", "bob@acme.test", PASSWORD, is_staff=False)

    # when they are made admin of a new organization with some other password
    out = run("initech", name="Initech", admin_email="bob@acme.test", admin_password=GOOD_PASSWORD)

    # then the membership is added, the password kept, and staff granted so the admin opens
    user.refresh_from_db()
    assert Membership.objects.get(user=user, organization__slug="initech").role == Role.ADMIN
    assert user.check_password(PASSWORD)
    assert not user.check_password(GOOD_PASSWORD)
    assert user.is_staff
    assert "password was not changed" in out
    assert get_user_model().objects.filter(username__iexact="bob@acme.test").count() == 1


def test_create_org_refuses_a_duplicate_slug(org):
    with pytest.raises(CommandError, match="slug 'acme' already exists"):
        run("acme", name="Another Acme")

    assert Organization.objects.filter(slug="acme").count() == 1


@pytest.mark.parametrize("slug", ["not a slug", "acme!", ""])
def test_create_org_refuses_an_invalid_slug(db, slug):
    with pytest.raises(CommandError, match="slug"):
        run(slug, name="Bad")

    assert not Organization.objects.exists()


def test_create_org_refuses_an_invalid_notification_email(db):
    with pytest.raises(CommandError, match="notification_email"):
        run("initech", name="Initech", notification_email="not-an-address")


@pytest.mark.parametrize(
    "options",
    [{"admin_email": "peter@initech.test"}, {"admin_password": GOOD_PASSWORD}],
    ids=["email-only", "password-only"],
)
def test_create_org_needs_admin_email_and_password_together(db, options):
    with pytest.raises(CommandError, match="must be given together"):
        run("initech", name="Initech", **options)

    assert not Organization.objects.exists()


def test_create_org_refuses_an_invalid_admin_email(db):
    with pytest.raises(CommandError, match="--admin-email"):
        run("initech", name="Initech", admin_email="peter", admin_password=GOOD_PASSWORD)


def test_create_org_prints_the_password_validators_messages_and_creates_nothing(db):
    with pytest.raises(CommandError) as exc:
        run("initech", name="Initech", admin_email="peter@initech.test", admin_password="12345")

    message = str(exc.value)
    assert "This password is too short" in message
    assert "This password is too common" in message
    assert "This password is entirely numeric" in message
    assert not Organization.objects.exists()
    assert not get_user_model().objects.exists()


def test_create_org_requires_a_name(db):
    with pytest.raises(CommandError, match="--name"):
        call_command("create_org", "initech", stdout=StringIO())
