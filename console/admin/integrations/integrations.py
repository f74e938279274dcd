"""
The integration page: status, settings and mappings, workflows, keys, recent events and configuration
changes; disable / enable / re-enable, test the connection and a new signing secret as buttons (the first two
also as bulk actions). The add wizard, export/import and member access are mixed in from their modules.
"""

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from console.admin.history import ConfigHistoryAdmin, configuration_changes
from integrations import configuration, lifecycle, manifest
from integrations.choices import IntegrationStatus, Workflow
from integrations.models import Integration, WebhookDelivery
from inventory.models import SkuMapping
from orders.models import ShippingMethodMapping

from ...display import html_table
from ...forms.integrations import SETTING_PREFIX
from ..mixins import (
    ObjectActionsMixin,
    OrganizationColumnMixin,
    OrganizationScopedAdmin,
    OrganizationScopedInline,
    object_action,
)
from .access import MemberAccessMixin
from .common import UNSETTLED, deliveries_links, status_badge
from .transfer import TransferMixin
from .wizard import AddWizardMixin

STATUS_FIELDS = [
    "status_badge",
    "status_reason",
    "status_changed_at",
    "last_error",
    "last_error_at",
    "last_activity_at",
    "consecutive_failures",
    "webhook_deliveries",
]
FLOW_FIELDS = [f"flow_{flow.value}" for flow in Workflow]


def has_endpoint(integration, name) -> bool:
    endpoints = integration.connector.manifest
    return isinstance(endpoints, dict) and bool(endpoints.get(name))


def describe_outcome(integration, outcome) -> str:
    """A health check's answer in one line: ok or failed, status code, duration, and the error or excerpt."""
    answer = f"HTTP {outcome.status_code}" if outcome.status_code else "no answer"
    head = f"Test connection to “{integration.name}”: {'ok' if outcome.ok else 'failed'}, {answer} in "
    head += f"{outcome.duration_ms} ms"
    detail = " ".join((outcome.error or ("" if outcome.ok else outcome.excerpt)).split())
    tail = f". Status: {integration.get_status_display()}."
    return head + (f": {Truncator(detail).chars(300)}" if detail else "") + tail


class MappingInline(OrganizationScopedInline):
    """Mapping rows on the integration's page; the hub side is chosen from the integration's organization."""

    extra = 0
    hub_field = ""

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        field = formset.form.base_fields.get(self.hub_field)
        if obj is not None and field is not None:
            # The mixin scopes choices to all the user's organizations; a mapping stays inside its own.
            field.queryset = field.queryset.filter(organization_id=obj.organization_id)
        return formset


class SkuMappingInline(MappingInline):
    model = SkuMapping
    fields = ["external_sku", "product"]
    autocomplete_fields = ["product"]
    hub_field = "product"
    verbose_name_plural = "SKU mappings"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")


class ShippingMethodMappingInline(MappingInline):
    model = ShippingMethodMapping
    fields = ["external_code", "method"]
    hub_field = "method"
    verbose_name = "shipping method mapping"
    verbose_name_plural = "Shipping method mappings"


@admin.register(Integration)
class IntegrationAdmin(
    ConfigHistoryAdmin,
    OrganizationColumnMixin,
    AddWizardMixin,
    TransferMixin,
    MemberAccessMixin,
    ObjectActionsMixin,
    OrganizationScopedAdmin,
):
    inlines = [SkuMappingInline, ShippingMethodMappingInline]
    list_display = [
        "name",
        "status_badge",
        "connector",
        "organization",
        "last_activity_at",
        "last_error_excerpt",
    ]
    list_display_links = ["name"]
    list_filter = ["status", "connector", "connector__type", "organization"]
    list_select_related = ["connector", "organization"]
    search_fields = ["name", "connector__name", "connector__key"]
    ordering = ["name"]
    actions = ["disable_selected", "enable_selected", "export_selected"]
    delete_confirmation_template = "admin/integrations/integration/delete_confirmation.html"
    delete_selected_confirmation_template = "admin/integrations/integration/delete_selected_confirmation.html"
    change_list_template = "admin/integrations/integration/change_list.html"
    change_form_template = "admin/integrations/integration/change_form.html"
    status_fields = STATUS_FIELDS
    flow_fields = FLOW_FIELDS

    def history_secret_keys(self, obj):
        # Secret settings are moved out of `settings` on save; older history rows may still hold some.
        return {"settings": obj.connector.secret_fields}

    @admin.display(description="last changes (settings, mappings, webhooks, keys)")
    def configuration_changes(self, obj):
        return configuration_changes(obj)

    # --- list -----------------------------------------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="last error")
    def last_error_excerpt(self, obj):
        if not obj.last_error:
            return "—"
        return format_html('<span title="{}">{}</span>', obj.last_error, Truncator(obj.last_error).chars(60))

    # --- the page -------------------------------------------------------------------------------------
    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # the add wizard is settings only

    def get_readonly_fields(self, request, obj=None):
        fields = ["connector_display", *STATUS_FIELDS, "recent_events", "api_keys", "configuration_changes"]
        if obj is not None:
            fields.append("organization")  # an integration never moves between organizations
        return fields

    @admin.display(description="API keys")
    def api_keys(self, obj):
        keys = obj.api_keys.order_by("-created_at")[:20]
        return html_table(
            ["Key", "Name", "State", "Expires", "Last used"],
            (
                (
                    format_html(
                        '<a href="{}"><code>{}</code></a>',
                        reverse("admin:tokens_apikey_change", args=[k.pk]),
                        k.display,
                    ),
                    k.name,
                    k.state().label,
                    timezone.localtime(k.expires_at).strftime("%Y-%m-%d") if k.expires_at else "never",
                    timezone.localtime(k.last_used_at).strftime("%Y-%m-%d %H:%M")
                    if k.last_used_at
                    else "never used",
                )
                for k in keys
            ),
            empty="No keys.",
            link=(reverse("admin:tokens_apikey_add") + f"?integration={obj.pk}", "Issue a key"),
        )

    @admin.display(description="recent events")
    def recent_events(self, obj):
        events = obj.events.order_by("-created_at", "-pk")[:10]
        link = reverse("admin:integrations_integrationevent_changelist") + f"?integration__id__exact={obj.pk}"
        return html_table(
            ["When", "Kind", "Actor", "Message"],
            (
                (
                    timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                    e.get_kind_display(),
                    e.actor,
                    e.message,
                )
                for e in events
            ),
            empty="No events yet.",
            link=(link, "All events of this integration"),
        )

    @admin.display(description="connector")
    def connector_display(self, obj):
        connector = obj.connector if obj and obj.connector_id else None
        if connector is None:
            return "—"
        return f"{connector.name} ({connector.get_type_display()}, v{connector.version})"

    @admin.display(description="webhook deliveries")
    def webhook_deliveries(self, obj):
        counts = WebhookDelivery.objects.filter(integration=obj).aggregate(
            **{status.value: Count("pk", filter=Q(status=status)) for status in UNSETTLED}
        )
        return deliveries_links(f"integration__id__exact={obj.pk}", counts, label="Deliveries")

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            can_move = self.has_change_permission(request, obj)
            context.update(
                can_move=can_move,
                can_manage_access=self.has_manage_access_permission(request, obj),
                is_disabled=obj.status == IntegrationStatus.DISABLED,
                is_error=obj.status == IntegrationStatus.ERROR,
                can_test_connection=can_move and has_endpoint(obj, "health"),
                can_rotate_secret=bool(obj.connector.manifest)
                and self.has_manage_secrets_permission(request, obj),
                deliveries_url=reverse("admin:integrations_webhookdelivery_changelist")
                + f"?integration__id__exact={obj.pk}",
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- saving and deleting through the services ---------------------------------------------------------
    def save_model(self, request, obj, form, change):
        changed = [f for f in form.changed_data if not f.startswith(SETTING_PREFIX) and f != "mappings"]
        configuration.save_integration(
            obj,
            settings=form.cleaned_settings,
            mappings=form.cleaned_data.get("mappings") or {},
            actor=request.user,
            changed_fields=changed if change else (),
        )

    def delete_model(self, request, obj):
        configuration.delete_integration(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for integration in queryset.select_related("connector", "organization"):
            configuration.delete_integration(integration, actor=request.user)

    # --- buttons and bulk actions -------------------------------------------------------------------------
    def action_label(self, obj):
        return obj.name

    def action_queryset(self, queryset):
        return queryset.select_related("connector", "organization")

    def has_manage_secrets_permission(self, request, obj):
        """The signing secret is a credential: org admins and members who manage the integration's keys."""
        return Integration.objects.tenancy.allows(request.user, "manage_keys", obj)

    @object_action(
        "disable",
        refused=(lifecycle.TransitionRefused,),
        bulk="Disable selected integrations",
        done=("Disabled", "integration"),
    )
    def disable(self, request, integration):
        lifecycle.disable(integration, actor=request.user)
        return f"Disabled “{integration.name}”."

    @object_action(
        "enable",
        refused=(lifecycle.TransitionRefused,),
        bulk="Enable selected integrations",
        done=("Enabled", "integration"),
    )
    def enable(self, request, integration):
        lifecycle.enable(integration, actor=request.user)
        return f"Enabled “{integration.name}”."

    @object_action("reenable", refused=(lifecycle.TransitionRefused,))
    def reenable(self, request, integration):
        lifecycle.reenable(integration, actor=request.user)
        return f"Re-enabled “{integration.name}”."

    @object_action("test-connection")
    def test_connection(self, request, integration):
        """Calls the manifest's health endpoint now and says what came back."""
        if not has_endpoint(integration, "health"):
            return f"“{integration.name}” has no health endpoint to call.", messages.ERROR
        outcome = manifest.check_health(integration, actor=request.user)
        integration.refresh_from_db(fields=["status"])
        return describe_outcome(integration, outcome), messages.SUCCESS if outcome.ok else messages.ERROR

    @object_action("signing-secret", permission="manage_secrets")
    def signing_secret(self, request, integration):
        """A new signing secret for manifest calls, shown on this response only (never stored in a page)."""
        if not integration.connector.manifest:
            return (
                f"“{integration.name}” has no manifest: the hub makes no calls to sign.",
                messages.ERROR,
            )
        secret = manifest.rotate_signing_secret(integration, actor=request.user)
        response = TemplateResponse(
            request,
            "admin/integrations/integration/signing_secret.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": integration,
                "title": "Copy the new signing secret now",
                "secret": secret,
            },
        )
        response["Cache-Control"] = "no-store"
        return response
