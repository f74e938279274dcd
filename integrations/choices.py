from django.db import models
from django.utils.translation import gettext_lazy as _


class ConnectorType(models.TextChoices):
    CHANNEL = "channel", _("Sales channel")
    MARKETPLACE = "marketplace", _("Marketplace")
    THREE_PL = "3pl", _("3PL")
    WMS = "wms", _("WMS")
    ERP = "erp", _("ERP")


class IntegrationStatus(models.TextChoices):
    NOT_CONFIGURED = "not_configured", _("Not configured")
    CONNECTING = "connecting", _("Connecting")
    CONNECTED = "connected", _("Connected")
    ERROR = "error", _("Error")
    DISABLED = "disabled", _("Disabled")


BADGE = {
    IntegrationStatus.NOT_CONFIGURED: "grey",
    IntegrationStatus.CONNECTING: "blue",
    IntegrationStatus.CONNECTED: "green",
    IntegrationStatus.ERROR: "red",
    IntegrationStatus.DISABLED: "black",
}

# The lifecycle of docs/architecture.md ("Integration lifecycle"): every legal move, and nothing else.
ALLOWED_TRANSITIONS = {
    IntegrationStatus.NOT_CONFIGURED: {IntegrationStatus.CONNECTING, IntegrationStatus.DISABLED},
    IntegrationStatus.CONNECTING: {
        IntegrationStatus.CONNECTED,
        IntegrationStatus.ERROR,
        IntegrationStatus.NOT_CONFIGURED,
        IntegrationStatus.DISABLED,
    },
    IntegrationStatus.CONNECTED: {
        IntegrationStatus.CONNECTING,  # settings changed: checked again before it counts as connected
        IntegrationStatus.ERROR,
        IntegrationStatus.NOT_CONFIGURED,
        IntegrationStatus.DISABLED,
    },
    IntegrationStatus.ERROR: {
        IntegrationStatus.CONNECTING,
        IntegrationStatus.NOT_CONFIGURED,
        IntegrationStatus.DISABLED,
    },
    # Enabling re-checks: to `connecting`, or `not_configured` if settings are incomplete; never `connected`.
    IntegrationStatus.DISABLED: {IntegrationStatus.CONNECTING, IntegrationStatus.NOT_CONFIGURED},
}


class EventKind(models.TextChoices):
    CREATED = "created", _("Created")
    STATUS_CHANGED = "status_changed", _("Status changed")
    CONFIG_CHANGED = "config_changed", _("Configuration changed")
    PERMISSIONS_CHANGED = "permissions_changed", _("Permissions changed")
    IMPORTED = "imported", _("Imported")
    EXPORTED = "exported", _("Exported")
    DELETED = "deleted", _("Deleted")
    API_REQUEST = "api_request", _("API request")
    KEY = "key", _("Key")
    DELIVERY = "delivery", _("Webhook delivery")
    OUTBOUND_CALL = "outbound_call", _("Outbound call")
    EXCEPTION = "exception", _("Exception")


class Workflow(models.TextChoices):
    """The per-entity, per-direction switches of an integration (field name: `flow_<value>`)."""

    ORDERS_IN = "orders_in", _("Orders in")
    SHIPPING_REQUESTS_OUT = "shipping_requests_out", _("Shipping requests out")
    FULFILLMENTS_IN = "fulfillments_in", _("Fulfillments in")
    FULFILLMENTS_OUT = "fulfillments_out", _("Fulfillments out")
    INVENTORY_IN = "inventory_in", _("Inventory in")
    INVENTORY_OUT = "inventory_out", _("Inventory out")
    PRODUCTS_IN = "products_in", _("Products in")
    PRODUCTS_OUT = "products_out", _("Products out")


WORKFLOW_HELP = {
    Workflow.ORDERS_IN: "Accept the orders this integration sends.",
    Workflow.SHIPPING_REQUESTS_OUT: "Send it shipping requests for the locations it fulfills.",
    Workflow.FULFILLMENTS_IN: "Accept the fulfillments (shipments) it posts.",
    Workflow.FULFILLMENTS_OUT: "Tell it when its orders ship.",
    Workflow.INVENTORY_IN: "Accept the stock levels it reports.",
    Workflow.INVENTORY_OUT: "Publish available-to-sell stock to it.",
    Workflow.PRODUCTS_IN: "Accept the products it sends (catalog source).",
    Workflow.PRODUCTS_OUT: "Send it product changes.",
}

_CHANNEL_FLOWS = {
    Workflow.ORDERS_IN,
    Workflow.FULFILLMENTS_OUT,
    Workflow.INVENTORY_OUT,
    Workflow.PRODUCTS_OUT,
}
_FULFILLER_FLOWS = {
    Workflow.SHIPPING_REQUESTS_OUT,
    Workflow.FULFILLMENTS_IN,
    Workflow.INVENTORY_IN,
    Workflow.PRODUCTS_OUT,
}

# Which flows are on when an integration of a connector type is created.
DEFAULT_WORKFLOWS = {
    ConnectorType.CHANNEL: _CHANNEL_FLOWS,
    ConnectorType.MARKETPLACE: _CHANNEL_FLOWS,
    ConnectorType.THREE_PL: _FULFILLER_FLOWS,
    ConnectorType.WMS: _FULFILLER_FLOWS,
    ConnectorType.ERP: {Workflow.PRODUCTS_IN, Workflow.INVENTORY_IN},
}


class EventType(models.TextChoices):
    """Domain event types of docs/connectors/contract.md (webhook subscriptions name these)."""

    ORDER_CREATED = "order.created"
    ORDER_UPDATED = "order.updated"
    ORDER_CANCELED = "order.canceled"
    SHIPPING_REQUEST_CREATED = "shipping_request.created"
    SHIPPING_REQUEST_UPDATED = "shipping_request.updated"  # address, contact or method changed after routing
    SHIPPING_REQUEST_CANCELED = "shipping_request.canceled"
    SHIPPING_REQUEST_REJECTED = "shipping_request.rejected"
    FULFILLMENT_CREATED = "fulfillment.created"
    FULFILLMENT_UPDATED = "fulfillment.updated"
    FULFILLMENT_CANCELED = "fulfillment.canceled"
    INVENTORY_UPDATED = "inventory.updated"
    PRODUCT_CREATED = "product.created"
    PRODUCT_UPDATED = "product.updated"
    PRODUCT_DELETED = "product.deleted"  # archived (DELETE /products/{id}): kept, sold nowhere
    INTEGRATION_STATUS_CHANGED = "integration.status_changed"


class DeliveryStatus(models.TextChoices):
    """A webhook delivery's lifecycle: pending → succeeded, or failed (retry at next_attempt_at) → … → dead."""

    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed, will retry")
    DEAD = "dead", _("Dead")


# The statuses of a delivery still owed to its receiver (sent when due, or when its subscription is back on).
OWED = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)

DELIVERY_BADGE = {
    DeliveryStatus.PENDING: "blue",
    DeliveryStatus.SUCCEEDED: "green",
    DeliveryStatus.FAILED: "amber",
    DeliveryStatus.DEAD: "red",
}

# The type of the deliveries the admin's "Send test event" makes (not a domain event: never in the outbox).
TEST_EVENT_TYPE = "webhook.test"
