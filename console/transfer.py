"""
Export and import of an integration's configuration: a JSON file without secrets that recreates the
integration in another organization (or a copy in the same one), with its connector when private, its
settings, mappings, workflows, and the SKU and shipping-method mapping rows by their hub codes. It carries
rows of inventory and orders, so it lives in the console, above them. The admin's export action and import
page and the export_integration / import_integration commands call it.
"""

import copy

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from core import history
from integrations.audit import record_event
from integrations.choices import ConnectorType, EventKind, Workflow
from integrations.configuration import create_integration
from integrations.connector_settings import check_settings_schema, public_settings
from integrations.models import Connector, Integration
from inventory.models import Product, SkuMapping
from orders.models import ShippingMethod, ShippingMethodMapping

EXPORT_FORMAT = "switchyard.integration/1"


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
    if section == "sku_mappings":
        return SkuMapping, "product", Product, "sku"
    return ShippingMethodMapping, "method", ShippingMethod, "code"


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
