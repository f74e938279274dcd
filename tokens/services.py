"""
API keys: issuing, hashing, verifying, revoking, regenerating and rotating.

Secrets carry 256 random bits, so a slow password hasher buys nothing (and costs ~0.3 s a check); they are
stored as HMAC-SHA256 keyed with a server-side pepper (settings.API_KEY_PEPPERS, rotatable by id), looked
up by their public prefix and compared in constant time.
"""

import functools
import hmac
import ipaddress
import logging
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from core.history import actor_context, record_change
from integrations import services as integration_services
from integrations.choices import EventKind, IntegrationStatus
from integrations.models import Connector, Integration
from organizations.choices import Role
from organizations.models import Membership, Organization

from . import grants as grant_registry
from .choices import Expiration, KeyKind
from .models import ApiKey

audit_log = logging.getLogger("switchyard.audit")
KEY_PATTERN = re.compile(r"^sy_([a-z0-9]{8})_([A-Za-z0-9_-]{43,128})$")
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
# Verified when the prefix is unknown, so an unknown prefix costs the same as a wrong secret.
_DUMMY_HASH = "0" * 64


class KeyRefused(Exception):
    """Authentication failed; `code` and `status` are the API contract's."""

    def __init__(self, code, message, status=401, key=None):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message
        self.key = key  # set when the secret was right but the key may not be used here (recorded anyway)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly made key: the plaintext exists only here, to be shown once."""

    key: ApiKey
    plaintext: str


# --- hashing ------------------------------------------------------------------------------------------


def current_pepper_id() -> int:
    return max(settings.API_KEY_PEPPERS)


def hash_secret(secret: str, pepper_id: int) -> str:
    pepper = settings.API_KEY_PEPPERS[pepper_id]
    return hmac.new(pepper.encode(), secret.encode(), "sha256").hexdigest()


def _new_prefix() -> str:
    while True:
        prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(8))
        if not ApiKey.objects.filter(prefix=prefix).exists():
            return prefix


def _new_secret() -> str:
    return secrets.token_urlsafe(32)  # 32 bytes = 256 bits, 43 characters


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

    secret, pepper_id = _new_secret(), current_pepper_id()
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
    _record(key, f"Key {key.display} issued ({', '.join(normalized) or 'no grants'}).", actor or created_by)
    return IssuedKey(key, f"sy_{key.prefix}_{secret}")


def _record(key, message, actor, **data):
    if key.organization_id is None:
        # Global keys belong to no organization's trail; the platform log keeps them (prefix only).
        audit_log.info("%s (by %s)", message, integration_services.actor_label(actor))
        return
    if key.integration_id:
        integration_services.record_event(
            key.integration, EventKind.KEY, message, actor=actor, data={"prefix": key.prefix, **data}
        )
    elif key.organization_id:
        integration_services.record_event(
            None,
            EventKind.KEY,
            message,
            actor=actor,
            organization=key.organization,
            data={"prefix": key.prefix, **data},
        )


# --- verifying ----------------------------------------------------------------------------------------


def authenticate(raw: str, ip: str | None, *, now=None) -> ApiKey:
    """The ApiKey for a presented bearer string, or KeyRefused with the contract's code."""
    now = now or timezone.now()
    match = KEY_PATTERN.match(raw or "")
    if not match:
        raise KeyRefused("invalid_key", "The API key is missing or malformed.")
    prefix, secret = match.groups()
    key = _fetch_key(prefix)
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
        raise KeyRefused(
            "ip_not_allowed", "Requests with this key are not allowed from this address.", 403, key
        )
    if key.integration_id and key.integration.status == IntegrationStatus.DISABLED:
        raise KeyRefused("integration_disabled", "The key's integration is disabled.", 403, key)
    _touch(key, ip, now, presented_secret=secret)
    return key


# The key lookup runs on every API request. Through the ORM, compiling a five-table select_related query
# cost ~1.5 ms a request — more than running it — so it is one hand-written SELECT, built once per process
# from the models' metadata, whose rows become model instances through Model.from_db and the fields' own
# database converters (exactly what the ORM would produce; unlisted fields stay deferred).
_AUTH_JOIN = (
    # (relation path, model, alias, join condition, columns)
    ("", ApiKey, "k", None, None),
    (
        "integration",
        Integration,
        "i",
        "i.id = k.integration_id",
        ("id", "organization", "connector", "name", "status", "last_activity_at"),
    ),
    ("integration.connector", Connector, "c", "c.id = i.connector_id", ("id", "key", "type")),
    ("integration.organization", Organization, "io", "io.id = i.organization_id", ("id", "name")),
    ("organization", Organization, "o", "o.id = k.organization_id", ("id", "name")),
    ("user", get_user_model(), "u", "u.id = k.user_id", ("id", "username", "is_active", "is_superuser")),
)
# And, last, the owner's current role in the key's organization (NULL: not a member), read in the same
# SELECT through the (user, organization) unique index, so checking it costs no query of its own.
_OWNER_ROLE_JOIN = (
    Membership,
    "m",
    "m.user_id = k.user_id AND m.organization_id = k.organization_id",
    "role",
)


@functools.cache
def _auth_query(vendor):
    q = connection.ops.quote_name
    columns, parts, joins = [], [], []
    for path, model, alias, condition, names in _AUTH_JOIN:
        # In concrete-field order: Model.from_db matches a partial row to fields in that order.
        fields = [f for f in model._meta.concrete_fields if names is None or f.name in names]
        parts.append((path, model, alias, fields, len(columns)))
        columns += [f"{alias}.{q(f.column)}" for f in fields]
        if condition:
            joins.append(f"LEFT JOIN {q(model._meta.db_table)} {alias} ON {condition}")
    model, alias, condition, name = _OWNER_ROLE_JOIN
    columns.append(f"{alias}.{q(model._meta.get_field(name).column)}")
    joins.append(f"LEFT JOIN {q(model._meta.db_table)} {alias} ON {condition}")
    # Identifiers come from model metadata only; the prefix is a bound parameter.
    select = f"SELECT {', '.join(columns)} FROM {q(ApiKey._meta.db_table)} k {' '.join(joins)}"  # noqa: S608 - identifiers from model metadata
    sql = select + f" WHERE k.{q('prefix')} = %s"
    return sql, parts


def _converters(fields, alias):
    """Per column, the (column, converters) the ORM would apply — computed once per connection."""
    cache = connection.__dict__.setdefault("_switchyard_auth_converters", {})
    if alias not in cache:
        cache[alias] = [
            (col, connection.ops.get_db_converters(col) + field.get_db_converters(connection))
            for field in fields
            for col in [field.get_col(alias)]
        ]
    return cache[alias]


def _fetch_key(prefix):
    sql, parts = _auth_query(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    objects = {}
    for path, model, alias, fields, start in parts:
        values = []
        for offset, (col, converters) in enumerate(_converters(fields, alias)):
            value = row[start + offset]
            for convert in converters:
                value = convert(value, col, connection)
            values.append(value)
        if values[0] is None:  # the LEFT JOIN found nothing: no such relation
            objects[path] = None
            continue
        objects[path] = model.from_db(connection.alias, [f.attname for f in fields], values)
        if path:
            parent, _, name = path.rpartition(".")
            if objects.get(parent) is not None:
                objects[parent]._state.fields_cache[name] = objects[path]
    key = objects[""]
    key.owner_role = row[-1]  # the owner's role in the key's organization now (None: not a member)
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


# --- revoking, regenerating, rotating -----------------------------------------------------------------


def revoke(key: ApiKey, *, actor=None, reason="") -> bool:
    """Revoke one key; False if it already was."""
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(),
        revoked_by=integration_services.actor_label(actor),
        revoke_reason=reason[:300],
    )
    if updated:
        key.refresh_from_db()
        # update() sends no post_save: the history row is written here.
        record_change(key, actor=actor)
        _record(key, f"Key {key.display} revoked{': ' + reason if reason else ''}.", actor)
    return bool(updated)


def revoke_many(queryset, *, actor=None, reason="") -> int:
    count = 0
    for key in queryset.filter(revoked_at__isnull=True).select_related(
        "integration__organization", "organization"
    ):
        count += revoke(key, actor=actor, reason=reason)
    return count


# --- owners' roles ------------------------------------------------------------------------------------
# Every membership change goes through these two (the admin's membership page, the organization and user
# pages' inlines). They live here, above organizations, because a change that ends someone's org-admin role
# revokes that user's org keys of the organization in the same transaction. Authentication checks the
# current role regardless (_owner_may_use); this makes the keys show revoked, with the reason on the trail.


def save_membership(membership: Membership, *, actor=None) -> Membership:
    """Save a new or changed membership; one that stops its user being an org admin of the organization
    (demoted, or the row moved to another user or organization) revokes their org keys there."""
    with transaction.atomic():
        before = None
        if membership.pk:
            before = (
                Membership.objects.select_for_update()
                .select_related("user", "organization")
                .filter(pk=membership.pk)
                .first()
            )
        membership.save()
        if before is None:
            return membership
        if (before.user_id, before.organization_id) != (membership.user_id, membership.organization_id):
            reason = f"owner {before.user} was removed from {before.organization}"
        elif before.role == Role.ADMIN and membership.role != Role.ADMIN:
            reason = (
                f"owner {before.user} is no longer an org admin of {before.organization} "
                f"(now {membership.get_role_display()})"
            )
        else:
            return membership
        _revoke_owner_keys(before.user, before.organization, actor=actor, reason=reason)
    return membership


def delete_membership(membership: Membership, *, actor=None) -> None:
    """Remove a user from an organization, and revoke their org keys there."""
    with transaction.atomic():
        user, organization = membership.user, membership.organization
        membership.delete()
        _revoke_owner_keys(
            user, organization, actor=actor, reason=f"owner {user} was removed from {organization}"
        )


def _revoke_owner_keys(user, organization, *, actor, reason) -> int:
    if user.is_superuser:
        return 0  # a superuser's org key reaches what its owner does: every organization
    keys = ApiKey.objects.filter(kind=KeyKind.ORG, user=user, organization=organization)
    return revoke_many(keys, actor=actor, reason=reason)


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
        _record(
            key,
            f"Key {key.display} rotated to {new.key.display}; valid until {key.expires_at:%Y-%m-%d %H:%M} UTC.",
            actor,
        )
    return new


# --- expiry -------------------------------------------------------------------------------------------


def notify_expiring(now=None) -> int:
    """E-mail each integration's address about keys expiring within the warning window; once per key."""
    from django.core.mail import send_mail

    now = now or timezone.now()
    horizon = now + timedelta(days=settings.API_KEY_EXPIRY_WARNING_DAYS)
    due = ApiKey.objects.filter(
        revoked_at__isnull=True,
        replaced_by__isnull=True,
        expires_at__gt=now,
        expires_at__lte=horizon,
        expiry_notified_at__isnull=True,
    ).select_related("integration__organization", "organization", "user")
    sent = 0
    for key in due.iterator(chunk_size=200):
        address = (
            key.integration.notify_address
            if key.integration_id
            else (key.user.email if key.user_id else "")
            or (key.organization.notification_email if key.organization_id else "")
        )
        if address:
            owner = key.integration.name if key.integration_id else (key.organization or "the platform")
            send_mail(
                f"Switchyard: API key {key.display} expires on {key.expires_at:%Y-%m-%d}",
                f"The API key “{key.name}” ({key.display}) of {owner} expires on {key.expires_at:%Y-%m-%d %H:%M} UTC.\n"
                "Rotate it in the Switchyard admin before then so its connector keeps working.",
                None,
                [address],
            )
            sent += 1
        ApiKey.objects.filter(pk=key.pk).update(expiry_notified_at=now)
    return sent


def record_expired(now=None) -> int:
    """Audit the keys that expired since the last sweep (expiry itself is enforced at every request)."""
    now = now or timezone.now()
    expired = ApiKey.objects.filter(
        revoked_at__isnull=True, expires_at__lte=now, expiry_recorded_at__isnull=True
    )
    count = 0
    for key in expired.select_related("integration__organization", "organization").iterator(chunk_size=200):
        ApiKey.objects.filter(pk=key.pk).update(expiry_recorded_at=now)
        _record(key, f"Key {key.display} expired.", None)
        count += 1
    return count


# --- registering a custom integration -----------------------------------------------------------------


def register_custom_integration(
    organization,
    *,
    connector_type,
    name,
    grants,
    expires_at=None,
    notification_email="",
    allowed_ips=(),
    actor=None,
) -> IssuedKey:
    """
    The admin's "Register custom integration": a private connector for the organization (modelled on the
    built-in custom connector of that type), its integration, and the first integration key.
    """
    from django.utils.text import slugify

    from integrations.models import Connector

    template = Connector.objects.get(organization__isnull=True, key=f"custom-{connector_type}")
    base_key = f"custom-{slugify(name)[:60] or 'integration'}"
    key, n = base_key, 1
    while Connector.objects.filter(organization=organization, key=key).exists():
        n += 1
        key = f"{base_key}-{n}"
    try:
        normalized = grant_registry.normalize(grants)
    except grant_registry.UnknownGrant as exc:
        raise ValidationError(str(exc)) from exc
    with transaction.atomic():
        connector = Connector.objects.create(
            organization=organization,
            key=key,
            name=name,
            type=template.type,
            description=f"Custom {template.get_type_display()} registered by {integration_services.actor_label(actor)}.",
            version=template.version,
            recommended_grants=normalized,
            settings_schema=template.settings_schema,
            mapping_kinds=template.mapping_kinds,
        )
        integration = integration_services.create_integration(
            organization, connector, name, notification_email=notification_email, actor=actor
        )
        return issue_key(
            kind=KeyKind.INTEGRATION,
            name=f"{name} key"[:120],
            integration=integration,
            grants=normalized,
            expires_at=expires_at,
            allowed_ips=allowed_ips,
            created_by=actor if actor is not None and not isinstance(actor, str) else None,
            actor=actor,
        )
