from django.db import models
from django.utils.translation import gettext_lazy as _


class OrderStatus(models.TextChoices):
    NEW = "new", _("New")
    ON_HOLD = "on_hold", _("On hold")
    READY = "ready", _("Ready")
    SENT_TO_FULFILLMENT = "sent_to_fulfillment", _("Sent to fulfillment")
    PARTIALLY_FULFILLED = "partially_fulfilled", _("Partially fulfilled")
    FULFILLED = "fulfilled", _("Fulfilled")
    CANCELED = "canceled", _("Canceled")


ORDER_BADGE = {
    OrderStatus.NEW: "grey",
    OrderStatus.ON_HOLD: "amber",
    OrderStatus.READY: "blue",
    OrderStatus.SENT_TO_FULFILLMENT: "blue",
    OrderStatus.PARTIALLY_FULFILLED: "amber",
    OrderStatus.FULFILLED: "green",
    OrderStatus.CANCELED: "black",
}

# The order state machine: every legal move (orders/services.py applies it).
ORDER_TRANSITIONS = {
    OrderStatus.NEW: {OrderStatus.ON_HOLD, OrderStatus.READY, OrderStatus.CANCELED},
    OrderStatus.ON_HOLD: {OrderStatus.READY, OrderStatus.CANCELED},
    OrderStatus.READY: {OrderStatus.ON_HOLD, OrderStatus.SENT_TO_FULFILLMENT, OrderStatus.CANCELED},
    OrderStatus.SENT_TO_FULFILLMENT: {
        OrderStatus.PARTIALLY_FULFILLED,
        OrderStatus.FULFILLED,
        OrderStatus.CANCELED,
        OrderStatus.ON_HOLD,  # its requests were canceled before anything shipped: held to be routed again
        OrderStatus.READY,  # its only open request was rejected by the 3PL: routed again without that location
    },
    # Back, when a fulfillment is canceled (orders/corrections.py): to what still stands shipped.
    OrderStatus.PARTIALLY_FULFILLED: {OrderStatus.FULFILLED, OrderStatus.SENT_TO_FULFILLMENT},
    OrderStatus.FULFILLED: {OrderStatus.PARTIALLY_FULFILLED, OrderStatus.SENT_TO_FULFILLMENT},
    OrderStatus.CANCELED: set(),
}


class PaymentStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    AUTHORIZED = "authorized", _("Authorized")
    PAID = "paid", _("Paid")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
    REFUNDED = "refunded", _("Refunded")
    VOIDED = "voided", _("Voided")


class ShippingRequestStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")
    PARTIALLY_FULFILLED = "partially_fulfilled", _("Partially fulfilled")
    FULFILLED = "fulfilled", _("Fulfilled")
    CANCELED = "canceled", _("Canceled")
    REJECTED = "rejected", _("Rejected")  # refused by its 3PL (with a reason): its stock released


# The longest reason a 3PL may give for rejecting a shipping request (characters).
REJECTION_REASON_MAX = 500

REQUEST_BADGE = {
    ShippingRequestStatus.PENDING: "grey",
    ShippingRequestStatus.ACKNOWLEDGED: "blue",
    ShippingRequestStatus.PARTIALLY_FULFILLED: "amber",
    ShippingRequestStatus.FULFILLED: "green",
    ShippingRequestStatus.CANCELED: "black",
    ShippingRequestStatus.REJECTED: "red",
}


class FulfillmentStatus(models.TextChoices):
    """A shipment stands (shipped) or was voided by its 3PL (canceled: its stock put back)."""

    SHIPPED = "shipped", _("Shipped")
    CANCELED = "canceled", _("Canceled")


FULFILLMENT_BADGE = {
    FulfillmentStatus.SHIPPED: "green",
    FulfillmentStatus.CANCELED: "black",
}
