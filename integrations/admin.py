import json

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator, slugify
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from inventory.models import SkuMapping
from orders.models import ShippingMethodMapping
from organizations.admin_mixins import (
    MEMBER_PERMS,
    OrganizationColumnMixin,
    OrganizationScopedAdmin,
    OrganizationScopedInline,
    ReadOnlyAdminMixin,
    badge,
    html_table,
)
from organizations.choices import Role
from organizations.models import Organization
from organizations.scoping import scope_for

from . import services
from .choices import BADGE, EventKind, IntegrationStatus, Workflow
from .forms import SETTING_PREFIX, ChooseConnectorForm, ConnectorForm, ImportForm, integration_form_for
from .models import Connector, Integration, IntegrationEvent, WebhookSubscription

User = get_user_model()

STATUS_FIELDS = [
    "status_badge",
    "status_reason",
    "status_changed_at",
    "last_error",
    "last_error_at",
    "last_activity_at",
]
FLOW_FIELDS = [f"flow_{flow.value}" for flow in Workflow]
PERM_LABELS = {
    "view_integration": "View",
    "change_integration": "Change",
    "manage_keys_integration": "Manage keys",
}


def status_badge(status, label=None):
    return badge(BADGE, status, label or IntegrationStatus(status).label)


@admin.register(Connector)
class ConnectorAdmin(OrganizationScopedAdmin):
    """The catalog: public connectors (read-only to org admins) and each organization's private ones."""

    shared_when_null = True
    form = ConnectorForm
    list_display = ["name", "key", "type", "visibility", "version", "integration_count"]
    list_filter = ["type"]
    search_fields = ["name", "key"]
    ordering = ["name"]

    def get_queryset(self, request):
        scope = scope_for(request.user)
        # Count only integrations the user may see: public connectors are shared across organizations.
        visible = Q() if scope.is_superuser else Q(integrations__organization__in=scope.org_ids)
        return super().get_queryset(request).annotate(_integrations=Count("integrations", filter=visible))

    @admin.display(description="visibility")
    def visibility(self, obj):
        return "Public" if obj.is_public else f"Private to {obj.organization}"

    @admin.display(description="integrations", ordering="_integrations")
    def integration_count(self, obj):
        return obj._integrations

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if not scope_for(request.user).is_superuser and "organization" in form.base_fields:
            form.base_fields["organization"].required = True  # org admins make private connectors only
            form.base_fields["organization"].empty_label = None
        return form


class ScopedEventsMixin:
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


class MappingInline(OrganizationScopedInline):
    """Mapping rows on the integration's page; the hub side is chosen from the integration's organization."""

    organization_field = "integration__organization"
    member_access_field = "integration"
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
class IntegrationAdmin(OrganizationColumnMixin, ScopedEventsMixin, OrganizationScopedAdmin):
    member_access_field = ""
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

    # --- list -----------------------------------------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="last error")
    def last_error_excerpt(self, obj):
        if not obj.last_error:
            return "—"
        return format_html('<span title="{}">{}</span>', obj.last_error, Truncator(obj.last_error).chars(60))

    # --- the add wizard: choose a connector, then a form generated from its settings schema -------------
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

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = integration_form_for(self.chosen_connector(request, obj))
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        connector = self.chosen_connector(request, obj)
        props = (connector.settings_schema or {}).get("properties", {}) if connector else {}
        kinds = ", ".join(services.json_mapping_kinds(connector)) if connector else ""
        fieldsets = [(None, {"fields": ["organization", "connector_display", "name", "notification_email"]})]
        if obj is not None:
            fieldsets.append(("Status", {"fields": STATUS_FIELDS}))
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
                {"fields": FLOW_FIELDS, "description": "A switched-off flow moves nothing in or out."},
            )
        )
        if obj is not None:
            fieldsets.append(("API keys", {"fields": ["api_keys"]}))
            fieldsets.append(("Recent events", {"fields": ["recent_events"]}))
        return fieldsets

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # the add wizard is settings only

    def get_readonly_fields(self, request, obj=None):
        fields = ["connector_display", *STATUS_FIELDS, "recent_events", "api_keys"]
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

    @admin.display(description="connector")
    def connector_display(self, obj):
        connector = obj.connector if obj and obj.connector_id else None
        if connector is None:
            return "—"
        return f"{connector.name} ({connector.get_type_display()}, v{connector.version})"

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.pop("connector", None)
        return initial

    def save_model(self, request, obj, form, change):
        changed = [f for f in form.changed_data if not f.startswith(SETTING_PREFIX) and f != "mappings"]
        services.save_integration(
            obj,
            settings=form.cleaned_settings,
            mappings=form.cleaned_data.get("mappings") or {},
            actor=request.user,
            changed_fields=changed if change else (),
        )

    def delete_model(self, request, obj):
        services.delete_integration(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for integration in queryset.select_related("connector", "organization"):
            services.delete_integration(integration, actor=request.user)

    # --- actions --------------------------------------------------------------------------------------
    def _move_each(self, request, queryset, move, verb):
        done, refused = 0, []
        for integration in queryset.select_related("connector", "organization"):
            if not self.has_change_permission(request, integration):
                refused.append(f"{integration.name}: not allowed")
                continue
            try:
                move(integration, actor=request.user)
                done += 1
            except services.TransitionRefused as exc:
                refused.append(exc.messages[0])
        if done:
            self.message_user(
                request, f"{verb} {done} integration{'s' if done != 1 else ''}.", messages.SUCCESS
            )
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description="Disable selected integrations", permissions=["change"])
    def disable_selected(self, request, queryset):
        self._move_each(request, queryset, services.disable, "Disabled")

    @admin.action(description="Enable selected integrations", permissions=["change"])
    def enable_selected(self, request, queryset):
        self._move_each(request, queryset, services.enable, "Enabled")

    @admin.action(description="Export configuration of selected (JSON, no secrets)", permissions=["view"])
    def export_selected(self, request, queryset):
        items = list(queryset.select_related("connector", "organization"))
        return self._export_response(request, items)

    def _export_response(self, request, integrations):
        payload = [services.export_configuration(i) for i in integrations]
        for integration in integrations:
            services.record_event(
                integration, EventKind.EXPORTED, "Configuration exported.", actor=request.user
            )
        body = payload[0] if len(payload) == 1 else payload
        name = slugify(integrations[0].name) if len(integrations) == 1 else "integrations"
        response = HttpResponse(json.dumps(body, indent=2, sort_keys=True), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response

    # --- extra pages: disable/enable buttons, export, import, member access -----------------------------
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="integrations_integration_import"),
            path("<path:object_id>/export/", wrap(self.export_view), name="integrations_integration_export"),
            path(
                "<path:object_id>/disable/", wrap(self.disable_view), name="integrations_integration_disable"
            ),
            path("<path:object_id>/enable/", wrap(self.enable_view), name="integrations_integration_enable"),
            path("<path:object_id>/access/", wrap(self.access_view), name="integrations_integration_access"),
            *super().get_urls(),
        ]

    def _button_move(self, request, object_id, move, verb):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        integration = self.get_object(request, object_id)
        if not self.has_change_permission(request, integration):
            raise PermissionDenied
        try:
            move(integration, actor=request.user)
            self.message_user(request, f"{verb} “{integration.name}”.", messages.SUCCESS)
        except services.TransitionRefused as exc:
            self.message_user(request, exc.messages[0], messages.ERROR)
        return HttpResponseRedirect(reverse("admin:integrations_integration_change", args=[integration.pk]))

    def disable_view(self, request, object_id):
        return self._button_move(request, object_id, services.disable, "Disabled")

    def enable_view(self, request, object_id):
        return self._button_move(request, object_id, services.enable, "Enabled")

    def export_view(self, request, object_id):
        integration = self.get_object(request, object_id)
        if not self.has_view_permission(request, integration):
            raise PermissionDenied
        return self._export_response(request, [integration])

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        scope = scope_for(request.user)
        orgs = (
            Organization.objects.all()
            if scope.is_superuser
            else Organization.objects.filter(pk__in=scope.admin_org_ids)
        )
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
                        services.import_configuration(
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
                        skipped = services.describe_skipped(
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

    def access_view(self, request, object_id):
        """Per-integration object permissions (django-guardian) for the organization's members."""
        integration = self.get_object(request, object_id)
        if not scope_for(request.user).administers(integration.organization_id):
            raise PermissionDenied
        members = list(
            User.objects.filter(
                memberships__organization=integration.organization, memberships__role=Role.MEMBER
            ).order_by("username")
        )
        if request.method == "POST":
            changes = []
            for user in members:
                held = set(get_perms(user, integration))
                for perm in MEMBER_PERMS:
                    wanted = request.POST.get(f"perm-{user.pk}-{perm}") == "on"
                    if wanted and perm not in held:
                        assign_perm(f"integrations.{perm}", user, integration)
                        changes.append(f"+{perm} {user.get_username()}")
                    elif not wanted and perm in held:
                        remove_perm(f"integrations.{perm}", user, integration)
                        changes.append(f"-{perm} {user.get_username()}")
            if changes:
                services.record_event(
                    integration,
                    EventKind.PERMISSIONS_CHANGED,
                    "Member access changed: " + ", ".join(changes),
                    actor=request.user,
                    data={"changes": changes},
                )
            self.message_user(request, f"Saved member access ({len(changes)} change(s)).", messages.SUCCESS)
            return HttpResponseRedirect(request.path)
        rows = [
            {
                "user": user,
                "perms": [
                    (perm, PERM_LABELS[perm], perm in set(get_perms(user, integration)))
                    for perm in MEMBER_PERMS
                ],
            }
            for user in members
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": integration,
            "title": f"Member access to “{integration.name}”",
            "rows": rows,
            "perm_labels": [PERM_LABELS[p] for p in MEMBER_PERMS],
        }
        return TemplateResponse(request, "admin/integrations/integration/access.html", context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(
                can_move=self.has_change_permission(request, obj),
                can_manage_access=scope_for(request.user).administers(obj.organization_id),
                is_disabled=obj.status == IntegrationStatus.DISABLED,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(IntegrationEvent)
class IntegrationEventAdmin(ReadOnlyAdminMixin, OrganizationScopedAdmin):
    """The audit trail: read-only, newest first, filterable by integration and kind."""

    member_access_field = "integration"
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


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(OrganizationScopedAdmin):
    """Webhook subscriptions of the organization's integrations; the signing secret is never shown."""

    organization_field = "integration__organization"
    member_access_field = "integration"
    list_display = ["url", "integration", "event_list", "active", "created_at"]
    list_filter = ["active", "integration"]
    list_select_related = ["integration"]
    search_fields = ["url", "integration__name"]
    exclude = ["secret"]
    # URL and events are checked (SSRF guard, grants) by the API's service only: not editable here.
    readonly_fields = ["integration", "url", "event_types", "created_at", "updated_at"]

    def has_add_permission(self, request, *args):
        return False  # made through the API, which shows the secret once

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.event_types)
