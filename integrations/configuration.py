"""
Configuring an integration: create, edit (settings, mappings, workflow switches) and delete it. Each change is
validated against its connector, recorded on the audit trail, and follows the lifecycle (complete settings
start the connection check; changed ones re-check a connected integration).
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .audit import record_event
from .choices import EventKind, IntegrationStatus, Workflow
from .connector_settings import (
    full_settings,
    is_configured,
    mapping_errors,
    merge_settings,
    setting_defaults,
    settings_errors,
    split_settings,
)
from .lifecycle import sync_configuration_status, transition
from .models import Connector, Integration

Status = IntegrationStatus


def _validate(connector, settings_values, mappings, *, require_complete):
    errors = settings_errors(connector, settings_values, require_complete=require_complete)
    errors.update(mapping_errors(connector, mappings or {}))
    if errors:
        raise ValidationError({k: v for k, v in errors.items()})


def create_integration(
    organization,
    connector: Connector,
    name: str,
    *,
    settings: dict | None = None,
    mappings: dict | None = None,
    notification_email: str = "",
    workflows: dict | None = None,
    actor=None,
    require_complete: bool = False,
) -> Integration:
    """A new integration; `not_configured` until its required settings are there, then `connecting`."""
    integration = Integration(
        organization=organization, connector=connector, name=name, notification_email=notification_email
    )
    integration.apply_default_workflows()
    for flow, on in (workflows or {}).items():
        setattr(integration, f"flow_{Workflow(flow).value}", bool(on))
    return save_integration(
        integration,
        settings=settings or {},
        mappings=mappings or {},
        actor=actor,
        require_complete=require_complete,
    )


def save_integration(
    integration: Integration,
    *,
    settings: dict | None = None,
    mappings: dict | None = None,
    actor=None,
    require_complete: bool = True,
    changed_fields=(),
) -> Integration:
    """
    Save a new or edited integration: validate settings (types always; required ones unless
    `require_complete=False`) and mappings, store them, record the event and follow the lifecycle.
    Raises ValidationError with per-field messages, saving nothing.
    """
    if integration.connector.organization_id not in (None, integration.organization_id):
        raise ValidationError({"connector": ["This connector is private to another organization."]})
    name = (integration.name or "").strip()
    if not name or len(name) > 120:
        raise ValidationError({"name": ["A name of 1 to 120 characters is required."]})
    clash = Integration.objects.filter(organization_id=integration.organization_id, name=name)
    if clash.exclude(pk=integration.pk).exists():
        raise ValidationError({"name": ["This organization already has an integration with that name."]})
    integration.name = name
    creating = integration.pk is None
    with transaction.atomic():
        current = {}
        if not creating:
            # Read and write under the row lock: the full save() below writes the lifecycle fields too, so
            # they come from the locked row (an object loaded before a disable or error must not undo it),
            # and two edits at once merge their blank secrets against what is really stored.
            locked = Integration.objects.select_for_update().get(pk=integration.pk)
            for field in ("status", "status_reason", "status_changed_at", "last_error", "last_error_at"):
                setattr(integration, field, getattr(locked, field))
            current = full_settings(locked)
        new_settings = (
            full_settings(integration)
            if settings is None
            else merge_settings(integration.connector, current, settings)
        )
        new_mappings = integration.mappings if mappings is None else mappings
        _validate(integration.connector, new_settings, new_mappings, require_complete=require_complete)
        # Compared with the schema's defaults filled in: the admin form sends an unticked box as false, and
        # storing false where nothing was stored is no change (it must not re-check a connected integration).
        defaults = setting_defaults(integration.connector)
        changed_settings = sorted(
            k
            for k in set(current) | set(new_settings)
            if current.get(k, defaults.get(k)) != new_settings.get(k, defaults.get(k))
        )
        integration.settings, integration.secret_settings = split_settings(
            integration.connector, new_settings
        )
        integration.mappings = new_mappings
        integration.last_activity_at = timezone.now()
        if creating:
            integration.status = Status.NOT_CONFIGURED
            integration.status_changed_at = timezone.now()
        integration.save()
        if creating:
            record_event(
                integration,
                EventKind.CREATED,
                f"Created from connector {integration.connector.key}.",
                actor=actor,
                data={"connector": integration.connector.key},
            )
        elif changed_settings or changed_fields:
            record_event(
                integration,
                EventKind.CONFIG_CHANGED,
                "Configuration changed: " + ", ".join(sorted(set(changed_settings) | set(changed_fields))),
                actor=actor,
                # Names only: values may be secrets.
                data={"settings": changed_settings, "fields": sorted(changed_fields)},
            )
        if (
            not creating
            and changed_settings
            and integration.status in (Status.CONNECTED, Status.ERROR)
            and is_configured(integration)
        ):
            transition(
                integration,
                Status.CONNECTING,
                reason="Settings changed; checking the connection again.",
                actor=actor,
            )
        sync_configuration_status(integration, actor=actor)
    return integration


def delete_integration(integration: Integration, *, actor=None) -> None:
    """Remove an integration's configuration; its audit trail (and, later, orders and fulfillments) stay."""
    with transaction.atomic():
        record_event(
            integration,
            EventKind.DELETED,
            f"Integration {integration.name!r} deleted; its keys and configuration were removed.",
            actor=actor,
            data={"integration_id": integration.pk, "connector": integration.connector.key},
        )
        integration.delete()
