"""Bearer-key authentication (docs/connectors/contract.md, "Conventions"; docs/connectors/01-concepts.md,
"Keys and grants"): every way a key is refused, and how."""

import hmac
import logging
import re
import secrets
from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from integrations import lifecycle
from integrations.models import Integration
from organizations.models import Membership
from tests.api.helpers import WRITE_METHODS, api_routes, assert_error
from tokens import authentication, hashing, issuing
from tokens.choices import KeyKind
from tokens.models import ApiKey

KEY_FORMAT = re.compile(r"^sy_([a-z0-9]{8})_([A-Za-z0-9_-]+)$")


def secret_of(issued) -> str:
    return issued.plaintext.split("_", 2)[2]


def get_me(api_client, key, **extra):
    return api_client(key).get("/api/v1/me", **extra)


# --- refused keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer    ",
        "Basic dXNlcjpwYXNz",
        "Token {key}",
        "{key}",
        "Bearer sy_abc",
        "Bearer not-a-key",
        "Bearer sy_ABCDEFGH_{secret}",  # the prefix is lower-case letters and digits
        "Bearer sy_abcdefg_{secret}",  # 7 characters
        "Bearer sy_{prefix}_short",
        "Bearer {key} trailing",
    ],
)
def test_missing_or_malformed_key_is_401_invalid_key(client, integration_key, header):
    extra = {}
    if header is not None:
        secret = secret_of(integration_key)
        extra["HTTP_AUTHORIZATION"] = header.format(
            key=integration_key.plaintext, secret=secret, prefix=integration_key.key.prefix
        )

    response = client.get("/api/v1/me", **extra)

    assert_error(response, 401, "invalid_key")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_scheme_is_case_insensitive(client, integration_key):
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"bearer {integration_key.plaintext}")
    assert response.status_code == 200, response.content


def test_unknown_prefix_is_401_invalid_key(api_client, integration_key):
    unknown = f"sy_zzzzzzzz_{secret_of(integration_key)}"
    assert_error(get_me(api_client, unknown), 401, "invalid_key")


def test_wrong_secret_is_401_invalid_key(api_client, integration_key):
    wrong = f"sy_{integration_key.key.prefix}_{secrets.token_urlsafe(32)}"
    assert_error(get_me(api_client, wrong), 401, "invalid_key")


def test_unknown_prefix_and_wrong_secret_do_the_same_work(api_client, integration_key, monkeypatch):
    """No timing oracle: both paths look the prefix up once and compute one HMAC (no timing assertions)."""
    calls = []
    real = hashing.hash_secret

    def spy(secret, pepper_id):
        calls.append(pepper_id)
        return real(secret, pepper_id)

    monkeypatch.setattr(authentication, "hash_secret", spy)
    unknown = f"sy_zzzzzzzz_{secrets.token_urlsafe(32)}"
    wrong = f"sy_{integration_key.key.prefix}_{secrets.token_urlsafe(32)}"
    work = {}
    for name, raw in (("unknown", unknown), ("wrong", wrong)):
        calls.clear()
        with (
            CaptureQueriesContext(connection) as queries,
            pytest.raises(authentication.KeyRefused) as refused,
        ):
            authentication.authenticate(raw, "127.0.0.1")
        work[name] = (refused.value.api_code, len(calls), len(queries))

    assert work["unknown"] == work["wrong"] == ("invalid_key", 1, 1)


def test_expired_key_is_401_key_expired(api_client, integration_key):
    ApiKey.objects.filter(pk=integration_key.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(get_me(api_client, integration_key), 401, "key_expired")


def test_key_works_until_its_expiry(api_client, issue_key, integration):
    issued = issue_key(
        kind=KeyKind.INTEGRATION,
        name="k",
        integration=integration,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert get_me(api_client, issued).status_code == 200
    with pytest.raises(authentication.KeyRefused) as refused:
        authentication.authenticate(issued.plaintext, "127.0.0.1", now=issued.key.expires_at)
    assert refused.value.api_code == "key_expired"


def test_revoked_key_is_401_key_revoked(api_client, integration_key):
    issuing.revoke(integration_key.key, reason="leaked")
    assert_error(get_me(api_client, integration_key), 401, "key_revoked")


def test_regenerated_key_is_dead_at_once_and_the_new_one_works(api_client, integration_key):
    new = issuing.regenerate(integration_key.key)

    assert_error(get_me(api_client, integration_key), 401, "key_revoked")
    assert get_me(api_client, new).status_code == 200
    assert new.plaintext != integration_key.plaintext


def test_rotated_key_works_during_the_grace_period_then_expires(api_client, integration_key):
    new = issuing.rotate(integration_key.key, grace=timedelta(hours=2))
    old = ApiKey.objects.get(pk=integration_key.key.pk)

    # Both work during the grace period...
    assert get_me(api_client, integration_key).status_code == 200
    assert get_me(api_client, new).status_code == 200
    just_before = old.expires_at - timedelta(seconds=1)
    assert authentication.authenticate(integration_key.plaintext, "127.0.0.1", now=just_before).pk == old.pk
    # ...then the old one is expired, and the new one still works.
    with pytest.raises(authentication.KeyRefused) as refused:
        authentication.authenticate(integration_key.plaintext, "127.0.0.1", now=old.expires_at)
    assert refused.value.api_code == "key_expired"
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(get_me(api_client, integration_key), 401, "key_expired")
    assert get_me(api_client, new).status_code == 200


def test_org_key_of_a_user_who_left_the_org_is_refused(api_client, org_key, org_admin, org):
    assert get_me(api_client, org_key).status_code == 200

    Membership.objects.filter(user=org_admin, organization=org).delete()

    assert_error(get_me(api_client, org_key), 401, "key_revoked")


def test_org_key_of_a_deactivated_user_is_refused(api_client, org_key, org_admin):
    org_admin.is_active = False
    org_admin.save(update_fields=["is_active"])

    assert_error(get_me(api_client, org_key), 401, "key_revoked")


# --- allowed IP ranges ---------------------------------------------------------------------------------


@pytest.fixture
def office_key(issue_key, integration):
    return issue_key(
        kind=KeyKind.INTEGRATION,
        name="office",
        integration=integration,
        allowed_ips=["10.1.0.0/16", "2001:db8::/32"],
    )


@pytest.mark.parametrize("ip", ["10.1.0.1", "10.1.255.254", "2001:db8::7"])
def test_allowed_ips_admit_addresses_inside_the_ranges(api_client, office_key, ip):
    assert get_me(api_client, office_key, REMOTE_ADDR=ip).status_code == 200


@pytest.mark.parametrize("ip", ["10.2.0.1", "192.168.1.10", "127.0.0.1", "2001:db9::1", ""])
def test_allowed_ips_refuse_addresses_outside_the_ranges(api_client, office_key, ip):
    assert_error(get_me(api_client, office_key, REMOTE_ADDR=ip), 403, "ip_not_allowed")


def test_forwarded_for_is_ignored_unless_behind_the_proxy(api_client, office_key, settings):
    spoofed = {"REMOTE_ADDR": "192.168.1.10", "HTTP_X_FORWARDED_FOR": "10.1.0.1"}
    assert_error(get_me(api_client, office_key, **spoofed), 403, "ip_not_allowed")

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Behind the proxy only the right-most entry (the one the proxy added) counts.
    behind = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "10.1.0.1, 192.168.1.10"}
    assert_error(get_me(api_client, office_key, **behind), 403, "ip_not_allowed")
    behind["HTTP_X_FORWARDED_FOR"] = "192.168.1.10, 10.1.0.1"
    assert get_me(api_client, office_key, **behind).status_code == 200


def test_an_unusable_client_address_does_not_break_authentication(api_client, integration_key):
    """REMOTE_ADDR can be empty (e.g. gunicorn on a unix socket); last_used_ip is then left empty."""
    response = get_me(api_client, integration_key, REMOTE_ADDR="")

    assert response.status_code == 200, response.content
    key = ApiKey.objects.get(pk=integration_key.key.pk)
    assert key.last_used_at is not None
    assert key.last_used_ip is None


# --- disabled integrations and grants ------------------------------------------------------------------


def call_every_endpoint(client):
    """(route, method, response) for every method of every route of the URLconf."""
    for route in api_routes():
        for method in route.methods:
            body = {"message": "x"} if method in WRITE_METHODS else None
            yield route.name, method, getattr(client, method.lower())(route.url(), body, format="json")


def test_disabled_integration_key_is_403_on_every_endpoint_until_enabled(
    api_client, integration_key, integration
):
    client = api_client(integration_key)
    lifecycle.disable(integration, reason="paused")

    answers = list(call_every_endpoint(client))

    assert answers
    for name, method, response in answers:
        assert response.status_code == 403, (name, method)
        assert_error(response, 403, "integration_disabled")
    assert Integration.objects.get(pk=integration.pk).status == "disabled"  # and nothing changed it

    lifecycle.enable(integration)
    assert client.get("/api/v1/me").status_code == 200
    assert client.post("/api/v1/integration/connect").json() == {"status": "connected"}


def test_missing_grant_is_403_naming_the_grant(api_client, issue_key, integration):
    issued = issue_key(kind=KeyKind.INTEGRATION, name="no grants", integration=integration, grants=[])

    details = assert_error(api_client(issued).get("/api/v1/events"), 403, "missing_grant")

    assert details == {"required": ["events:read"]}


def test_org_key_without_the_grant_is_403(api_client, issue_key, org, org_admin):
    issued = issue_key(
        kind=KeyKind.ORG, name="orders only", organization=org, user=org_admin, grants=["orders:read"]
    )

    details = assert_error(api_client(issued).get("/api/v1/events"), 403, "missing_grant")

    assert details == {"required": ["events:read"]}


# --- the key itself -----------------------------------------------------------------------------------


def test_key_format_is_prefix_and_a_256_bit_secret(issue_key, integration):
    issued = [issue_key(kind=KeyKind.INTEGRATION, name=f"k{i}", integration=integration) for i in range(5)]

    for item in issued:
        match = KEY_FORMAT.match(item.plaintext)
        assert match, item.plaintext
        prefix, secret = match.groups()
        assert prefix == item.key.prefix
        assert len(secret) >= 43  # 43 base64url characters carry 258 bits; token_urlsafe(32) fills 256
    assert len({i.plaintext for i in issued}) == len({i.key.prefix for i in issued}) == 5


def test_only_the_hmac_of_the_secret_is_stored(integration_key, settings):
    key = ApiKey.objects.get(pk=integration_key.key.pk)
    secret = secret_of(integration_key)

    assert key.secret_hash != secret
    assert secret not in key.secret_hash
    pepper = settings.API_KEY_PEPPERS[key.pepper_id]
    assert key.secret_hash == hmac.new(pepper.encode(), secret.encode(), "sha256").hexdigest()


def dump_database() -> str:
    """Every row of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608 - names from the introspection
            chunks.extend(row[0] for row in cursor.fetchall())
    return "\n".join(chunks)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the dump uses PostgreSQL's row-to-text cast")
def test_the_secret_is_nowhere_in_the_database_logs_or_answers(api_client, integration, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    with CaptureQueriesContext(connection) as queries:  # also makes Django log every SQL statement
        issued = issuing.issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration)
        client = api_client(issued)
        answers = [
            client.get("/api/v1/me"),
            client.post("/api/v1/integration/connect", HTTP_IDEMPOTENCY_KEY="once"),
            client.post("/api/v1/integration/connect", HTTP_IDEMPOTENCY_KEY="once"),  # a replay
            client.post("/api/v1/integration/error", {"message": "x"}, format="json"),
            client.get("/api/v1/events"),
            client.get("/api/v1/integration"),
            client.delete("/api/v1/me"),
            api_client(issued.plaintext[:-1] + "A").get("/api/v1/me"),  # a refused variant
        ]
        issuing.rotate(issued.key)
    secret = secret_of(issued)

    assert caplog.records and any("tokens_apikey" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text
    assert not [q for q in queries.captured_queries if secret in q["sql"]]
    for response in answers:
        assert secret not in response.content.decode(), response.content
    assert secret not in dump_database()


def test_the_secret_is_on_no_admin_page(api_client, integration, superuser, admin_client_for):
    """Only the shown-once page (right after issuing in the admin) may show it: not lists, forms or trails."""
    issued = issuing.issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration)
    api_client(issued).get("/api/v1/me")
    client = admin_client_for(superuser)
    pages = [reverse("admin:index")]
    assert len(admin.site._registry) > 10, "the sweep found no admin pages to read"
    for model in admin.site._registry:
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    pages += [
        reverse("admin:tokens_apikey_change", args=[issued.key.pk]),
        reverse("admin:integrations_integration_change", args=[integration.pk]),
    ]
    secret = secret_of(issued)

    answers = {page: client.get(page) for page in pages}

    for page, response in answers.items():
        assert secret not in response.content.decode(), page
    assert answers[pages[-2]].status_code == 200  # the key's own page was really looked at
    assert issued.key.prefix in answers[pages[-2]].content.decode()


def test_pepper_rotation_keeps_old_keys_working_and_rehashes_them(api_client, integration, settings):
    settings.API_KEY_PEPPERS = {1: "pepper-one"}
    issued = issuing.issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration)
    assert issued.key.pepper_id == 1

    settings.API_KEY_PEPPERS = {1: "pepper-one", 2: "pepper-two"}
    assert get_me(api_client, issued).status_code == 200

    key = ApiKey.objects.get(pk=issued.key.pk)
    assert key.pepper_id == 2
    assert key.secret_hash == hashing.hash_secret(secret_of(issued), 2)
    settings.API_KEY_PEPPERS = {2: "pepper-two"}  # pepper 1 retired
    assert get_me(api_client, issued).status_code == 200


def test_a_key_hashed_with_a_retired_pepper_is_refused(api_client, integration, settings):
    settings.API_KEY_PEPPERS = {1: "pepper-one"}
    issued = issuing.issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration)

    settings.API_KEY_PEPPERS = {2: "pepper-two"}

    assert_error(get_me(api_client, issued), 401, "invalid_key")


def apikey_updates(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "tokens_apikey"')]


def test_last_used_is_written_at_most_once_per_interval(api_client, integration_key, settings):
    settings.API_KEY_LAST_USED_INTERVAL = 60
    client = api_client(integration_key)

    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/me", REMOTE_ADDR="10.0.0.5").status_code == 200
        assert client.get("/api/v1/me", REMOTE_ADDR="10.0.0.6").status_code == 200

    assert len(apikey_updates(queries)) == 1
    key = ApiKey.objects.get(pk=integration_key.key.pk)
    assert key.last_used_ip == "10.0.0.5"

    # Once the interval has passed, the next request writes it again.
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=key.last_used_at - timedelta(seconds=61))
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/me", REMOTE_ADDR="10.0.0.7").status_code == 200
    assert len(apikey_updates(queries)) == 1
    assert ApiKey.objects.get(pk=key.pk).last_used_ip == "10.0.0.7"
