from django.db import models
from django.utils.translation import gettext_lazy as _


class ExceptionStatus(models.TextChoices):
    OPEN = "open", _("Open")
    RESOLVED = "resolved", _("Resolved")
    DISMISSED = "dismissed", _("Dismissed")


class ExceptionKind(models.TextChoices):
    UNMAPPED_SKU = "unmapped_sku", _("Unmapped SKU")
    UNMAPPED_SHIPPING_METHOD = "unmapped_shipping_method", _("Unmapped shipping method")
    UNKNOWN_SKU = "unknown_sku", _("Unknown SKU in a stock push")
    UNROUTABLE_ORDER = "unroutable_order", _("Unroutable order")
    DELIVERY_DEAD = "delivery_dead", _("Webhook delivery dead")
    INVENTORY_SYNC_FAILED = "inventory_sync_failed", _("Inventory sync failed")
    INVALID_ORDER_DATA = "invalid_order_data", _("Invalid order data")
    STUCK_ORDER = "stuck_order", _("Stuck order")
    INTEGRATION_ERROR = "integration_error", _("Integration error")
    CONNECTOR_REPORTED = "connector_reported", _("Reported by the connector")


EXCEPTION_BADGE = {
    ExceptionStatus.OPEN: "red",
    ExceptionStatus.RESOLVED: "green",
    ExceptionStatus.DISMISSED: "grey",
}
