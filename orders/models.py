from django.conf import settings
from django.db import models
from django.db.models import F, Q

from core.history import ConfigHistory
from integrations.models import Integration
from inventory.models import Location, Product
from organizations.models import Organization
from organizations.scoping import restricted

from .choices import (
    REJECTION_REASON_MAX,
    FulfillmentStatus,
    OrderStatus,
    PaymentStatus,
    ShippingRequestStatus,
)

MONEY = {"max_digits": 14, "decimal_places": 2, "default": 0}


class ShippingMethod(models.Model):
    """A hub shipping method (e.g. `standard`, `express`) that channel and 3PL codes map to."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="shipping_methods")
    code = models.SlugField(max_length=60)
    name = models.CharField(max_length=120)

    objects = restricted()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "code"], name="shippingmethod_unique_code")
        ]

    def __str__(self):
        return self.name


class ShippingMethodMapping(models.Model):
    """An integration's code for a hub method: channel code → method inbound, method → 3PL code outbound."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="shipping_method_mappings"
    )
    external_code = models.CharField(max_length=100)
    method = models.ForeignKey(ShippingMethod, on_delete=models.CASCADE, related_name="mappings")
    history = ConfigHistory(excluded_fields=[])

    objects = restricted(organization="integration__organization", member_access="integration")

    class Meta:
        ordering = ["integration", "external_code"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "external_code"], name="shipmap_unique_external"),
            models.UniqueConstraint(fields=["integration", "method"], name="shipmap_unique_method"),
        ]

    def __str__(self):
        return f"{self.external_code} → {self.method.code}"


class Order(models.Model):
    """A customer order from a channel. (source, external_id) is unique: a retried push never duplicates it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="orders")
    source = models.ForeignKey(
        Integration,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="orders",
        help_text="The channel that sent it (kept empty if that integration is deleted).",
    )
    external_id = models.CharField(max_length=100)
    number = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=30, choices=OrderStatus.choices, default=OrderStatus.NEW, db_index=True
    )
    currency = models.CharField(max_length=3, default="USD")
    customer = models.JSONField(default=dict, blank=True)
    billing_address = models.JSONField(default=dict, blank=True)
    shipping_address = models.JSONField(default=dict, blank=True)
    payment_status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PAID
    )
    shipping_method_code = models.CharField(max_length=100, blank=True, help_text="As the channel sent it.")
    shipping_method = models.ForeignKey(
        ShippingMethod,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="orders",
        help_text="As mapped.",
    )
    subtotal = models.DecimalField(**MONEY)
    shipping_total = models.DecimalField(**MONEY)
    tax_total = models.DecimalField(**MONEY)
    discount_total = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    notes = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    hold_reason = models.CharField(max_length=300, blank=True)
    hold_until = models.DateTimeField(null=True, blank=True)
    rules_applied_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the hold engine applied the automation rules for its arrival (empty: not yet; it is "
        "never routed before, while the hold engine is on).",
    )
    routing_location = models.ForeignKey(
        Location,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Set by an automation rule: routed here when this location can ship it all.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    canceled_at = models.DateTimeField(null=True, blank=True)

    objects = restricted(member_access="source")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="order_unique_external_id_per_source"
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "status", "-created_at"], name="order_org_status_idx"),
            models.Index(fields=["organization", "-updated_at"], name="order_org_recent_idx"),
            models.Index(fields=["organization", "number"], name="order_org_number_idx"),
        ]

    def __str__(self):
        return self.number or self.external_id


class OrderLine(models.Model):
    """One line of an order, in hub SKUs (the channel's SKU kept as sent)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_number = models.PositiveIntegerField()
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.PROTECT, related_name="order_lines"
    )
    sku = models.CharField("SKU", max_length=100, help_text="The hub SKU (empty while unmapped).", blank=True)
    external_sku = models.CharField(max_length=100, help_text="The SKU as the channel sent it.")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(**MONEY)
    tax = models.DecimalField(**MONEY)
    discount = models.DecimalField(**MONEY)

    objects = restricted(organization="order__organization")

    class Meta:
        ordering = ["order", "line_number"]
        constraints = [
            models.UniqueConstraint(fields=["order", "line_number"], name="orderline_unique_number"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="orderline_quantity_positive"),
        ]

    def __str__(self):
        return f"{self.quantity} × {self.sku or self.external_sku}"


class ShippingRequest(models.Model):
    """What one location must ship of an order; the 3PL behind the location pulls and fulfills it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="shipping_requests")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipping_requests")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="shipping_requests")
    fulfiller = models.ForeignKey(
        Integration,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="shipping_requests",
        help_text="The integration that manages the location when the request was made.",
    )
    status = models.CharField(
        max_length=30,
        choices=ShippingRequestStatus.choices,
        default=ShippingRequestStatus.PENDING,
        db_index=True,
    )
    shipping_method = models.ForeignKey(
        ShippingMethod, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Where and to whom it ships: the order's, copied when routed and again on every change while the request
    # is open (orders/changes.py); a fulfilled, canceled or rejected request keeps what it had.
    shipping_address = models.JSONField(
        default=dict, blank=True, help_text="The order's shipping address while the request is open."
    )
    customer = models.JSONField(
        default=dict,
        blank=True,
        help_text="The order's contact (name, email, phone) while the request is open.",
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.CharField(
        max_length=REJECTION_REASON_MAX, blank=True, help_text="Why its 3PL refused it (status rejected)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = restricted(member_access="fulfiller")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # A rejected request stays (what the 3PL refused, and why): routing never uses that location again.
            models.UniqueConstraint(fields=["order", "location"], name="shippingrequest_unique_location"),
            models.CheckConstraint(
                condition=Q(status=ShippingRequestStatus.REJECTED, rejected_at__isnull=False)
                | (~Q(status=ShippingRequestStatus.REJECTED) & Q(rejected_at__isnull=True)),
                name="shippingrequest_rejected_at_iff_rejected",
            ),
        ]
        indexes = [models.Index(fields=["fulfiller", "status", "-created_at"], name="shipreq_fulfiller_idx")]

    def __str__(self):
        return f"{self.order} from {self.location}"


class ShippingRequestLine(models.Model):
    request = models.ForeignKey(ShippingRequest, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="request_lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    fulfilled_quantity = models.PositiveIntegerField(default=0)

    objects = restricted(organization="request__organization")

    class Meta:
        ordering = ["request", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="requestline_quantity_positive"),
            models.CheckConstraint(
                condition=Q(fulfilled_quantity__lte=F("quantity")), name="requestline_not_overshipped"
            ),
        ]

    def __str__(self):
        return f"{self.quantity} × {self.product.sku}"


class Fulfillment(models.Model):
    """A shipment of (part of) a shipping request, with carrier and tracking. External id unique per integration."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="fulfillments")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fulfillments")
    shipping_request = models.ForeignKey(
        ShippingRequest, on_delete=models.CASCADE, related_name="fulfillments"
    )
    integration = models.ForeignKey(
        Integration,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fulfillments",
        help_text="The integration that posted it.",
    )
    external_id = models.CharField(max_length=100, blank=True)
    carrier = models.CharField(max_length=100, blank=True)
    tracking_number = models.CharField(max_length=200, blank=True, db_index=True)
    tracking_url = models.URLField(max_length=500, blank=True)
    shipped_at = models.DateTimeField()
    status = models.CharField(
        max_length=20,
        choices=FulfillmentStatus.choices,
        default=FulfillmentStatus.SHIPPED,
        help_text="Canceled: voided by the integration that posted it; its stock was put back.",
    )
    canceled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = restricted(member_access="integration")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "external_id"],
                condition=~Q(external_id=""),
                name="fulfillment_unique_external_id_per_integration",
            ),
            models.CheckConstraint(
                condition=Q(status=FulfillmentStatus.CANCELED, canceled_at__isnull=False)
                | (~Q(status=FulfillmentStatus.CANCELED) & Q(canceled_at__isnull=True)),
                name="fulfillment_canceled_at_iff_canceled",
            ),
        ]

    def __str__(self):
        return f"{self.carrier} {self.tracking_number}".strip() or f"Fulfillment {self.pk}"


class FulfillmentLine(models.Model):
    fulfillment = models.ForeignKey(Fulfillment, on_delete=models.CASCADE, related_name="lines")
    request_line = models.ForeignKey(
        ShippingRequestLine, on_delete=models.CASCADE, related_name="fulfillment_lines"
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()

    objects = restricted(organization="fulfillment__organization")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="fulfillmentline_quantity_positive")
        ]

    def __str__(self):
        return f"{self.quantity} × {self.product.sku}"
