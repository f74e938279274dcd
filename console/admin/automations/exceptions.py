"""
Exceptions in the admin: what could not flow, raised and auto-resolved by the engines; a person resolves or
dismisses the rest (bulk actions), filtered by category, kind and integration.
"""

from django.contrib import admin, messages
from django.contrib.admin.filters import RelatedFieldListFilter
from django.db.models import Count, Q
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from automations.choices import EXCEPTION_BADGE, EXCEPTION_CATEGORIES, ExceptionStatus
from automations.exceptions import close_exceptions
from automations.models import SyncException

from ...display import badge
from ..mixins import OrganizationColumnMixin, OrganizationScopedAdmin, ReadOnlyAdminMixin

# Where an exception's entity opens in the admin.
ENTITY_PAGES = {
    "order": "admin:orders_order_change",
    "location": "admin:inventory_location_change",
    "product": "admin:inventory_product_change",
    "shipping_request": "admin:orders_shippingrequest_change",
    "fulfillment": "admin:orders_fulfillment_change",
}


class CategoryFilter(admin.SimpleListFilter):
    """The notification categories (EngineSettings.notify_categories): their kinds at once."""

    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in EXCEPTION_CATEGORIES.items()]

    def queryset(self, request, queryset):
        if self.value() in EXCEPTION_CATEGORIES:
            return queryset.filter(kind__in=EXCEPTION_CATEGORIES[self.value()][1])
        return queryset


class IntegrationFilter(RelatedFieldListFilter):
    """
    The integrations of the user's (scoped) exceptions, each with its open count: which one needs a person,
    at a glance. One aggregate over the scoped queryset, so no other organization's integration is named.
    """

    def field_choices(self, field, request, model_admin):
        rows = (
            model_admin.get_queryset(request)
            .filter(integration__isnull=False)
            .values("integration", "integration__name")
            .annotate(open=Count("pk", filter=Q(status=ExceptionStatus.OPEN)))
            .order_by("integration__name", "integration")
        )
        return [(r["integration"], f"{r['integration__name']} ({r['open']} open)") for r in rows]


@admin.register(SyncException)
class SyncExceptionAdmin(ReadOnlyAdminMixin, OrganizationColumnMixin, OrganizationScopedAdmin):
    """What could not flow: raised and auto-resolved by the engines; a person resolves or dismisses the rest."""

    list_display = [
        "kind",
        "status_badge",
        "integration",
        "entity",
        "occurrences",
        "first_seen",
        "last_seen",
        "notified",
        "message_excerpt",
        "organization",
    ]
    list_filter = ["status", CategoryFilter, "kind", ("integration", IntegrationFilter)]
    list_select_related = ["integration", "organization"]
    search_fields = ["message", "entity_id"]
    actions = ["resolve_selected", "dismiss_selected"]
    fields = [
        "organization",
        "integration",
        "kind",
        "status_badge",
        "entity",
        "message",
        "data",
        "occurrences",
        "first_seen",
        "last_seen",
        "notified_at",
        "resolved_at",
    ]
    readonly_fields = fields

    def has_manage_permission(self, request, obj=None):
        return self.role_allows(request, "change", obj)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(EXCEPTION_BADGE, obj.status, obj.get_status_display())

    @admin.display(description="e-mailed", ordering="notified_at")
    def notified(self, obj):
        # Not e-mailed yet: waiting for the next digest, or its category is not switched on.
        if obj.notified_at is None:
            return badge({}, "not_notified", "not yet")
        return format_html(
            '<span title="{}">{}</span>',
            f"{obj.notified_at:%Y-%m-%d %H:%M} UTC",
            badge({"notified": "green"}, "notified", "e-mailed"),
        )

    @admin.display(description="entity")
    def entity(self, obj):
        if not obj.entity_type:
            return "—"
        label = f"{obj.entity_type.replace('_', ' ')} {obj.entity_id}".strip()
        try:
            url = reverse(ENTITY_PAGES[obj.entity_type], args=[obj.entity_id])
        except (KeyError, NoReverseMatch):
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="message")
    def message_excerpt(self, obj):
        return format_html('<span title="{}">{}</span>', obj.message, Truncator(obj.message).chars(80))

    def _close(self, request, queryset, status, verb):
        # Only open ones move; a resolved or dismissed exception that recurs comes back as a new row.
        selected = queryset.count()
        allowed = queryset.restrict(request.user, "change").values("pk")
        closed = close_exceptions(SyncException.objects.filter(pk__in=allowed), status)
        skipped = selected - closed
        if closed:
            self.message_user(
                request, f"{verb} {closed} exception{'s' if closed != 1 else ''}.", messages.SUCCESS
            )
        if skipped:
            self.message_user(
                request, f"{skipped} not open (or not yours to change): left as they were.", messages.WARNING
            )

    @admin.action(description="Resolve selected", permissions=["manage"])
    def resolve_selected(self, request, queryset):
        self._close(request, queryset, ExceptionStatus.RESOLVED, "Resolved")

    @admin.action(description="Dismiss selected", permissions=["manage"])
    def dismiss_selected(self, request, queryset):
        self._close(request, queryset, ExceptionStatus.DISMISSED, "Dismissed")
