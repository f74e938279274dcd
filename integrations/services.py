"""
The rules of integrations: settings validation, the lifecycle, configuration changes and the audit trail.
Admin, API, commands and tasks call these functions; none of them writes an integration's status itself.
"""

import copy
from datetime import timedelta
from functools import partial

from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from core import history
from core.targets import check_target_url

from . import signals
from .choices import ALLOWED_TRANSITIONS, ConnectorType, EventKind, EventType, IntegrationStatus, Workflow
from .models import Connector, Integration, IntegrationEvent, OutboxEvent

Status = IntegrationStatus
EXPORT_FORMAT = "switchyard.integration/1"


class TransitionRefused(ValidationError):
    """A lifecycle move that DESIGN.md does not allow."""


# --- audit trail ---------------------------------------------------------------------------------------


def actor_label(actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return f"user:{actor.get_username()}"


def record_event(integration, kind, message, *, actor=None, data=None, organization=None, touch=True):
    """Append one IntegrationEvent; `integration` may be None for org-level events."""
    user = actor if actor is not None and not isinstance(actor, str) else None
    if touch and integration is not None and integration.pk:
        # Last activity is written at most once a minute per integration, judged from the loaded row.
        now = timezone.now()
        if integration.last_activity_at is None or now - integration.last_activity_at >= timedelta(minutes=1):
            Integration.objects.filter(pk=integration.pk).update(last_activity_at=now)
            integration.last_activity_at = now
    return IntegrationEvent.objects.create(
        organization=organization or integration.organization,
        integration=integration,
        integration_name=integration.name if integration else "",
        kind=kind,
        actor_user=user,
        actor=actor_label(actor),
        message=message,
        data=data or {},
    )


# --- outbox -------------------------------------------------------------------------------------------


def _schedule_dispatch():
    from .delivery import schedule_dispatch  # delivery imports this module

    schedule_dispatch()


def emit(organization, event_type, obj_type, obj_id, payload, *, integration=None):
    """Record a domain event in the current transaction (the outbox); delivered after the commit."""
    _schedule_dispatch()
    return OutboxEvent.objects.create(
        organization_id=organization if isinstance(organization, int) else organization.pk,
        integration=integration,
        type=EventType(event_type).value,
        object_type=obj_type,
        object_id=str(obj_id),
        payload=payload,
    )


def emit_many(organization, events, *, integration=None):
    """Record many domain events in one INSERT: events are (type, object type, object id, payload)."""
    org_id = organization if isinstance(organization, int) else organization.pk
    if events:
        _schedule_dispatch()
    return OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                organization_id=org_id,
                integration=integration,
                type=EventType(event_type).value,
                object_type=obj_type,
                object_id=str(obj_id),
                payload=payload,
            )
            for event_type, obj_type, obj_id, payload in events
        ],
    )


# --- settings -----------------------------------------------------------------------------------------

_TYPE_NAMES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
}


def check_settings_schema(schema):
    """Raise ValidationError unless `schema` is a usable JSON Schema object schema."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValidationError(f"Not a valid JSON Schema: {exc.message}") from exc
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise ValidationError('The settings schema must describe an object ("type": "object").')


def _message(error, secret: bool) -> str:
    # Messages never repeat the submitted value: it may be a secret, and they end up in pages and logs.
    v, expected = error.validator, error.validator_value
    if v == "type":
        names = expected if isinstance(expected, list) else [expected]
        return "Must be " + " or ".join(_TYPE_NAMES.get(n, n) for n in names) + "."
    if v == "enum":
        return "Must be one of: " + ", ".join(str(e) for e in expected) + "."
    if v == "format":
        return f"Must be a valid {expected}."
    if v in ("minLength", "maxLength"):
        return f"Must be at {'least' if v == 'minLength' else 'most'} {expected} characters."
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most"}.get(
            v, "more than" if "Min" in v else "less than"
        )
        return f"Must be {word} {expected}."
    if v == "pattern":
        return "Has the wrong format." if secret else f"Must match the pattern {expected}."
    return "Invalid value." if secret else error.message


def settings_errors(connector: Connector, values: dict, *, require_complete=True) -> dict[str, list[str]]:
    """Validate settings against the connector's JSON Schema; {} when valid, else messages per field."""
    schema = connector.settings_schema or {}
    if not isinstance(values, dict):
        return {"__all__": ["Settings must be a JSON object."]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    secrets = connector.secret_fields
    errors: dict[str, list[str]] = {}
    for error in validator.iter_errors(values):
        if error.validator == "required" and not error.path:
            if not require_complete:
                continue
            for name in missing_required(connector, values):
                errors.setdefault(name, []).append("This setting is required.")
            continue
        if error.validator == "additionalProperties" and not error.path:
            for name in sorted(set(values) - set(schema.get("properties", {}))):
                errors.setdefault(name, []).append("Unknown setting.")
            continue
        field = str(error.path[0]) if error.path else "__all__"
        # An object-level error's instance is the whole settings dict, secrets included.
        hides_secret = field in secrets or (field == "__all__" and bool(secrets))
        errors.setdefault(field, []).append(_message(error, hides_secret))
    base_url = values.get("base_url")
    if connector.manifest and isinstance(base_url, str) and base_url and "base_url" not in errors:
        # The hub calls a manifest connector under its base_url: the webhook URLs' SSRF rule holds for it.
        try:
            check_target_url(base_url, field="base_url")
        except ValidationError as exc:
            errors.update(exc.message_dict)
    return {k: sorted(set(v)) for k, v in errors.items()}


def missing_required(connector: Connector, values: dict) -> list[str]:
    required = (connector.settings_schema or {}).get("required", [])
    return [name for name in required if values.get(name) in (None, "")]


def is_configured(integration: Integration) -> bool:
    return not missing_required(integration.connector, full_settings(integration))


def full_settings(integration: Integration) -> dict:
    """
    All of an integration's settings, its secrets decrypted: for the hub's own use (manifest calls,
    validation, the form's merge), never for an answer, a page or an export (those use public_settings).
    The one reader of `secret_settings`.
    """
    return {**(integration.secret_settings or {}), **(integration.settings or {})}


def split_settings(connector: Connector, values: dict) -> tuple[dict, dict]:
    """(public, secret) halves of `values`: the schema's "writeOnly" properties are the secrets."""
    secrets = connector.secret_fields
    return (
        {k: v for k, v in values.items() if k not in secrets},
        {k: v for k, v in values.items() if k in secrets},
    )


def merge_settings(connector: Connector, current: dict, submitted: dict) -> dict:
    """Submitted settings over the current ones; a blank secret keeps the stored secret."""
    merged = dict(submitted)
    for name in connector.secret_fields:
        if merged.get(name) in (None, "") and current.get(name) not in (None, ""):
            merged[name] = current[name]
    return {k: v for k, v in merged.items() if v is not None and v != ""}


def setting_defaults(connector: Connector) -> dict:
    """What each setting means while unset: its schema `default`, and false for a boolean without one."""
    properties = (connector.settings_schema or {}).get("properties", {})
    defaults = {}
    for name, spec in properties.items():
        if "default" in spec:
            defaults[name] = spec["default"]
        elif spec.get("type") == "boolean":
            defaults[name] = False
    return defaults


def public_settings(integration: Integration) -> dict:
    """Settings without their secrets (for export, API answers and pages)."""
    secrets = integration.connector.secret_fields
    return {k: v for k, v in (integration.settings or {}).items() if k not in secrets}


# SKU and shipping-method mappings are rows (inventory.SkuMapping, orders.ShippingMethodMapping): the order
# flow reads those, so the JSON `Integration.mappings` holds only connector-specific kinds (e.g. locations).
MODEL_MAPPING_KINDS = ("skus", "shipping_methods")
MODEL_MAPPING_SECTIONS = {"skus": "SKU mappings", "shipping_methods": "Shipping method mappings"}


def json_mapping_kinds(connector: Connector) -> list[str]:
    """The mapping kinds of `connector` kept in the JSON: all it uses but the row kinds."""
    return [kind for kind in connector.mapping_kinds or [] if kind not in MODEL_MAPPING_KINDS]


def mapping_errors(connector: Connector, mappings) -> dict[str, list[str]]:
    """Validate the JSON mappings: connector-specific kinds of {external: hub} text; {} when valid."""
    if not isinstance(mappings, dict):
        return {"mappings": ["Mappings must be a JSON object of {kind: {external: hub}}."]}
    errors = []
    allowed = set(json_mapping_kinds(connector))
    for kind, pairs in mappings.items():
        if kind in MODEL_MAPPING_KINDS:
            section = MODEL_MAPPING_SECTIONS[kind]
            errors.append(
                f"{kind!r}: {section} are rows, not JSON. Edit them in the “{section}” section of the "
                "integration's change page."
            )
        elif kind not in allowed:
            errors.append(
                f"Unknown mapping kind {kind!r}; this connector's JSON kinds: {', '.join(sorted(allowed)) or 'none'}."
            )
        elif not isinstance(pairs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in pairs.items()
        ):
            errors.append(f"{kind}: must map non-empty text to non-empty text.")
    return {"mappings": errors} if errors else {}


# --- workflows ----------------------------------------------------------------------------------------


class WorkflowDisabled(Exception):
    """An inbound write for a flow the integration has switched off (API: 403 `workflow_disabled`)."""

    code = "workflow_disabled"


def require_workflow(integration: Integration, flow) -> None:
    """Raise WorkflowDisabled unless the integration's switch for `flow` (e.g. orders_in) is on."""
    flow = Workflow(flow)
    if not integration.workflow_enabled(flow):
        raise WorkflowDisabled(f"The “{flow.label}” flow of {integration.name!r} is switched off.")


def may_send(integration: Integration, flow) -> bool:
    """Whether an outbound event or call for `flow` may go to this integration now."""
    return integration.status != Status.DISABLED and integration.workflow_enabled(flow)


# --- lifecycle ----------------------------------------------------------------------------------------


def transition(integration: Integration, to_status, *, reason: str, actor=None) -> Integration:
    """The only way an integration's status changes: checks the move, stores the reason, records the event."""
    if to_status not in Status.values:
        raise TransitionRefused(
            f"Unknown status {to_status!r}; one of: {', '.join(Status.values)}.", code="unknown_status"
        )
    to_status = Status(to_status)
    with transaction.atomic():
        locked = (
            Integration.objects.select_for_update(of=("self",))
            .select_related("connector")
            .get(pk=integration.pk)
        )
        current = Status(locked.status)
        if to_status not in ALLOWED_TRANSITIONS[current]:
            raise TransitionRefused(
                f"Cannot move {locked.name!r} from {current.label} to {to_status.label}"
                + (": it is already there." if current == to_status else ".")
                + _hint(current, to_status),
                code="transition_refused",
            )
        # Only for these moves: the others must work even when the secrets cannot be decrypted.
        missing = (
            missing_required(locked.connector, full_settings(locked))
            if to_status in (Status.CONNECTING, Status.CONNECTED)
            else []
        )
        if missing:
            raise TransitionRefused(
                f"Cannot move {locked.name!r} to {to_status.label}: required settings missing ({', '.join(missing)}).",
                code="transition_refused",
            )
        now = timezone.now()
        locked.status, locked.status_reason, locked.status_changed_at = to_status, reason[:500], now
        locked.last_activity_at = now
        fields = ["status", "status_reason", "status_changed_at", "last_activity_at", "updated_at"]
        if to_status == Status.ERROR:
            locked.last_error, locked.last_error_at = reason, now
            fields += ["last_error", "last_error_at"]
        locked.save(update_fields=fields)
        record_event(
            locked,
            EventKind.STATUS_CHANGED,
            f"{current.label} → {to_status.label}: {reason}",
            actor=actor,
            data={"from": current.value, "to": to_status.value, "reason": reason},
        )
        emit(
            locked.organization_id,
            EventType.INTEGRATION_STATUS_CHANGED,
            "integration",
            locked.pk,
            {
                "id": str(locked.pk),
                "name": locked.name,
                "status": to_status.value,
                "previous": current.value,
                "reason": reason,
            },
            integration=locked,
        )
        transaction.on_commit(
            partial(
                signals.status_changed.send,
                Integration,
                organization_id=locked.organization_id,
                integration_id=locked.pk,
                previous=current.value,
                status=to_status.value,
            )
        )
        if to_status == Status.CONNECTING and (locked.connector.manifest or {}).get("health"):
            # A manifest connector's handshake is the hub's health check: run one once this commits.
            from .manifest import schedule_health_check  # manifest imports this module

            schedule_health_check(locked.pk)
    for field in (
        "status",
        "status_reason",
        "status_changed_at",
        "last_error",
        "last_error_at",
        "last_activity_at",
    ):
        setattr(integration, field, getattr(locked, field))
    return integration


def _hint(current, to_status) -> str:
    if to_status == Status.CONNECTED and current in (Status.NOT_CONFIGURED, Status.DISABLED, Status.ERROR):
        return " It must pass through Connecting (handshake or health check) first."
    if current == Status.DISABLED:
        return " Enable it first."
    if current == Status.NOT_CONFIGURED and to_status == Status.ERROR:
        return " Complete its settings first."
    return ""


def sync_configuration_status(integration: Integration, *, actor=None) -> Integration:
    """Complete settings move a not-configured integration to connecting; a missing required one moves back."""
    missing = missing_required(integration.connector, full_settings(integration))
    if integration.status == Status.NOT_CONFIGURED and not missing:
        return transition(integration, Status.CONNECTING, reason="Settings complete.", actor=actor)
    if missing and integration.status in (Status.CONNECTING, Status.CONNECTED, Status.ERROR):
        return transition(
            integration,
            Status.NOT_CONFIGURED,
            reason=f"Required setting missing: {', '.join(missing)}.",
            actor=actor,
        )
    return integration


def disable(integration: Integration, *, actor=None, reason="") -> Integration:
    return transition(
        integration, Status.DISABLED, reason=reason or f"Disabled by {actor_label(actor)}.", actor=actor
    )


def enable(integration: Integration, *, actor=None, reason="") -> Integration:
    """Back from disabled: always re-checked (connecting), or not configured while settings are incomplete."""
    if integration.status != Status.DISABLED:
        raise TransitionRefused(f"{integration.name!r} is not disabled.", code="transition_refused")
    to = Status.CONNECTING if is_configured(integration) else Status.NOT_CONFIGURED
    return transition(integration, to, reason=reason or f"Enabled by {actor_label(actor)}.", actor=actor)


def reenable(integration: Integration, *, actor=None, reason="") -> Integration:
    """From `error` back to `connecting`: the next handshake, health check or outbound success connects it."""
    if integration.status != Status.ERROR:
        raise TransitionRefused(f"{integration.name!r} is not in error.", code="transition_refused")
    return transition(
        integration,
        Status.CONNECTING,
        reason=reason or f"Re-enabled by {actor_label(actor)}; checking the connection again.",
        actor=actor,
    )


def handshake(integration: Integration, *, actor=None) -> Integration:
    """The connector says it is ready (POST /api/v1/integration/connect): connecting/error → connected."""
    if integration.status == Status.CONNECTED:
        return integration
    if integration.status == Status.ERROR:
        transition(integration, Status.CONNECTING, reason="Connector retried the handshake.", actor=actor)
    return transition(integration, Status.CONNECTED, reason="Handshake completed.", actor=actor)


def report_error(integration: Integration, message: str, *, actor=None) -> Integration:
    if integration.status == Status.ERROR:
        integration.last_error, integration.last_error_at = message, timezone.now()
        Integration.objects.filter(pk=integration.pk).update(
            last_error=integration.last_error, last_error_at=integration.last_error_at
        )
        return integration
    return transition(integration, Status.ERROR, reason=message, actor=actor)


def expire_stale_connecting(now=None) -> int:
    """Integrations left in `connecting` past INTEGRATION_CONNECT_WINDOW move to `error`; returns how many."""
    now = now or timezone.now()
    window = django_settings.INTEGRATION_CONNECT_WINDOW
    cutoff = now - timedelta(seconds=window)
    moved = 0
    stale = Integration.objects.filter(status=Status.CONNECTING, status_changed_at__lt=cutoff).select_related(
        "organization"
    )
    for integration in stale.iterator(chunk_size=200):
        with transaction.atomic():
            # Re-checked under the lock: connected → error is a legal move, so a handshake (or a fresh
            # return to connecting) since the query would not be refused by transition() itself.
            still_stale = (
                Integration.objects.select_for_update()
                .filter(pk=integration.pk, status=Status.CONNECTING, status_changed_at__lt=cutoff)
                .first()
            )
            if still_stale is None:
                continue
            transition(
                integration,
                Status.ERROR,
                reason=f"No handshake or passing health check within {timedelta(seconds=window)}.",
            )
            moved += 1
    return moved


# --- signing secret (manifest calls) ------------------------------------------------------------------


def signing_secret(integration: Integration) -> str:
    """The whsec_ secret the hub signs this integration's manifest calls with; made on first use."""
    from core.signing import new_secret

    if not integration.signing_secret:
        secret = new_secret()
        # Only if still empty: two first uses at once agree on one secret.
        Integration.objects.filter(pk=integration.pk, signing_secret="").update(signing_secret=secret)
        integration.refresh_from_db(fields=["signing_secret"])
    return integration.signing_secret


def rotate_signing_secret(integration: Integration, *, actor=None) -> str:
    """A new signing secret (returned to be shown once); the old one stops verifying at once."""
    from core.signing import new_secret

    secret = new_secret()
    with transaction.atomic():
        Integration.objects.filter(pk=integration.pk).update(signing_secret=secret)
        integration.signing_secret = secret
        record_event(integration, EventKind.CONFIG_CHANGED, "Signing secret replaced.", actor=actor)
    return secret


# --- outbound health --------------------------------------------------------------------------------


def note_outbound(
    integration: Integration, *, ok: bool, failures: int = 1, reason: str = "", what="delivery"
):
    """
    Count an outbound outcome (webhook delivery or manifest call). A success resets the count, and brings
    an integration that failures had moved to `error`, once re-enabled (connecting), back to `connected`;
    INTEGRATION_FAILURE_THRESHOLD failures in a row move a `connected` one to `error` (DESIGN.md).
    """
    from . import signals  # signals imports nothing; kept local to show who announces

    threshold = django_settings.INTEGRATION_FAILURE_THRESHOLD
    if ok:
        if not integration.consecutive_failures:
            return integration
        tripped = integration.consecutive_failures >= threshold
        Integration.objects.filter(pk=integration.pk).update(consecutive_failures=0)
        integration.consecutive_failures = 0
        if tripped:
            current = Integration.objects.filter(pk=integration.pk).values_list("status", flat=True).first()
            if current == Status.CONNECTING:
                transition(
                    integration, Status.CONNECTED, reason=f"Outbound {what} succeeded after re-enabling."
                )
                signals.integration_recovered.send(sender=Integration, integration=integration)
        return integration
    Integration.objects.filter(pk=integration.pk).update(
        consecutive_failures=F("consecutive_failures") + failures
    )
    row = Integration.objects.filter(pk=integration.pk).values("consecutive_failures", "status").first()
    if row is None:
        return integration
    integration.consecutive_failures = row["consecutive_failures"]
    if row["consecutive_failures"] >= threshold and row["status"] == Status.CONNECTED:
        message = (
            f"{row['consecutive_failures']} outbound deliveries or calls failed in a row; last: {reason}"
        )
        try:
            transition(integration, Status.ERROR, reason=message[:500])
        except TransitionRefused:
            return integration  # moved meanwhile (disabled, reconfigured): nothing to do
        signals.integration_failing.send(sender=Integration, integration=integration, reason=message)
    return integration


# --- configuration ------------------------------------------------------------------------------------


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


# --- export / import ----------------------------------------------------------------------------------


def export_configuration(integration: Integration) -> dict:
    """The integration's configuration as JSON-ready data, without secrets."""
    connector = integration.connector
    data = {
        "format": EXPORT_FORMAT,
        "name": integration.name,
        "connector": {"key": connector.key, "version": connector.version, "private": not connector.is_public},
        "notification_email": integration.notification_email,
        "settings": public_settings(integration),
        "mappings": copy.deepcopy(integration.mappings),
        **_export_mapping_rows(integration),
        "workflows": {flow.value: integration.workflow_enabled(flow) for flow in Workflow},
        "exported_at": timezone.now().isoformat(),
    }
    if not connector.is_public:
        # A private connector travels with its integration so the import can recreate it.
        data["connector"].update(
            name=connector.name,
            type=connector.type,
            description=connector.description,
            recommended_grants=connector.recommended_grants,
            settings_schema=connector.settings_schema,
            mapping_kinds=connector.mapping_kinds,
            manifest=connector.manifest,
        )
    return data


# The row mappings in an export: (section, external key, hub key, label). Hub codes, not ids: ids mean
# nothing in another organization.
ROW_MAPPING_SECTIONS = (
    ("sku_mappings", "external_sku", "sku", "SKU mapping"),
    ("shipping_method_mappings", "external_code", "method", "shipping method mapping"),
)


def _row_mapping_models(section):
    """(row model, its FK to the hub object, hub model, the hub object's code field) of an export section."""
    # inventory and orders sit above integrations (STYLE.md §3): their models come from the app registry.
    if section == "sku_mappings":
        return (
            apps.get_model("inventory", "SkuMapping"),
            "product",
            apps.get_model("inventory", "Product"),
            "sku",
        )
    return (
        apps.get_model("orders", "ShippingMethodMapping"),
        "method",
        apps.get_model("orders", "ShippingMethod"),
        "code",
    )


def _export_mapping_rows(integration: Integration) -> dict[str, list[dict]]:
    """The integration's SKU and shipping-method mapping rows, one query each."""
    data = {}
    for section, external_key, hub_key, _ in ROW_MAPPING_SECTIONS:
        row_model, fk, _, code_field = _row_mapping_models(section)
        pairs = (
            row_model.objects.filter(integration=integration)
            .order_by(external_key)
            .values_list(external_key, f"{fk}__{code_field}")
        )
        data[section] = [{external_key: external, hub_key: hub} for external, hub in pairs]
    return data


def _import_mapping_rows(integration: Integration, data: dict) -> dict[str, list[dict]]:
    """
    Recreate exported mapping rows, resolving hub codes in the integration's organization. Returns the
    entries left out (no such hub object there, or a duplicate), per section.
    """
    skipped: dict[str, list[dict]] = {}
    for section, external_key, hub_key, _ in ROW_MAPPING_SECTIONS:
        entries = data.get(section) or []
        if not entries:
            continue
        row_model, fk, hub_model, code_field = _row_mapping_models(section)
        hub_ids = dict(
            hub_model.objects.filter(
                organization_id=integration.organization_id,
                **{f"{code_field}__in": {e[hub_key] for e in entries}},
            ).values_list(code_field, "pk")
        )
        rows, seen_external, seen_hub = [], set(), set()
        for entry in entries:
            external, hub_id = entry[external_key], hub_ids.get(entry[hub_key])
            if hub_id is None:
                reason = "missing"
            elif external in seen_external or hub_id in seen_hub:
                # Rows are unique both ways per integration: the first entry for a code or hub object wins.
                reason = "duplicate"
            else:
                seen_external.add(external)
                seen_hub.add(hub_id)
                rows.append(
                    row_model(integration=integration, **{external_key: external, f"{fk}_id": hub_id})
                )
                continue
            skipped.setdefault(section, []).append({**entry, "reason": reason})
        history.bulk_create(row_model, rows)
    return skipped


def describe_skipped(skipped: dict[str, list[dict]], organization) -> str:
    """One sentence per section naming the mapping rows an import left out ("" when none)."""
    parts = []
    for section, external_key, hub_key, label in ROW_MAPPING_SECTIONS:
        entries = skipped.get(section)
        if not entries:
            continue
        named = ", ".join(
            f"{e[external_key]} → {e[hub_key]}"
            + (" (duplicate)" if e["reason"] == "duplicate" else f" ({e[hub_key]} not in {organization})")
            for e in entries
        )
        parts.append(f"Skipped {len(entries)} {label}{'s' if len(entries) != 1 else ''}: {named}.")
    return " ".join(parts)


_TEXT = {"type": "string"}
_NONEMPTY = {"type": "string", "minLength": 1, "maxLength": 100}
# The shape of an export, checked before anything is created (a hand-edited file must fail cleanly).
EXPORT_SCHEMA = {
    "type": "object",
    "required": ["format", "name", "connector"],
    "properties": {
        "format": {"const": EXPORT_FORMAT},
        "name": {"type": "string", "minLength": 1, "maxLength": 120},
        "notification_email": {
            "anyOf": [{"const": ""}, {"type": "string", "format": "email", "maxLength": 254}]
        },
        "settings": {"type": "object"},
        "mappings": {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": _TEXT},
        },
        "sku_mappings": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["external_sku", "sku"],
                "additionalProperties": False,
                "properties": {"external_sku": _NONEMPTY, "sku": _NONEMPTY},
            },
        },
        "shipping_method_mappings": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["external_code", "method"],
                "additionalProperties": False,
                "properties": {"external_code": _NONEMPTY, "method": _NONEMPTY},
            },
        },
        "workflows": {
            "type": "object",
            "propertyNames": {"enum": list(Workflow.values)},
            "additionalProperties": {"type": "boolean"},
        },
        "connector": {
            "type": "object",
            "required": ["key"],
            "properties": {
                "key": {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,80}$"},
                "private": {"type": "boolean"},
                "name": {"type": "string", "maxLength": 120},
                "type": {"enum": list(ConnectorType.values)},
                "version": {"type": "string", "maxLength": 20},
                "description": _TEXT,
                "recommended_grants": {"type": "array", "items": _TEXT},
                "settings_schema": {"type": "object"},
                "mapping_kinds": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "manifest": {"type": ["object", "null"], "additionalProperties": _TEXT},
            },
            "if": {"properties": {"private": {"const": True}}, "required": ["private"]},
            "then": {"required": ["key", "type"]},
        },
    },
}


def import_configuration(data: dict, organization, *, name: str | None = None, actor=None) -> Integration:
    """Create an integration from `export_configuration` data; secrets must be entered again."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ValidationError(f"Not a Switchyard integration export (expected format {EXPORT_FORMAT!r}).")
    problems = sorted(
        Draft202012Validator(EXPORT_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER).iter_errors(
            data
        ),
        key=lambda e: list(e.absolute_path),
    )
    if problems:
        by_section: dict[str, list[str]] = {}
        for e in problems[:10]:
            path = [str(p) for p in e.absolute_path]
            by_section.setdefault(path[0] if path else "__all__", []).append(
                f"{'.'.join(path) or 'file'}: {e.message}"
            )
        raise ValidationError(by_section)
    spec = data["connector"]
    key = spec["key"]
    with transaction.atomic():
        if spec.get("private"):
            connector = Connector.objects.filter(organization=organization, key=key).first()
            if connector is None:
                schema = spec.get("settings_schema") or {}
                check_settings_schema(schema)
                connector = Connector.objects.create(
                    organization=organization,
                    key=key,
                    name=spec.get("name") or key,
                    type=spec.get("type"),
                    description=spec.get("description", ""),
                    version=spec.get("version", "1.0"),
                    recommended_grants=spec.get("recommended_grants") or [],
                    settings_schema=schema,
                    mapping_kinds=spec.get("mapping_kinds") or [],
                    manifest=spec.get("manifest"),
                )
        else:
            connector = Connector.objects.filter(organization__isnull=True, key=key).first()
            if connector is None:
                raise ValidationError(f"Unknown connector {key!r}.")
        name = name or data["name"]
        if len(name) > 120:
            raise ValidationError("The name is longer than 120 characters.")
        if Integration.objects.filter(organization=organization, name=name).exists():
            raise ValidationError(f"{organization} already has an integration named {name!r}.")
        workflows = data.get("workflows") or {}
        mappings, rows = _split_legacy_mappings(data)
        integration = create_integration(
            organization,
            connector,
            name,
            settings=data.get("settings") or {},
            mappings=mappings,
            notification_email=data.get("notification_email", ""),
            workflows=workflows,
            actor=actor,
            require_complete=False,  # secrets are not exported: it stays not_configured until they are entered
        )
        skipped = _import_mapping_rows(integration, rows)
        message = " ".join(
            filter(
                None, ["Imported from an exported configuration.", describe_skipped(skipped, organization)]
            )
        )
        record_event(
            integration,
            EventKind.IMPORTED,
            message,
            actor=actor,
            data={"skipped": skipped} if skipped else None,
        )
    return integration


def _split_legacy_mappings(data: dict) -> tuple[dict, dict]:
    """
    (JSON mappings, row mapping sections) of an export. Files exported before SKU and shipping-method
    mappings became rows carry them in the JSON: they are imported as rows.
    """
    mappings = copy.deepcopy(data.get("mappings") or {})
    legacy_skus = mappings.pop("skus", {})
    legacy_methods = mappings.pop("shipping_methods", {})
    rows = {
        "sku_mappings": [
            *(data.get("sku_mappings") or []),
            *({"external_sku": k, "sku": v} for k, v in legacy_skus.items() if k and v),
        ],
        "shipping_method_mappings": [
            *(data.get("shipping_method_mappings") or []),
            *({"external_code": k, "method": v} for k, v in legacy_methods.items() if k and v),
        ],
    }
    return mappings, rows
