"""
Exceptions — the business records a person sees and fixes (an unmapped SKU, a dead webhook receiver, an
integration in Error) — are raised and resolved through this module by every app, the same way.

The records and their rules belong to the exceptions engine (automations/exceptions.py keeps them); it registers
itself here when Django starts. This module sits in core so that every layer may call it, including the
integrations app below the engine, without importing the layer above. ExceptionKind, the causes they are
raised for, lives here for the same reason.
"""

from typing import Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.translation import gettext_lazy as _


class ExceptionKind(models.TextChoices):
    """What went wrong: the vocabulary every app raises with (SyncException.kind's choices)."""

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
    RULE_RAISED = "rule_raised", _("Raised by an automation rule")
    CHANGED_AFTER_ACKNOWLEDGED = "changed_after_acknowledged", _("Changed after the 3PL acknowledged")
    UNACKNOWLEDGED_REQUEST = "unacknowledged_request", _("Shipping request not acknowledged")


class ExceptionKeeper(Protocol):
    """What the keeper (automations.exceptions) provides; registered in its AppConfig.ready()."""

    def raise_exception(
        self, organization, kind, message, *, integration=None, entity_type="", entity_id="", data=None
    ): ...

    def resolve(self, organization, kind, *, integration=None, entity_type="", entity_id="") -> int: ...


_keeper: ExceptionKeeper | None = None


def register(keeper: ExceptionKeeper) -> None:
    """Make `keeper` the one that stores exceptions (called once, from the automations app's ready())."""
    global _keeper
    _keeper = keeper


def _the_keeper() -> ExceptionKeeper:
    if _keeper is None:
        raise ImproperlyConfigured("No exception keeper is registered: is the automations app installed?")
    return _keeper


def raise_exception(
    organization, kind, message, *, integration=None, entity_type="", entity_id="", data=None
):
    """Open an exception, or count another occurrence of the open one with the same cause; returns the record."""
    return _the_keeper().raise_exception(
        organization,
        kind,
        message,
        integration=integration,
        entity_type=entity_type,
        entity_id=entity_id,
        data=data,
    )


def resolve_exception(organization, kind, *, integration=None, entity_type="", entity_id="") -> int:
    """Resolve the open exception of a cause that cleared; returns how many were resolved."""
    return _the_keeper().resolve(
        organization, kind, integration=integration, entity_type=entity_type, entity_id=entity_id
    )
