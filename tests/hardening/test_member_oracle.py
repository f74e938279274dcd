"""
Finding 10a: an org admin adding a user by e-mail (the username) must not learn whether that address has
an account in another organization. Both answers are the same; an existing account is added as a member
with its password, name and flags untouched, and stays out of the org admin's hands.
"""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from organizations.choices import Role
from organizations.models import Membership
from tests.fixtures.organizations import PASSWORD, join, make_user

User = get_user_model()
POSTED_PASSWORD = "another-horse-battery-7"
NEW = "new.person@example.test"
ELSEWHERE = "oscar@globex.test"


@pytest.fixture
def oscar(other_org):
    """Globex's admin, whose username is his e-mail address."""
    user = join(make_user(ELSEWHERE), other_org, Role.ADMIN)
    User.objects.filter(pk=user.pk).update(first_name="Oscar", last_name="Grouch", email=ELSEWHERE)
    return User.objects.get(pk=user.pk)


@pytest.fixture
def acme_admin_client(admin_client_for, org_admin, oscar):
    return admin_client_for(org_admin)


@pytest.fixture
def acme_admin_session(org_admin, oscar):
    """A new signed-in session of Acme's admin per call: no message left over from an earlier answer."""

    def session():
        client = Client()
        client.force_login(org_admin)
        return client

    return session


def add_user(client, org, username, password2=POSTED_PASSWORD, role=Role.MEMBER):
    return client.post(
        reverse("admin:auth_user_add"),
        {
            "username": username,
            "usable_password": "true",
            "password1": POSTED_PASSWORD,
            "password2": password2,
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "1",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-organization": org.pk,
            "memberships-0-role": role,
        },
    )


def answer(response, username):
    """What the org admin learns from an answer, with the address they typed taken out."""
    messages = [str(m).replace(username, "<address>") for m in get_messages(response.wsgi_request)]
    errors = None
    if response.context is not None and "adminform" in response.context:
        errors = (
            dict(response.context["adminform"].form.errors),
            [f.formset.errors for f in response.context["inline_admin_formsets"]],
        )
    # The page as shown, less what differs on every render (the CSRF token, a CSP nonce).
    body = re.sub(r'(csrfmiddlewaretoken" value|nonce)="[^"]*"', "", response.content.decode())
    return (
        response.status_code,
        response.get("Location"),
        messages,
        errors,
        body.replace(username, "<address>"),
    )


def snapshot(user):
    user = User.objects.get(pk=user.pk)
    return (
        user.username,
        user.password,
        user.first_name,
        user.last_name,
        user.email,
        user.is_active,
        user.is_staff,
        user.is_superuser,
    )


def test_adding_an_address_of_another_org_answers_as_for_a_new_one(acme_admin_session, org, oscar):
    # when: Acme's admin adds a new address, then Globex's admin's address
    new = answer(add_user(acme_admin_session(), org, NEW), NEW)
    elsewhere = answer(add_user(acme_admin_session(), org, ELSEWHERE), ELSEWHERE)

    # then: the same status, redirect, messages and body
    assert new == elsewhere
    assert new[0] == 302
    assert "already exists" not in " ".join(new[2])


def test_a_refused_form_is_refused_the_same_way(acme_admin_session, org, oscar):
    # Passwords that do not match: the only error either way, never "already exists".
    new = answer(add_user(acme_admin_session(), org, NEW, password2="mismatch"), NEW)
    elsewhere = answer(add_user(acme_admin_session(), org, ELSEWHERE, password2="mismatch"), ELSEWHERE)

    assert new == elsewhere
    assert new[0] == 200 and list(new[3][0]) == ["password2"]
    assert not User.objects.filter(username=NEW).exists()


def test_the_case_of_the_address_makes_no_difference(acme_admin_session, org, oscar):
    new = answer(add_user(acme_admin_session(), org, NEW.upper()), NEW.upper())
    elsewhere = answer(add_user(acme_admin_session(), org, ELSEWHERE.upper()), ELSEWHERE.upper())

    assert new == elsewhere


def test_the_existing_account_is_added_but_left_unchanged(acme_admin_client, client, org, other_org, oscar):
    before = snapshot(oscar)

    add_user(acme_admin_client, org, ELSEWHERE, role=Role.ADMIN)

    # The account joined Acme; nothing of it changed, and the password Acme's admin typed does not work.
    assert snapshot(oscar) == before
    assert Membership.objects.filter(user=oscar, organization=org, role=Role.ADMIN).exists()
    assert Membership.objects.filter(user=oscar, organization=other_org, role=Role.ADMIN).exists()
    assert client.login(username=ELSEWHERE, password=PASSWORD)
    assert not client.login(username=ELSEWHERE, password=POSTED_PASSWORD)


def test_the_existing_account_stays_out_of_the_adding_admins_hands(acme_admin_client, org, oscar):
    add_user(acme_admin_client, org, ELSEWHERE)

    # Acme's admin may not change a user who belongs to another organization too: no password, no edit.
    page = acme_admin_client.get(reverse("admin:auth_user_change", args=[oscar.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    password_page = acme_admin_client.get(reverse("admin:auth_user_password_change", args=[oscar.pk]))
    assert password_page.status_code in (403, 404)
    acme_admin_client.post(
        reverse("admin:auth_user_change", args=[oscar.pk]),
        {"username": "taken-over", "first_name": "Mallory", "is_active": ""},
    )
    assert snapshot(oscar)[0:3] == (ELSEWHERE, oscar.password, "Oscar")


def test_a_new_address_still_makes_a_new_user_with_the_posted_password(acme_admin_client, client, org):
    assert add_user(acme_admin_client, org, NEW).status_code == 302

    user = User.objects.get(username=NEW)
    assert user.check_password(POSTED_PASSWORD) and user.is_staff and not user.is_superuser
    assert Membership.objects.filter(user=user, organization=org, role=Role.MEMBER).exists()


def test_renaming_a_user_to_an_address_of_another_org_is_no_oracle(acme_admin_client, org, oscar):
    # Usernames are not the org admin's to change: a posted one is ignored, whether it is taken or not.
    newbie = join(make_user("newbie"), org, Role.MEMBER)
    membership = Membership.objects.get(user=newbie)
    url = reverse("admin:auth_user_change", args=[newbie.pk])

    def rename(to):
        return acme_admin_client.post(
            url,
            {
                "username": to,
                "email": "",
                "is_active": "on",
                "memberships-TOTAL_FORMS": "1",
                "memberships-INITIAL_FORMS": "1",
                "memberships-MIN_NUM_FORMS": "1",
                "memberships-MAX_NUM_FORMS": "1000",
                "memberships-0-id": membership.pk,
                "memberships-0-user": newbie.pk,
                "memberships-0-organization": org.pk,
                "memberships-0-role": Role.MEMBER,
            },
        )

    assert (
        answer(rename(ELSEWHERE), ELSEWHERE)[:2]
        == answer(rename(NEW), NEW)[:2]
        == (
            302,
            reverse("admin:auth_user_changelist"),
        )
    )
    assert User.objects.get(pk=newbie.pk).username == "newbie"


def test_an_address_of_your_own_organization_is_still_named(acme_admin_client, org, org_admin):
    # Your own users are listed to you anyway: adding one again says so rather than adding nothing.
    response = add_user(acme_admin_client, org, org_admin.username)

    assert response.status_code == 200
    assert "already exists" in str(response.context["adminform"].form.errors["username"])


def test_an_account_of_no_organization_is_not_taken_over_either(acme_admin_client, org):
    # given: an account in no organization (a former member, a platform staff login)
    loner = make_user("former@example.test")
    before = snapshot(loner)

    # when: Acme's admin adds its address, so that it now belongs to Acme alone
    assert add_user(acme_admin_client, org, "former@example.test").status_code == 302

    # then: it joined, but Acme's admin can neither set its password nor edit it
    assert Membership.objects.filter(user=loner, organization=org, existing_account=True).exists()
    password_page = acme_admin_client.get(reverse("admin:auth_user_password_change", args=[loner.pk]))
    assert password_page.status_code in (403, 404)
    acme_admin_client.post(
        reverse("admin:auth_user_password_change", args=[loner.pk]),
        {"password1": POSTED_PASSWORD, "password2": POSTED_PASSWORD},
    )
    page = acme_admin_client.get(reverse("admin:auth_user_change", args=[loner.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert snapshot(loner) == before


def test_a_user_made_by_the_org_admin_stays_theirs_to_manage(acme_admin_client, org):
    add_user(acme_admin_client, org, NEW)
    user = User.objects.get(username=NEW)

    page = acme_admin_client.get(reverse("admin:auth_user_change", args=[user.pk]))

    assert b'name="_save"' in page.content
    assert (
        acme_admin_client.get(reverse("admin:auth_user_password_change", args=[user.pk])).status_code == 200
    )
