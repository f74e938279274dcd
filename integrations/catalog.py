"""The built-in catalog connectors, installed by a data migration (docs/architecture.md: connector)."""

CHANNEL_GRANTS = [
    "orders:read",
    "orders:write",
    "fulfillments:read",
    "products:read",
    "inventory:read",
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "exceptions:read",
    "exceptions:write",
]
FULFILLER_GRANTS = [
    "locations:read",
    "locations:write",
    "inventory:read",
    "inventory:write",
    "shipping_requests:read",
    "shipping_requests:write",
    "fulfillments:read",
    "fulfillments:write",
    "products:read",
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "exceptions:read",
    "exceptions:write",
]
ERP_GRANTS = [
    "products:read",
    "products:write",
    "orders:read",
    "inventory:read",
    "locations:read",
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "exceptions:read",
    "exceptions:write",
]

# Custom connectors run outside the hub and call its API, so none of their settings is required: a fresh
# integration goes straight to `connecting` and waits for the connector's handshake.
CHANNEL_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "store_url": {
            "type": "string",
            "format": "uri",
            "title": "Store URL",
            "description": "The shop's address, for your connector: GET /integration answers it. The hub "
            "never calls it.",
        },
        "default_currency": {
            "type": "string",
            "title": "Default currency",
            "pattern": "^[A-Z]{3}$",
            "description": "ISO 4217 code given to a new order that names no currency (USD when unset).",
        },
        "order_number_prefix": {
            "type": "string",
            "title": "Order number prefix",
            "maxLength": 10,
            "description": "Put before the number of each order this channel sends from now on (WEB- makes "
            "1001 WEB-1001), so the admin, API answers, webhooks and shipping requests tell channels apart.",
        },
        "sell_incoming_stock": {
            "type": "boolean",
            "title": "Sell incoming stock",
            "description": "Publish on hand − committed + incoming (available to promise).",
            "default": False,
        },
    },
}
FULFILLER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "acknowledge_within_minutes": {
            "type": "integer",
            "title": "Acknowledge within (minutes)",
            "minimum": 1,
            "maximum": 10080,
            "default": 60,
            "description": "A shipping request still pending this long after it was sent raises an "
            "exception (the exceptions engine's sweep); it is resolved once the request is acknowledged.",
        },
    },
}
ERP_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sync_prices": {
            "type": "boolean",
            "title": "Take prices from the ERP",
            "default": True,
            "description": "Unticked, the prices in this integration's product writes are ignored: the "
            "hub keeps the prices set elsewhere.",
        },
    },
}

BUILTIN_CONNECTORS = [
    {
        "key": "custom-channel",
        "name": "Custom channel",
        "type": "channel",
        "description": "A web shop or sales channel whose connector calls the Switchyard API.",
        "recommended_grants": CHANNEL_GRANTS,
        "settings_schema": CHANNEL_SCHEMA,
        "mapping_kinds": ["shipping_methods", "skus"],
    },
    {
        "key": "custom-marketplace",
        "name": "Custom marketplace",
        "type": "marketplace",
        "description": "A marketplace whose connector calls the Switchyard API.",
        "recommended_grants": CHANNEL_GRANTS,
        "settings_schema": CHANNEL_SCHEMA,
        "mapping_kinds": ["shipping_methods", "skus"],
    },
    {
        "key": "custom-3pl",
        "name": "Custom 3PL",
        "type": "3pl",
        "description": "A third-party logistics partner that pulls shipping requests and posts fulfillments.",
        "recommended_grants": FULFILLER_GRANTS,
        "settings_schema": FULFILLER_SCHEMA,
        "mapping_kinds": ["shipping_methods", "skus", "locations"],
    },
    {
        "key": "custom-wms",
        "name": "Custom WMS",
        "type": "wms",
        "description": "A warehouse management system that pulls shipping requests and posts fulfillments.",
        "recommended_grants": FULFILLER_GRANTS,
        "settings_schema": FULFILLER_SCHEMA,
        "mapping_kinds": ["shipping_methods", "skus", "locations"],
    },
    {
        "key": "custom-erp",
        "name": "Custom ERP",
        "type": "erp",
        "description": "A back office that owns the product catalog and reads orders and stock.",
        "recommended_grants": ERP_GRANTS,
        "settings_schema": ERP_SCHEMA,
        "mapping_kinds": ["skus"],
    },
]


def install_builtin_connectors(connector_model=None):
    """Create or refresh the built-in catalog (the data migration, and tests after a database flush)."""
    if connector_model is None:
        from .models import Connector as connector_model
    for spec in BUILTIN_CONNECTORS:
        connector_model.objects.update_or_create(organization=None, key=spec["key"], defaults=spec)
