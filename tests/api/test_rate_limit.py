"""Per-key rate limit (docs/connectors/contract.md, "Rate limits"): 429 `rate_limited` with Retry-After,
RateLimit-* on every answer."""

from types import SimpleNamespace

import pytest
from django.core.cache import cache

from api import throttling
from tests.api.helpers import assert_error
from tokens.choices import KeyKind

NOW = 1_800_000_030.0  # 30 s into a minute


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock, frozen (a minute boundary mid-test would reset the window) and movable."""
    clock = SimpleNamespace(now=NOW)
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: clock.now))
    return clock


@pytest.fixture
def limited(settings, clock):
    settings.API_RATE_LIMIT = "5/min"
    if "filebased" in settings.CACHES["default"]["BACKEND"].lower():
        # The file cache under var/ is shared with other checkouts' runs: clear a private one instead.
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()


def headers(response) -> tuple[str, str, str]:
    return response["RateLimit-Limit"], response["RateLimit-Remaining"], response["RateLimit-Reset"]


def test_the_sixth_request_in_a_minute_is_429_with_retry_after(api_client, integration_key, limited):
    client = api_client(integration_key)

    responses = [client.get("/api/v1/me") for _ in range(6)]

    assert [r.status_code for r in responses[:5]] == [200] * 5
    assert_error(responses[5], 429, "rate_limited")
    assert responses[5]["Retry-After"] == "30"


def test_every_answer_carries_the_ratelimit_headers_counting_down(api_client, integration_key, limited):
    client = api_client(integration_key)

    responses = [client.get("/api/v1/me") for _ in range(6)]

    assert [headers(r) for r in responses] == [
        ("5", "4", "30"),
        ("5", "3", "30"),
        ("5", "2", "30"),
        ("5", "1", "30"),
        ("5", "0", "30"),
        ("5", "0", "30"),
    ]


def test_error_answers_carry_the_headers_too(api_client, integration_key, limited):
    client = api_client(integration_key)

    response = client.post("/api/v1/integration/error", {}, format="json")

    assert_error(response, 400, "validation_error")
    assert headers(response) == ("5", "4", "30")


def test_requests_refused_for_a_missing_grant_count_too(api_client, issue_key, integration, limited):
    """Otherwise a key could call what it may not without limit (each call still writes the request log)."""
    client = api_client(
        issue_key(kind=KeyKind.INTEGRATION, name="no grants", integration=integration, grants=[])
    )

    responses = [client.get("/api/v1/events") for _ in range(6)]

    assert_error(responses[0], 403, "missing_grant")
    assert headers(responses[0]) == ("5", "4", "30")
    assert_error(responses[5], 429, "rate_limited")


def test_limits_are_per_key(
    api_client, integration_key, issue_key, integration, other_integration_key, limited
):
    same_integration = issue_key(kind=KeyKind.INTEGRATION, name="second", integration=integration)
    for _ in range(6):
        api_client(integration_key).get("/api/v1/me")

    assert api_client(same_integration).get("/api/v1/me").status_code == 200
    assert headers(api_client(other_integration_key).get("/api/v1/me"))[1] == "4"
    assert api_client(integration_key).get("/api/v1/me").status_code == 429


def test_the_next_window_starts_afresh(api_client, integration_key, limited, clock):
    client = api_client(integration_key)
    for _ in range(6):
        client.get("/api/v1/me")

    clock.now = NOW + 30  # the next minute
    response = client.get("/api/v1/me")

    assert response.status_code == 200
    assert headers(response) == ("5", "4", "60")


def test_default_limit_is_1200_a_minute(api_client, integration_key, settings):
    assert settings.API_RATE_LIMIT == "1200/min"
    assert api_client(integration_key).get("/api/v1/me")["RateLimit-Limit"] == "1200"


@pytest.mark.parametrize(
    "rate,expected", [("5/min", (5, 60)), ("10/s", (10, 1)), ("100/hour", (100, 3600)), ("7/ second", (7, 1))]
)
def test_rates_are_parsed(rate, expected):
    assert throttling.parse_rate(rate) == expected
