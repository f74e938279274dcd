from django.db import models
from django.utils.translation import gettext_lazy as _

from core.sync_exceptions import ExceptionKind


class ExceptionStatus(models.TextChoices):
    OPEN = "open", _("Open")
    RESOLVED = "resolved", _("Resolved")
    DISMISSED = "dismissed", _("Dismissed")


EXCEPTION_BADGE = {
    ExceptionStatus.OPEN: "red",
    ExceptionStatus.RESOLVED: "green",
    ExceptionStatus.DISMISSED: "grey",
}


# Categories an org admin switches notification e-mails on for (EngineSettings.notify_categories).
EXCEPTION_CATEGORIES = {
    "mapping": (
        "Unmapped SKU or shipping method",
        [ExceptionKind.UNMAPPED_SKU, ExceptionKind.UNMAPPED_SHIPPING_METHOD, ExceptionKind.UNKNOWN_SKU],
    ),
    "routing": ("Unroutable orders", [ExceptionKind.UNROUTABLE_ORDER]),
    "delivery": ("Webhook deliveries dead", [ExceptionKind.DELIVERY_DEAD]),
    "inventory": ("Inventory sync failed", [ExceptionKind.INVENTORY_SYNC_FAILED]),
    "order_data": ("Invalid order data", [ExceptionKind.INVALID_ORDER_DATA]),
    "stuck": ("Stuck orders", [ExceptionKind.STUCK_ORDER, ExceptionKind.UNACKNOWLEDGED_REQUEST]),
    "integration": ("Integration errors", [ExceptionKind.INTEGRATION_ERROR]),
    "connector": ("Reported by connectors", [ExceptionKind.CONNECTOR_REPORTED]),
    "rules": ("Raised by automation rules", [ExceptionKind.RULE_RAISED]),
    "changes": ("Orders changed after the 3PL acknowledged", [ExceptionKind.CHANGED_AFTER_ACKNOWLEDGED]),
}
CATEGORY_OF_KIND = {kind: category for category, (_, kinds) in EXCEPTION_CATEGORIES.items() for kind in kinds}


class Engine(models.TextChoices):
    HOLD = "hold", _("Hold")
    ROUTING = "routing", _("Routing")
    INVENTORY = "inventory", _("Inventory sync")
    EXCEPTIONS = "exceptions", _("Exceptions")


class RunTrigger(models.TextChoices):
    EVENT = "event", _("On an event")
    SCHEDULE = "schedule", _("Beat schedule")
    COMMAND = "command", _("run_engine command")
    ADMIN = "admin", _("From the admin")


class RunOutcome(models.TextChoices):
    RUNNING = "running", _("Running")
    OK = "ok", _("OK")
    FAILED = "failed", _("Failed")


RUN_BADGE = {RunOutcome.RUNNING: "blue", RunOutcome.OK: "green", RunOutcome.FAILED: "red"}


class RoutingStrategy(models.TextChoices):
    PRIORITY = (
        "priority",
        _("Location priority: the first location (by the card's list) that can ship it all"),
    )
    MOST_STOCK = (
        "most_stock",
        _("Most stock: of the locations that can ship it all, the one with most available"),
    )


class RuleTrigger(models.TextChoices):
    ORDER_CREATED = "order.created", _("An order arrives")
    ORDER_UPDATED = "order.updated", _("The channel updates an order")


class MatchMode(models.TextChoices):
    ALL = "all", _("All conditions match")
    ANY = "any", _("Any condition matches")


class ActionType(models.TextChoices):
    HOLD = "hold", _("Hold for review")
    HOLD_MINUTES = "hold_minutes", _("Hold for N minutes")
    RELEASE = "release", _("Release (route now)")
    ROUTE_TO = "route_to", _("Route to a location")
    ADD_TAG = "add_tag", _("Add a tag")
    RAISE_EXCEPTION = "raise_exception", _("Raise an exception")
