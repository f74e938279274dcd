"""
Requests the hub takes no key for — none given, or one refused — are rate limited per client address
(settings.API_ANON_RATE_LIMIT; #14 finding 10c): before, only requests made with a good key were counted,
and anyone could try keys without limit. A good key's requests are counted against the key alone.
"""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.utils import timezone

from api import throttling
from integrations import lifecycle
from tests.api.helpers import assert_error
from tokens import issuing as key_services
from tokens.choices import KeyKind
from tokens.models import ApiKey

NOW = 1_800_000_030.0  # 30 s into a minute
ME = "/api/v1/me"


@pytest.fixture
def limited(settings, monkeypatch):
    """Five requests a minute per address, on a frozen clock (a minute boundary mid-test would reset it)."""
    settings.API_ANON_RATE_LIMIT = "5/min"
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: NOW))
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        # The file cache under var/ is shared with other checkouts' runs: clear a private one instead.
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()


def keyless(client, **extra):
    return client.get(ME, **extra)


def with_key(client, plaintext, **extra):
    return client.get(ME, HTTP_AUTHORIZATION=f"Bearer {plaintext}", **extra)


def test_the_sixth_keyless_request_from_one_address_is_429(client, db, limited):
    responses = [keyless(client) for _ in range(6)]

    for response in responses[:5]:
        assert_error(response, 401, "invalid_key")
    assert_error(responses[5], 429, "rate_limited")
    assert responses[5]["Retry-After"] == "30"


def test_keyless_answers_carry_the_ratelimit_headers_of_the_address(client, db, limited):
    responses = [keyless(client) for _ in range(6)]

    assert [(r["RateLimit-Limit"], r["RateLimit-Remaining"], r["RateLimit-Reset"]) for r in responses] == [
        ("5", "4", "30"),
        ("5", "3", "30"),
        ("5", "2", "30"),
        ("5", "1", "30"),
        ("5", "0", "30"),
        ("5", "0", "30"),
    ]


def test_another_address_is_unaffected(client, db, limited):
    for _ in range(6):
        keyless(client, REMOTE_ADDR="203.0.113.5")

    assert_error(keyless(client, REMOTE_ADDR="203.0.113.5"), 429, "rate_limited")
    assert_error(keyless(client, REMOTE_ADDR="203.0.113.6"), 401, "invalid_key")
    assert_error(keyless(client, REMOTE_ADDR="2001:db8::5"), 401, "invalid_key")


def test_refused_keys_count_against_the_address(client, integration_key, issue_key, integration, limited):
    # Given a key for each way of being refused with 401
    secret = integration_key.plaintext.split("_", 2)[2]
    expired = issue_key(kind=KeyKind.INTEGRATION, name="expired", integration=integration)
    ApiKey.objects.filter(pk=expired.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked = issue_key(kind=KeyKind.INTEGRATION, name="revoked", integration=integration)
    key_services.revoke(revoked.key, reason="leaked")
    refused = [
        ("sy_unknown0_" + secret, "invalid_key"),  # unknown prefix
        (f"sy_{integration_key.key.prefix}_{'x' * len(secret)}", "invalid_key"),  # wrong secret
        ("not-a-key", "invalid_key"),  # malformed
        (expired.plaintext, "key_expired"),
        (revoked.plaintext, "key_revoked"),
    ]

    # When each is tried once, then once more
    answers = [(with_key(client, plaintext), code) for plaintext, code in refused]
    again = with_key(client, refused[0][0])

    # Then each was refused as itself, and the sixth refused request of the minute is 429
    for response, code in answers:
        assert_error(response, 401, code)
    assert_error(again, 429, "rate_limited")
    # The good key, from the same address, still works
    assert with_key(client, integration_key.plaintext).status_code == 200


def test_keys_refused_at_authentication_with_403_count_too(client, issue_key, integration, limited):
    """A stolen key used from outside its address ranges is tried without limit otherwise, each try logged."""
    office = issue_key(
        kind=KeyKind.INTEGRATION, name="office", integration=integration, allowed_ips=["10.1.0.0/16"]
    )

    responses = [with_key(client, office.plaintext, REMOTE_ADDR="192.0.2.7") for _ in range(6)]

    for response in responses[:5]:
        assert_error(response, 403, "ip_not_allowed")
    assert_error(responses[5], 429, "rate_limited")
    # The key's own limit, from its own network, is untouched
    assert with_key(client, office.plaintext, REMOTE_ADDR="10.1.0.1")["RateLimit-Remaining"] == "1199"


def test_a_disabled_integrations_key_is_limited_like_a_refused_one(
    client, integration_key, integration, limited
):
    lifecycle.disable(integration, reason="paused")

    responses = [with_key(client, integration_key.plaintext) for _ in range(6)]

    assert_error(responses[4], 403, "integration_disabled")
    assert_error(responses[5], 429, "rate_limited")


def test_a_good_keys_requests_are_not_counted_against_the_address(client, integration_key, limited):
    # Given more good-key requests than the anonymous limit, from the address
    for _ in range(10):
        assert with_key(client, integration_key.plaintext).status_code == 200

    # Then the address still has its five keyless requests, and the key goes on working past them
    for _ in range(5):
        assert_error(keyless(client), 401, "invalid_key")
    assert_error(keyless(client), 429, "rate_limited")
    response = with_key(client, integration_key.plaintext)
    assert response.status_code == 200
    assert response["RateLimit-Limit"] == "1200"


def test_behind_the_proxy_the_address_is_the_right_most_forwarded_one(client, db, limited, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Every request comes from the proxy; a client may put anything on the left of X-Forwarded-For.
    for n in range(6):
        keyless(client, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.5")

    assert_error(
        keyless(client, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.5"), 429, "rate_limited"
    )
    assert_error(
        keyless(client, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.6"), 401, "invalid_key"
    )


def test_limits_are_parsed_from_the_setting(client, db, limited, settings):
    settings.API_ANON_RATE_LIMIT = "2/hour"

    responses = [keyless(client) for _ in range(3)]

    assert [r.status_code for r in responses] == [401, 401, 429]
    assert responses[2]["Retry-After"] == str(3600 - 30)
