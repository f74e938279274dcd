"""The audit trail of integrations: read-only, newest first, filterable by integration and kind."""

from django.contrib import admin
from django.utils.text import Truncator

from integrations.models import IntegrationEvent

from ..mixins import OrganizationScopedAdmin, ReadOnlyAdminMixin


@admin.register(IntegrationEvent)
class IntegrationEventAdmin(ReadOnlyAdminMixin, OrganizationScopedAdmin):
    list_display = ["created_at", "integration_label", "kind", "actor", "message_excerpt"]
    list_filter = ["kind", "integration"]
    list_select_related = ["integration"]
    search_fields = ["message", "integration_name", "actor"]
    fields = [
        "created_at",
        "organization",
        "integration",
        "integration_name",
        "kind",
        "actor",
        "message",
        "data",
    ]
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="integration", ordering="integration_name")
    def integration_label(self, obj):
        return obj.integration.name if obj.integration else f"{obj.integration_name} (deleted)"

    @admin.display(description="message")
    def message_excerpt(self, obj):
        return Truncator(obj.message).chars(100)
