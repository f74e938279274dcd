"""
The admin login throttle (django-axes, #7): AXES_FAILURE_LIMIT failed logins for one username from one
address lock that pair out for the cool-off, whatever password comes next; other users and addresses go on;
support lifts it with axes' reset commands. API keys and test logins are not its business.
"""

import logging

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory

from tests.fixtures.organizations import PASSWORD

LOGIN = "/admin/login/"
WRONG = "not-the-password-7"


@pytest.fixture(autouse=True)
def fast_hashes(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def attempt(client, username, password, ip="203.0.113.5", **extra):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip, **extra
    )


def fail(client, username, times, ip="203.0.113.5", **extra):
    return [attempt(client, username, WRONG, ip, **extra).status_code for _ in range(times)]


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def assert_lockout_page(response):
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert 'id="sy-lockout"' in html and "Too many failed logins" in html
    assert "0:15:00" in html  # the wait, from AXES_COOLOFF_MINUTES
    assert "_auth_user_id" not in response.client.session


def test_the_limit_and_cooloff_come_from_settings(settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AUTHENTICATION_BACKENDS[0] == "core.security.LoginLockoutBackend"
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"


def test_five_failures_lock_out_even_the_right_password(client, org_admin):
    # Four failures: the form's own error, and the right password still works.
    assert fail(client, "alice", 4) == [200] * 4
    assert logged_in(attempt(client, "alice", PASSWORD))
    client.logout()

    # Success reset the count (AXES_RESET_ON_SUCCESS): five more failures, the fifth locks.
    assert fail(client, "alice", 5) == [200] * 4 + [429]
    locked = attempt(client, "alice", PASSWORD)

    assert_lockout_page(locked)


def test_another_user_and_another_address_are_not_locked(client, org_admin, other_admin):
    fail(client, "alice", 5, ip="203.0.113.5")

    assert logged_in(attempt(client, "oscar", PASSWORD, ip="203.0.113.5"))
    client.logout()
    assert logged_in(attempt(client, "alice", PASSWORD, ip="198.51.100.7"))
    client.logout()
    assert_lockout_page(attempt(client, "alice", PASSWORD, ip="203.0.113.5"))


def test_x_forwarded_for_is_not_trusted_unless_behind_a_proxy(client, org_admin, settings):
    # Direct: a forged X-Forwarded-For per try changes nothing; the pair is alice + REMOTE_ADDR.
    for n in range(5):
        attempt(client, "alice", WRONG, ip="203.0.113.5", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert_lockout_page(attempt(client, "alice", PASSWORD, ip="203.0.113.5", HTTP_X_FORWARDED_FOR="10.9.9.9"))

    # Behind our proxy (BEHIND_PROXY sets this): the right-most entry, the one the proxy wrote, is the client.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxy = "127.0.0.1"
    fail(client, "alice", 5, ip=proxy, HTTP_X_FORWARDED_FOR="10.0.0.1, 192.0.2.44")
    assert_lockout_page(attempt(client, "alice", PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="192.0.2.44"))
    assert logged_in(attempt(client, "alice", PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="192.0.2.45"))
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.5", "192.0.2.44"}


@pytest.mark.parametrize(
    "command", [("axes_reset_username", "alice"), ("axes_reset_ip", "203.0.113.5"), ("axes_reset",)]
)
def test_support_lifts_a_lockout_with_the_reset_commands(client, org_admin, command):
    fail(client, "alice", 5)
    assert_lockout_page(attempt(client, "alice", PASSWORD))

    call_command(*command, stdout=open("/dev/null", "w"))  # noqa: SIM115 - the command's chatter

    assert logged_in(attempt(client, "alice", PASSWORD))


def test_the_lockout_is_logged_as_a_warning_without_the_password(client, org_admin, caplog):
    secret = "hunter2-guess-XYZ"
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            attempt(client, "alice", secret)
        attempt(client, "alice", PASSWORD)

    lockouts = [r for r in caplog.records if r.levelno == logging.WARNING and "Locking out" in r.getMessage()]
    assert lockouts and "alice" in lockouts[0].getMessage()
    assert "203.0.113.5" in lockouts[0].getMessage()
    for record in caplog.records:
        assert secret not in record.getMessage() and PASSWORD not in record.getMessage()
    stored = " ".join(AccessAttempt.objects.values_list("post_data", flat=True))
    assert stored and secret not in stored


def test_api_keys_and_test_logins_ignore_the_lockout(client, api_client, org_admin, org_key):
    fail(client, "alice", 5)
    assert_lockout_page(attempt(client, "alice", PASSWORD))

    # The API authenticates keys, never passwords: alice's org key works from the locked-out address.
    assert api_client(org_key).get("/api/v1/me", REMOTE_ADDR="203.0.113.5").status_code == 200
    # force_login (the admin tests' way in) does not go through authenticate().
    client.force_login(org_admin)
    assert client.get("/admin/").status_code == 200


def test_authenticate_without_a_request_is_not_counted(client, org_admin):
    """Scripts and tests call authenticate() with no request, hence no address: no lockout applies."""
    fail(client, "alice", 5)
    assert_lockout_page(attempt(client, "alice", PASSWORD))

    assert authenticate(username="alice", password=PASSWORD) == org_admin
    assert authenticate(username="alice", password=WRONG) is None
    # With a request from the locked-out address, the lockout holds.
    request = RequestFactory().post(LOGIN, REMOTE_ADDR="203.0.113.5")
    assert authenticate(request, username="alice", password=PASSWORD) is None
