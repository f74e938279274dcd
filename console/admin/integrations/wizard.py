"""
Adding an integration is a wizard: choose a connector, then a form generated from its settings schema. The
same connector-made form and fieldsets serve the change page.
"""

from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.html import escape

from integrations import connector_settings
from integrations.models import Connector

from ...forms.integrations import SETTING_PREFIX, ChooseConnectorForm, integration_form_for


class AddWizardMixin:
    """For IntegrationAdmin, which names its `status_fields` and `flow_fields`."""

    status_fields: list[str] = []
    flow_fields: list[str] = []

    def connector_choices(self, request):
        return self.admin_site._registry[Connector].get_queryset(request).order_by("type", "name")

    def chosen_connector(self, request, obj=None):
        if obj is not None:
            return obj.connector
        try:
            return self.connector_choices(request).get(pk=request.GET.get("connector"))
        except (Connector.DoesNotExist, ValueError, TypeError):
            return None

    def add_view(self, request, form_url="", extra_context=None):
        connector = self.chosen_connector(request)
        if connector is None:
            return self.choose_connector_view(request)
        context = {
            "connector": connector,
            "title": f"Add {connector.name} integration",
            **(extra_context or {}),
        }
        return super().add_view(request, form_url, context)

    def choose_connector_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ChooseConnectorForm()
        form.fields["connector"].queryset = self.connector_choices(request)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Add integration: choose a connector",
            "connectors": self.connector_choices(request),
            "form": form,
        }
        return TemplateResponse(request, "admin/integrations/integration/choose_connector.html", context)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.pop("connector", None)
        return initial

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = integration_form_for(self.chosen_connector(request, obj))
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        connector = self.chosen_connector(request, obj)
        props = (connector.settings_schema or {}).get("properties", {}) if connector else {}
        # The connector's own text, escaped: the admin renders a fieldset's description as HTML.
        kinds = escape(", ".join(connector_settings.json_mapping_kinds(connector))) if connector else ""
        fieldsets = [(None, {"fields": ["organization", "connector_display", "name", "notification_email"]})]
        if obj is not None:
            fieldsets.append(("Status", {"fields": self.status_fields}))
        if props:
            fieldsets.append(
                (
                    "Settings",
                    {
                        "fields": [SETTING_PREFIX + name for name in props],
                        "description": "Checked against the connector's settings schema. Secrets are never shown again.",
                    },
                )
            )
        rows = "below" if obj is not None else "on the integration's page once it is saved"
        fieldsets.append(
            (
                "Mappings",
                {
                    "fields": ["mappings"],
                    "description": (
                        f'Connector-specific kinds as JSON, {{"kind": {{"external": "hub"}}}}; this connector\'s: '
                        f"{kinds or 'none'}. SKU and shipping method mappings are rows, not JSON: the “SKU "
                        f"mappings” and “Shipping method mappings” sections {rows}."
                    ),
                },
            )
        )
        fieldsets.append(
            (
                "Workflows",
                {"fields": self.flow_fields, "description": "A switched-off flow moves nothing in or out."},
            )
        )
        if obj is not None:
            fieldsets.append(("API keys", {"fields": ["api_keys"]}))
            fieldsets.append(("Recent events", {"fields": ["recent_events"]}))
            fieldsets.append(("Configuration changes", {"fields": ["configuration_changes"]}))
        return fieldsets
