"""The admin's "Register custom integration": a private connector, its integration and its first key at once."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from integrations import audit, configuration
from integrations.models import Connector

from . import grants as grant_registry
from .choices import KeyKind
from .issuing import IssuedKey, issue_key


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
    A private connector for the organization (modelled on the built-in custom connector of that type), its
    integration, and the first integration key.
    """
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
            description=f"Custom {template.get_type_display()} registered by {audit.actor_label(actor)}.",
            version=template.version,
            recommended_grants=normalized,
            settings_schema=template.settings_schema,
            mapping_kinds=template.mapping_kinds,
        )
        integration = configuration.create_integration(
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
