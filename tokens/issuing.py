"""
Issuing API keys, and ending them: revoking, regenerating (a new secret, the old one dead at once) and
rotating (a new key, the old one kept for a grace period). Each is recorded on the trail of what the key
belongs to (record_key_event).
"""

import ipaddress
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.history import actor_context, record_change
from integrations import audit
from integrations.choices import EventKind
from organizations.choices import Role
from organizations.models import Membership

from . import grants as grant_registry
from .choices import Expiration, KeyKind
from .hashing import current_pepper_id, hash_secret, new_prefix_candidate, new_secret, plaintext
from .models import ApiKey

audit_log = logging.getLogger("switchyard.audit")


@dataclass(frozen=True)
class IssuedKey:
    """A freshly made key: the plaintext exists only here, to be shown once."""

    key: ApiKey
    plaintext: str


# --- issuing ------------------------------------------------------------------------------------------


def expires_at_for(policy, date=None, *, now=None):
    """The expiry time for a policy of choices.Expiration (a date for DATE)."""
    now = now or timezone.now()
    policy = Expiration(policy)
    if policy == Expiration.NEVER:
        return None
    if policy == Expiration.DATE:
        if date is None:
            raise ValidationError("Choose the expiry date.")
        return date
    return now + timedelta(days=int(policy.value))


def validate_cidrs(ranges) -> list[str]:
    cleaned = []
    for item in ranges or []:
        try:
            cleaned.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError as exc:
            raise ValidationError(f"Not an IP range: {item!r}.") from exc
    return cleaned


def _new_prefix() -> str:
    while True:
        prefix = new_prefix_candidate()
        if not ApiKey.objects.filter(prefix=prefix).exists():
            return prefix


def issue_key(
    *,
    kind,
    name,
    organization=None,
    integration=None,
    user=None,
    grants=None,
    expires_at=None,
    allowed_ips=(),
    created_by=None,
    actor=None,
) -> IssuedKey:
    """Make a key. Integration keys default to their connector's recommended grants."""
    kind = KeyKind(kind)
    if kind == KeyKind.INTEGRATION:
        if integration is None:
            raise ValidationError("An integration key needs an integration.")
        organization = integration.organization
        if grants is None:
            grants = integration.connector.recommended_grants
    elif kind == KeyKind.ORG:
        if organization is None or user is None:
            raise ValidationError("An org key needs an organization and the user who owns it.")
        if not user.is_superuser:
            # An org key reaches the whole organization, as only an org admin may (finding 3).
            memberships = Membership.objects.filter(user=user, organization=organization)
            role = memberships.values_list("role", flat=True).first()
            if role is None:
                raise ValidationError(f"{user} is not a member of {organization}.")
            if role != Role.ADMIN:
                raise ValidationError(
                    f"{user} is not an org admin of {organization}: an org key reaches the whole organization."
                )
    elif organization is not None or integration is not None:
        raise ValidationError("A global key belongs to no organization.")
    elif user is not None and not user.is_superuser:
        raise ValidationError("Only superusers may own global keys.")
    try:
        normalized = grant_registry.normalize(grants or [])
    except grant_registry.UnknownGrant as exc:
        raise ValidationError(str(exc)) from exc
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("The expiry must be in the future.")

    secret, pepper_id = new_secret(), current_pepper_id()
    with actor_context(actor or created_by):
        key = ApiKey.objects.create(
            name=name,
            kind=kind,
            organization=organization,
            integration=integration,
            user=user if kind != KeyKind.INTEGRATION else None,
            prefix=_new_prefix(),
            secret_hash=hash_secret(secret, pepper_id),
            pepper_id=pepper_id,
            grants=normalized,
            expires_at=expires_at,
            allowed_ips=validate_cidrs(allowed_ips),
            created_by=created_by,
        )
    record_key_event(
        key, f"Key {key.display} issued ({', '.join(normalized) or 'no grants'}).", actor or created_by
    )
    return IssuedKey(key, plaintext(key.prefix, secret))


def record_key_event(key, message, actor, **data):
    """A line on the trail of what the key belongs to (its prefix only, never its secret)."""
    scope = key.scope
    if scope.is_global:
        # Global keys belong to no organization's trail; the platform log keeps them (prefix only).
        audit_log.info("%s (by %s)", message, audit.actor_label(actor))
        return
    audit.record_event(
        scope.integration,
        EventKind.KEY,
        message,
        actor=actor,
        organization=scope.organization,
        data={"prefix": key.prefix, **data},
    )


# --- revoking, regenerating, rotating -----------------------------------------------------------------


def revoke(key: ApiKey, *, actor=None, reason="") -> bool:
    """Revoke one key; False if it already was."""
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(),
        revoked_by=audit.actor_label(actor),
        revoke_reason=reason[:300],
    )
    if updated:
        key.refresh_from_db()
        # update() sends no post_save: the history row is written here.
        record_change(key, actor=actor)
        record_key_event(key, f"Key {key.display} revoked{': ' + reason if reason else ''}.", actor)
    return bool(updated)


def revoke_many(queryset, *, actor=None, reason="") -> int:
    count = 0
    for key in queryset.filter(revoked_at__isnull=True).select_related(
        "integration__organization", "organization"
    ):
        count += revoke(key, actor=actor, reason=reason)
    return count


def _successor(key: ApiKey, actor) -> IssuedKey:
    return issue_key(
        kind=key.kind,
        name=key.name,
        organization=key.organization,
        integration=key.integration,
        user=key.user,
        grants=key.grants,
        # The same lifetime again, from now: inheriting the old expiry would let the successor of a key
        # rotated because it was about to expire (as the expiry e-mail asks) die at the same moment.
        expires_at=timezone.now() + (key.expires_at - key.created_at) if key.expires_at else None,
        allowed_ips=key.allowed_ips,
        created_by=actor if actor is not None and not isinstance(actor, str) else None,
        actor=actor,
    )


def regenerate(key: ApiKey, *, actor=None) -> IssuedKey:
    """A new secret; the old key is dead at once."""
    with transaction.atomic():
        new = _successor(key, actor)
        # Linked before the revocation, so that its one history row shows both.
        ApiKey.objects.filter(pk=key.pk).update(replaced_by=new.key)
        revoke(key, actor=actor, reason=f"regenerated as {new.key.display}")
    return new


def rotate(key: ApiKey, *, grace: timedelta | None = None, actor=None) -> IssuedKey:
    """A new key; the old one keeps working for `grace`, then expires."""
    if key.revoked_at:
        raise ValidationError("A revoked key cannot be rotated.")
    grace = grace if grace is not None else timedelta(hours=settings.API_KEY_ROTATION_GRACE_HOURS)
    with transaction.atomic():
        new = _successor(key, actor)
        ends = timezone.now() + grace
        if key.expires_at is None or key.expires_at > ends:
            key.expires_at = ends
        key.replaced_by = new.key
        with actor_context(actor):
            key.save(update_fields=["expires_at", "replaced_by"])
        record_key_event(
            key,
            f"Key {key.display} rotated to {new.key.display}; valid until {key.expires_at:%Y-%m-%d %H:%M} UTC.",
            actor,
        )
    return new
