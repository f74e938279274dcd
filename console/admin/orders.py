"""
Orders, shipping requests, fulfillments and shipping methods in the admin. Orders arrive from channels and
change only through the order services: hold / release / cancel are buttons on the order's page and bulk
actions; its page shows its lines, shipping requests, fulfillments and outbox history.
"""

from dataclasses import replace

from django.contrib import admin
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from console.admin.history import ConfigHistoryAdmin
from integrations.models import OutboxEvent
from orders import services
from orders.choices import FULFILLMENT_BADGE, ORDER_BADGE, ORDER_TRANSITIONS, REQUEST_BADGE, OrderStatus
from orders.models import (
    Fulfillment,
    FulfillmentLine,
    Order,
    OrderLine,
    ShippingMethod,
    ShippingMethodMapping,
    ShippingRequest,
    ShippingRequestLine,
)

from ..display import badge
from ..forms.common import same_organization_form
from .mixins import (
    ObjectActionsMixin,
    OrganizationColumnMixin,
    OrganizationScopedAdmin,
    OrganizationScopedInline,
    ReadOnlyAdminMixin,
    object_action,
)

HISTORY_LIMIT = 100  # newest events shown on the order page


def _when(value):
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _lines_summary(lines):
    return ", ".join(f"{line.quantity} × {line.product.sku}" for line in lines) or "—"


def _address(data):
    return ", ".join(str(v) for v in (data or {}).values() if v not in (None, "")) or "—"


class PartInline(ReadOnlyAdminMixin, OrganizationScopedInline):
    """A read-only part of its parent's page; who sees it follows the parent admin's view permission."""

    extra = 0
    can_delete = False

    @property
    def tenancy(self):
        # The rows of the parent's organizations: members are not granted parts of an order one by one.
        return replace(super().tenancy, member_access=None)

    def has_view_permission(self, request, obj=None):
        return self.admin_site._registry[self.parent_model].has_view_permission(request, obj)


# --- the order page's parts -----------------------------------------------------------------------------


class OrderLineInline(PartInline):
    model = OrderLine
    fields = ["line_number", "sku", "external_sku", "product", "quantity", "unit_price", "tax", "discount"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")


def request_status(request):
    """The request's badge; a rejected one's with its 3PL's reason beside it."""
    shown = badge(REQUEST_BADGE, request.status, request.get_status_display())
    if request.rejection_reason:  # given only when rejected
        return format_html("{} {}", shown, request.rejection_reason)
    return shown


class ShippingRequestInline(PartInline):
    model = ShippingRequest
    fields = [
        "request_link",
        "status_badge",
        "location",
        "fulfiller",
        "shipping_method",
        "lines_summary",
        "created_at",
    ]
    readonly_fields = fields
    verbose_name_plural = "shipping requests"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("location", "fulfiller", "shipping_method")
            .prefetch_related("lines__product")
        )

    @admin.display(description="request")
    def request_link(self, obj):
        url = reverse("admin:orders_shippingrequest_change", args=[obj.pk])
        return format_html('<a href="{}">#{}</a>', url, obj.pk)

    @admin.display(description="status")
    def status_badge(self, obj):
        return request_status(obj)

    @admin.display(description="lines")
    def lines_summary(self, obj):
        return _lines_summary(obj.lines.all())


@admin.display(description="status", ordering="status")
def fulfillment_status(obj):
    """Shipped, or canceled by its 3PL (its stock put back)."""
    return badge(FULFILLMENT_BADGE, obj.status, obj.get_status_display())


class FulfillmentInline(PartInline):
    model = Fulfillment
    fields = [
        fulfillment_status,
        "carrier",
        "tracking",
        "shipped_at",
        "from_location",
        "integration",
        "lines_summary",
        "created_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("integration", "shipping_request__location")
            .prefetch_related("lines__product")
        )

    @admin.display(description="tracking")
    def tracking(self, obj):
        return _tracking(obj)

    @admin.display(description="from")
    def from_location(self, obj):
        return obj.shipping_request.location

    @admin.display(description="lines")
    def lines_summary(self, obj):
        return _lines_summary(obj.lines.all())


def _tracking(fulfillment):
    if not fulfillment.tracking_number:
        return "—"
    if fulfillment.tracking_url:
        return format_html('<a href="{}">{}</a>', fulfillment.tracking_url, fulfillment.tracking_number)
    return fulfillment.tracking_number


# --- orders ---------------------------------------------------------------------------------------------


@admin.register(Order)
class OrderAdmin(OrganizationColumnMixin, ObjectActionsMixin, OrganizationScopedAdmin):
    """
    Orders arrive from channels and change only through orders.services: the page is read-only, and the
    hold / release / cancel actions and buttons need the "manage" permission (change, on the order's scope).
    """

    list_display = [
        "number",
        "external_id",
        "status_badge",
        "source",
        "total_display",
        "created_at",
        "organization",
    ]
    list_display_links = ["number", "external_id"]
    list_filter = ["status", "source", "shipping_requests__fulfiller"]
    list_select_related = ["source", "organization"]
    # Multi-valued paths (lines, fulfillments): the changelist de-duplicates with EXISTS, not DISTINCT.
    search_fields = ["number", "external_id", "lines__sku", "fulfillments__tracking_number"]
    search_help_text = "Order number, external id, SKU or tracking number."
    actions = ["cancel_selected", "hold_selected", "release_selected"]
    inlines = [OrderLineInline, ShippingRequestInline, FulfillmentInline]
    change_form_template = "admin/orders/order/change_form.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "organization",
                    "source",
                    "external_id",
                    "number",
                    "status_badge",
                    "payment_status",
                    "created_at",
                    "updated_at",
                    "canceled_at",
                ]
            },
        ),
        ("Hold", {"fields": ["hold_reason", "hold_until"]}),
        ("Customer", {"fields": ["customer_display", "shipping_address_display", "billing_address_display"]}),
        ("Shipping", {"fields": ["shipping_method_code", "shipping_method"]}),
        (
            "Totals",
            {"fields": ["currency", "subtotal", "shipping_total", "tax_total", "discount_total", "total"]},
        ),
        ("Notes", {"fields": ["notes", "tags"]}),
    ]
    readonly_fields = [f for _, options in fieldsets for f in options["fields"]]

    # --- permissions: viewed here, changed only through the services ---------------------------------------
    def has_add_permission(self, request, *args):
        return False  # orders come from channels

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # orders are kept; cancel instead

    def has_manage_permission(self, request, obj=None):
        return self.role_allows(request, "change", obj)

    # --- display ----------------------------------------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(ORDER_BADGE, obj.status, obj.get_status_display())

    @admin.display(description="total", ordering="total")
    def total_display(self, obj):
        return f"{obj.total} {obj.currency}"

    @admin.display(description="customer")
    def customer_display(self, obj):
        customer = obj.customer or {}
        name, email = customer.get("name", ""), customer.get("email", "")
        if email:
            return format_html("{} &lt;{}&gt;", name, email) if name else email
        return name or "—"

    @admin.display(description="shipping address")
    def shipping_address_display(self, obj):
        return _address(obj.shipping_address)

    @admin.display(description="billing address")
    def billing_address_display(self, obj):
        return _address(obj.billing_address)

    def history(self, order):
        """The outbox events of the order, its shipping requests and fulfillments, newest first."""
        request_ids = [str(pk) for pk in order.shipping_requests.values_list("pk", flat=True)]
        fulfillment_ids = [str(pk) for pk in order.fulfillments.values_list("pk", flat=True)]
        events = (
            OutboxEvent.objects.filter(organization_id=order.organization_id)
            .filter(
                Q(object_type="order", object_id=str(order.pk))
                | Q(object_type="shipping_request", object_id__in=request_ids)
                | Q(object_type="fulfillment", object_id__in=fulfillment_ids)
            )
            .select_related("integration")
            .order_by("-created_at", "-pk")[:HISTORY_LIMIT]
        )
        rows = format_html_join(
            "",
            '<tr data-event="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    e.type,
                    _when(e.created_at),
                    e.type,
                    e.integration.name if e.integration else "—",
                    _event_detail(e),
                    _when(e.dispatched_at) if e.dispatched_at else "pending",
                )
                for e in events
            ),
        )
        return format_html(
            '<table class="sy-events" id="sy-order-history"><thead><tr><th>When</th><th>Event</th>'
            "<th>Integration</th><th>Detail</th><th>Delivered</th></tr></thead><tbody>{}</tbody></table>",
            rows or format_html('<tr><td colspan="5">{}</td></tr>', "No events yet."),
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            allowed = ORDER_TRANSITIONS[OrderStatus(obj.status)]
            context.update(
                can_manage=self.has_manage_permission(request, obj),
                # A hint only (the service decides): an order with open shipping requests cannot be held.
                can_hold=OrderStatus.ON_HOLD in allowed
                and not obj.shipping_requests.filter(status__in=services.OPEN_REQUEST).exists(),
                can_release=obj.status == OrderStatus.ON_HOLD,
                can_cancel=OrderStatus.CANCELED in allowed,
                order_history=self.history(obj),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- buttons on the order page, and the same as bulk actions ------------------------------------------
    def action_label(self, obj):
        return f"Order {obj}"

    def action_queryset(self, queryset):
        return queryset.select_related("source", "organization")

    @object_action(
        "hold",
        permission="manage",
        refused=(services.OrderConflict,),
        bulk="Hold selected for review",
        done=("Held", "order"),
    )
    def hold(self, request, order):
        services.hold(order, f"Held for review by {request.user.get_username()}.")
        return f"Held order {order}."

    @object_action(
        "release",
        permission="manage",
        refused=(services.OrderConflict,),
        bulk="Release selected",
        done=("Released", "order"),
    )
    def release(self, request, order):
        services.release(order)
        return f"Released order {order}."

    @object_action(
        "cancel",
        permission="manage",
        refused=(services.OrderConflict,),
        bulk="Cancel selected",
        done=("Canceled", "order"),
    )
    def cancel(self, request, order):
        services.cancel_order(order, reason=f"by {request.user.get_username()} in the admin")
        return f"Canceled order {order}."


def _event_detail(event):
    payload = event.payload or {}
    if event.object_type == "order":
        hold = payload.get("hold") or {}
        status = OrderStatus(payload["status"]).label if payload.get("status") in OrderStatus.values else ""
        return f"{status}: {hold['reason']}" if hold.get("reason") else status
    if event.object_type == "fulfillment":
        return " ".join(filter(None, [payload.get("carrier"), payload.get("tracking_number")])) or "shipped"
    return f"request #{event.object_id} ({payload.get('status', '')})"


# --- shipping requests and fulfillments -------------------------------------------------------------------


class ShippingRequestLineInline(PartInline):
    model = ShippingRequestLine
    fields = ["product", "quantity", "fulfilled_quantity"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")


@admin.register(ShippingRequest)
class ShippingRequestAdmin(ReadOnlyAdminMixin, OrganizationColumnMixin, OrganizationScopedAdmin):
    """What each location must ship; written by routing and by the 3PLs through the API."""

    list_display = [
        "id",
        "order",
        "status_badge",
        "location",
        "fulfiller",
        "created_at",
        "acknowledged_at",
        "organization",
    ]
    list_filter = ["status", "fulfiller", "location"]
    list_select_related = ["order", "location", "fulfiller", "organization"]
    search_fields = ["order__number", "order__external_id", "fulfillments__tracking_number"]
    search_help_text = "Order number, external id or tracking number."
    fields = [
        "organization",
        "order",
        "status_badge",
        "location",
        "fulfiller",
        "shipping_method",
        "shipping_address",  # its own copy: the order's while open, where it went once closed
        "customer",
        "acknowledged_at",
        "rejected_at",
        "rejection_reason",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [ShippingRequestLineInline]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return request_status(obj)


class FulfillmentLineInline(PartInline):
    model = FulfillmentLine
    fields = ["product", "quantity"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")


@admin.register(Fulfillment)
class FulfillmentAdmin(ReadOnlyAdminMixin, OrganizationColumnMixin, OrganizationScopedAdmin):
    """Shipments posted by the 3PLs, with carrier and tracking."""

    list_display = [
        "tracking_display",
        fulfillment_status,
        "carrier",
        "order",
        "from_location",
        "integration",
        "shipped_at",
        "organization",
    ]
    list_display_links = ["tracking_display"]
    list_filter = ["status", "integration", "shipping_request__fulfiller", "shipping_request__status"]
    list_select_related = ["order", "integration", "shipping_request__location", "organization"]
    search_fields = ["order__number", "order__external_id", "tracking_number", "external_id"]
    search_help_text = "Order number, external id, tracking number or fulfillment id."
    fields = [
        "organization",
        "order",
        "shipping_request",
        "integration",
        "external_id",
        "carrier",
        "tracking_number",
        "tracking_url",
        "shipped_at",
        fulfillment_status,
        "canceled_at",
        "created_by",
        "created_at",
    ]
    readonly_fields = fields
    inlines = [FulfillmentLineInline]

    @admin.display(description="tracking number", ordering="tracking_number")
    def tracking_display(self, obj):
        return obj.tracking_number or f"Fulfillment {obj.pk}"

    @admin.display(description="from", ordering="shipping_request__location__name")
    def from_location(self, obj):
        return obj.shipping_request.location


# --- shipping methods -----------------------------------------------------------------------------------


@admin.register(ShippingMethod)
class ShippingMethodAdmin(OrganizationColumnMixin, OrganizationScopedAdmin):
    list_display = ["code", "name", "organization"]
    list_select_related = ["organization"]
    search_fields = ["code", "name"]


@admin.register(ShippingMethodMapping)
class ShippingMethodMappingAdmin(ConfigHistoryAdmin, OrganizationScopedAdmin):
    form = same_organization_form("integration", "method")
    list_display = ["external_code", "integration", "method"]
    list_filter = ["integration"]
    list_select_related = ["integration", "method"]
    search_fields = ["external_code", "method__code", "method__name"]
