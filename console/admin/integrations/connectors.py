"""The connector catalog: public connectors (read-only to org admins) and each organization's private ones."""

from django.contrib import admin
from django.db.models import Count, Q

from integrations.models import Connector
from organizations.models import Organization

from ...forms.integrations import ConnectorForm
from ..mixins import OrganizationScopedAdmin


@admin.register(Connector)
class ConnectorAdmin(OrganizationScopedAdmin):
    form = ConnectorForm
    list_display = ["name", "key", "type", "visibility", "version", "integration_count"]
    list_filter = ["type"]
    search_fields = ["name", "key"]
    ordering = ["name"]

    def get_queryset(self, request):
        # Count only integrations of the user's organizations: public connectors are shared across them.
        visible = Q(integrations__organization__in=Organization.objects.restrict(request.user, "view"))
        return super().get_queryset(request).annotate(_integrations=Count("integrations", filter=visible))

    @admin.display(description="visibility")
    def visibility(self, obj):
        return "Public" if obj.is_public else f"Private to {obj.organization}"

    @admin.display(description="integrations", ordering="_integrations")
    def integration_count(self, obj):
        return obj._integrations

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if not request.user.is_superuser and "organization" in form.base_fields:
            form.base_fields["organization"].required = True  # org admins make private connectors only
            form.base_fields["organization"].empty_label = None
        return form
