"""
Checking a presented bearer key: the one lookup every API request makes, and every way a key is refused
(the contract's codes: invalid_key, key_revoked, key_expired, ip_not_allowed, integration_disabled).
"""

import functools
import hmac
import ipaddress
from datetime import timedelta

from django.conf import settings
from django.db.models import F, FilteredRelation, Q
from django.utils import timezone

from core.errors import DomainError
from integrations.choices import IntegrationStatus
from organizations.choices import Role

from .choices import KeyKind
from .hashing import KEY_PATTERN, current_pepper_id, hash_secret
from .models import ApiKey

# Verified when the prefix is unknown, so an unknown prefix costs the same as a wrong secret.
_DUMMY_HASH = "0" * 64


class KeyRefused(DomainError):
    """Authentication failed: `api_code` says why (invalid_key, key_expired, ... ip_not_allowed: 401 or 403)."""

    api_code = "invalid_key"

    def __init__(self, api_code, message, key=None):
        super().__init__(message, api_code=api_code)
        self.key = key  # set when the secret was right but the key may not be used here (recorded anyway)


def authenticate(raw: str, ip: str | None, *, now=None) -> ApiKey:
    """The ApiKey for a presented bearer string, or KeyRefused with the contract's code."""
    now = now or timezone.now()
    match = KEY_PATTERN.match(raw or "")
    if not match:
        raise KeyRefused("invalid_key", "The API key is missing or malformed.")
    prefix, secret = match.groups()
    key = find_key(prefix)
    expected = key.secret_hash if key else _DUMMY_HASH
    pepper_id = key.pepper_id if key and key.pepper_id in settings.API_KEY_PEPPERS else current_pepper_id()
    presented = hash_secret(secret, pepper_id)
    if not hmac.compare_digest(presented, expected) or key is None:
        raise KeyRefused("invalid_key", "The API key is not valid.")
    if key.revoked_at:
        raise KeyRefused("key_revoked", "The API key has been revoked.")
    if key.expires_at and key.expires_at <= now:
        raise KeyRefused("key_expired", "The API key has expired.")
    if key.kind == KeyKind.ORG and not _owner_may_use(key):
        raise KeyRefused("key_revoked", "The API key's owner is no longer an org admin of the organization.")
    if key.allowed_ips and not ip_allowed(ip, key.allowed_ips):
        raise KeyRefused("ip_not_allowed", "Requests with this key are not allowed from this address.", key)
    integration = key.scope.integration
    if integration is not None and integration.status == IntegrationStatus.DISABLED:
        raise KeyRefused("integration_disabled", "The key's integration is disabled.", key)
    _touch(key, ip, now, presented_secret=secret)
    return key


# What authentication and a request go on to read of the key and its relations, loaded by the lookup's one
# SELECT; anything else stays deferred (the integration's encrypted settings are never decrypted to
# authenticate). Every name listed costs compiling and planning on every API request: a request that needs
# more of the key (its revocation details, who made it) should read it where it is needed.
_KEY_FIELDS = (
    "kind",
    "organization",
    "integration",
    "user",
    "prefix",
    "secret_hash",
    "pepper_id",
    "grants",
    "expires_at",
    "allowed_ips",
    "revoked_at",
    "last_used_at",
)
_RELATED_FIELDS = (
    "integration__organization",  # the column: the object is the key's own organization (find_key)
    "integration__connector",
    "integration__name",
    "integration__status",
    "integration__last_activity_at",
    "integration__connector__key",
    "integration__connector__type",
    "organization__name",
    "user__username",
    "user__is_active",
    "user__is_superuser",
)


@functools.cache
def _key_lookup():
    """The lookup's queryset, built once per process (filtering clones it; it is never evaluated itself)."""
    return (
        # Not integration__organization: an integration key's organization is its integration's, already
        # joined as the key's own (find_key hands the one row to both). One join fewer is a third less
        # compiling and planning, which are most of this lookup's cost.
        ApiKey.objects.select_related("integration__connector", "organization", "user")
        # The owner's current role in the key's organization (None: not a member), joined in the same SELECT
        # through the (user, organization) unique index, so checking it costs no query of its own. (A join
        # rather than a subquery: it compiles in less time.)
        .annotate(
            owner_membership=FilteredRelation(
                "user__memberships", condition=Q(user__memberships__organization=F("organization"))
            ),
            owner_role=F("owner_membership__role"),
        )
        .only(*_KEY_FIELDS, *_RELATED_FIELDS)
    )


def find_key(prefix: str) -> ApiKey | None:
    """The key with this prefix, its owner's role and what it belongs to, in one query; None if unknown."""
    try:
        key = _key_lookup().get(prefix=prefix)
    except ApiKey.DoesNotExist:
        return None
    integration = key.integration
    if integration is not None and integration.organization_id == key.organization_id:
        integration.organization = key.organization
    return key


def _owner_may_use(key) -> bool:
    """An org key is good while its owner is active and an org admin of its organization, or a superuser."""
    user = key.user
    return user.is_active and (user.is_superuser or key.owner_role == Role.ADMIN)


def ip_allowed(ip, ranges) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except (TypeError, ValueError):
        return False
    return any(address in ipaddress.ip_network(r, strict=False) for r in ranges)


def _touch(key, ip, now, presented_secret):
    """Write last-used at most once per API_KEY_LAST_USED_INTERVAL; re-hash under the newest pepper."""
    updates = {}
    interval = timedelta(seconds=settings.API_KEY_LAST_USED_INTERVAL)
    if key.last_used_at is None or now - key.last_used_at >= interval:
        updates.update(last_used_at=now, last_used_ip=ip)
    if key.pepper_id != current_pepper_id():
        updates.update(
            pepper_id=current_pepper_id(), secret_hash=hash_secret(presented_secret, current_pepper_id())
        )
    if updates:
        ApiKey.objects.filter(pk=key.pk).update(**updates)
        for field, value in updates.items():
            setattr(key, field, value)
