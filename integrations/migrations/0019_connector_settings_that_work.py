"""
Issue 17: the built-in connectors' settings do what they say or are gone. `warehouse_code` and `cutoff_time`
(3PL, WMS) and `company_code` (ERP) are removed: the hub never used them and never said what they meant.
The others now have the effect their description states (integrations/catalog.py). Every connector whose
schema is still a built-in one as it was before (the built-in rows, and the private copies "Register custom
integration" made of them) gets the new schema, and its integrations lose the removed settings' values.
"""

from django.db import migrations

from integrations.catalog import CHANNEL_SCHEMA, ERP_SCHEMA, FULFILLER_SCHEMA

# The schemas as the catalog had them before this migration (frozen here: the catalog moved on).
OLD_SCHEMAS = {
    "channel": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "store_url": {
                "type": "string",
                "format": "uri",
                "title": "Store URL",
                "description": "The shop's address.",
            },
            "default_currency": {
                "type": "string",
                "title": "Default currency",
                "pattern": "^[A-Z]{3}$",
                "description": "ISO 4217 code used when an order names none.",
            },
            "order_number_prefix": {"type": "string", "title": "Order number prefix", "maxLength": 10},
            "sell_incoming_stock": {
                "type": "boolean",
                "title": "Sell incoming stock",
                "description": "Publish on hand − committed + incoming (available to promise).",
                "default": False,
            },
        },
    },
    "fulfiller": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "warehouse_code": {"type": "string", "title": "Warehouse code", "maxLength": 40},
            "cutoff_time": {
                "type": "string",
                "title": "Daily cut-off (HH:MM, UTC)",
                "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
            },
            "acknowledge_within_minutes": {
                "type": "integer",
                "title": "Acknowledge within (minutes)",
                "minimum": 1,
                "maximum": 10080,
                "default": 60,
            },
        },
    },
    "erp": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "company_code": {"type": "string", "title": "Company code", "maxLength": 40},
            "sync_prices": {"type": "boolean", "title": "Take prices from the ERP", "default": True},
        },
    },
}
NEW_SCHEMAS = {"channel": CHANNEL_SCHEMA, "fulfiller": FULFILLER_SCHEMA, "erp": ERP_SCHEMA}
REMOVED = {"fulfiller": ["warehouse_code", "cutoff_time"], "erp": ["company_code"]}


def _swap(apps, before, after, removed):
    Connector = apps.get_model("integrations", "Connector")
    Integration = apps.get_model("integrations", "Integration")
    for connector in Connector.objects.order_by("pk"):
        for kind, schema in before.items():
            if connector.settings_schema != schema:
                continue
            connector.settings_schema = after[kind]
            connector.save(update_fields=["settings_schema"])
            for integration in Integration.objects.filter(connector=connector).order_by("pk"):
                settings = integration.settings or {}
                kept = {k: v for k, v in settings.items() if k not in removed.get(kind, ())}
                if kept != settings:
                    Integration.objects.filter(pk=integration.pk).update(settings=kept)
            break


def forward(apps, schema_editor):
    _swap(apps, OLD_SCHEMAS, NEW_SCHEMAS, REMOVED)


def backward(apps, schema_editor):
    # The schemas come back; the removed values do not (they were never used).
    _swap(apps, NEW_SCHEMAS, OLD_SCHEMAS, {})


class Migration(migrations.Migration):
    dependencies = [("integrations", "0018_webhook_events")]
    operations = [migrations.RunPython(forward, backward)]
