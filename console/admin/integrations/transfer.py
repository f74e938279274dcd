"""
Export and import of integration configurations in the admin: "Export configuration" on the page and as a
bulk action (JSON, no secrets), and the import page (a file made by an export, into an organization you
administer).
"""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import slugify

from console import transfer
from integrations import audit
from integrations.choices import EventKind
from organizations.models import Organization

from ...forms.integrations import ImportForm
from ..mixins import object_action


class TransferMixin:
    """For IntegrationAdmin (with ObjectActionsMixin)."""

    @admin.action(description="Export configuration of selected (JSON, no secrets)", permissions=["view"])
    def export_selected(self, request, queryset):
        items = list(queryset.select_related("connector", "organization"))
        return self._export_response(request, items)

    @object_action("export", methods=("GET",), permission="view")
    def export(self, request, integration):
        return self._export_response(request, [integration])

    def _export_response(self, request, integrations):
        payload = [transfer.export_configuration(i) for i in integrations]
        for integration in integrations:
            audit.record_event(integration, EventKind.EXPORTED, "Configuration exported.", actor=request.user)
        body = payload[0] if len(payload) == 1 else payload
        name = slugify(integrations[0].name) if len(integrations) == 1 else "integrations"
        response = HttpResponse(json.dumps(body, indent=2, sort_keys=True), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="integrations_integration_import"),
            *super().get_urls(),
        ]

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        orgs = Organization.objects.restrict(request.user, "add")
        form = ImportForm(request.POST or None, request.FILES or None)
        form.fields["organization"].queryset = orgs
        if orgs.count() == 1:
            form.fields["organization"].initial = orgs.first()
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data["file"]
            items = data if isinstance(data, list) else [data]
            try:
                with transaction.atomic():
                    created = [
                        transfer.import_configuration(
                            item,
                            form.cleaned_data["organization"],
                            name=form.cleaned_data["name"] or None if len(items) == 1 else None,
                            actor=request.user,
                        )
                        for item in items
                    ]
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                for integration in created:
                    self.message_user(
                        request,
                        f"Imported “{integration.name}” ({integration.get_status_display()}). "
                        "Enter its secrets to complete the configuration.",
                        messages.SUCCESS,
                    )
                    imported = integration.events.filter(kind=EventKind.IMPORTED).first()
                    if imported is not None and imported.data.get("skipped"):
                        skipped = transfer.describe_skipped(
                            imported.data["skipped"], integration.organization
                        )
                        self.message_user(request, f"“{integration.name}”: {skipped}", messages.WARNING)
                if len(created) == 1:
                    return HttpResponseRedirect(
                        reverse("admin:integrations_integration_change", args=[created[0].pk])
                    )
                return HttpResponseRedirect(reverse("admin:integrations_integration_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import an integration configuration",
            "form": form,
        }
        return TemplateResponse(request, "admin/integrations/integration/import.html", context)
