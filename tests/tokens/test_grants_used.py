"""Every grant a key form offers is one some endpoint requires (issue 17: no grant that means nothing)."""

from importlib import import_module

from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from tokens import grants as registry
from tokens.choices import KeyKind
from tokens.issuing import issue_key
from tokens.models import ApiKey

migration = import_module("tokens.migrations.0007_drop_events_write_grant")


def _views(patterns):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            callback = pattern.callback
            yield getattr(callback, "cls", None) or getattr(callback, "view_class", None)


def required_grants() -> set[str]:
    declared = set()
    for view in _views(get_resolver().url_patterns):
        declared.update(g for g in (getattr(view, "grants", None) or {}).values() if g)
    return declared


def test_every_offered_grant_is_required_by_an_endpoint():
    assert set(registry.GRANTS) == required_grants()


def test_events_write_is_no_grant():
    assert "events:write" not in registry.GRANTS
    assert ("events:write", "events:write") not in registry.GRANT_CHOICES


def test_migration_takes_events_write_off_stored_keys_and_connectors(integration):
    key = issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=["events:read"]).key
    ApiKey.objects.filter(pk=key.pk).update(grants=["events:read", "events:write", "orders:read"])
    connector = integration.connector
    type(connector).objects.filter(pk=connector.pk).update(recommended_grants=["events:write", "events:read"])

    migration.drop_grant(apps, None)

    key.refresh_from_db()
    connector.refresh_from_db()
    assert key.grants == ["events:read", "orders:read"]
    assert connector.recommended_grants == ["events:read"]
