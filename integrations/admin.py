import json

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
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
    granted_integrations,
    html_table,
)
from organizations.choices import Role
from organizations.history_admin import ConfigHistoryAdmin, configuration_changes
from organizations.models import Organization
from organizations.scoping import scope_for

from . import delivery, manifest, services, webhooks
from .choices import (
    BADGE,
    DELIVERY_BADGE,
    TEST_EVENT_TYPE,
    DeliveryStatus,
    EventKind,
    EventType,
    IntegrationStatus,
    Workflow,
)
from .forms import SETTING_PREFIX, ChooseConnectorForm, ConnectorForm, ImportForm, integration_form_for
from .models import (
    Connector,
    Integration,
    IntegrationEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)

User = get_user_model()

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
PERM_LABELS = {
    "view_integration": "View",
    "change_integration": "Change",
    "manage_keys_integration": "Manage keys",
}


# The delivery states someone may need to act on, counted on the integration and subscription pages.
UNSETTLED = (DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.DEAD)


def status_badge(status, label=None):
    return badge(BADGE, status, label or IntegrationStatus(status).label)


def deliveries_links(query, counts, *, label):
    """A link to the filtered deliveries list, then one per status with its count."""
    url = reverse("admin:integrations_webhookdelivery_changelist")
    parts = format_html_join(
        ", ",
        '<a href="{}?{}&amp;status__exact={}" data-status="{}">{} {}</a>',
        ((url, query, status, status, counts[status], status) for status in counts),
    )
    return format_html('<a href="{}?{}">{}</a>: {}', url, query, label, parts)


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
class IntegrationAdmin(
    ConfigHistoryAdmin, OrganizationColumnMixin, ScopedEventsMixin, OrganizationScopedAdmin
):
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
        # The connector's own text, escaped: the admin renders a fieldset's description as HTML.
        kinds = escape(", ".join(services.json_mapping_kinds(connector))) if connector else ""
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
            fieldsets.append(("Configuration changes", {"fields": ["configuration_changes"]}))
        return fieldsets

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
            path(
                "<path:object_id>/reenable/",
                wrap(self.reenable_view),
                name="integrations_integration_reenable",
            ),
            path(
                "<path:object_id>/test-connection/",
                wrap(self.test_connection_view),
                name="integrations_integration_test_connection",
            ),
            path(
                "<path:object_id>/signing-secret/",
                wrap(self.signing_secret_view),
                name="integrations_integration_signing_secret",
            ),
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

    def reenable_view(self, request, object_id):
        return self._button_move(request, object_id, services.reenable, "Re-enabled")

    def may_manage_secrets(self, request, integration) -> bool:
        """The signing secret is a credential: org admins and members who manage the integration's keys."""
        return scope_for(request.user).administers(integration.organization_id) or request.user.has_perm(
            "integrations.manage_keys_integration", integration
        )

    def _posted_object(self, request, object_id):
        if request.method != "POST":
            return None, HttpResponseNotAllowed(["POST"])
        integration = self.get_object(request, object_id)
        back = HttpResponseRedirect(reverse("admin:integrations_integration_change", args=[integration.pk]))
        return integration, back

    def test_connection_view(self, request, object_id):
        """Calls the manifest's health endpoint now and says what came back."""
        integration, back = self._posted_object(request, object_id)
        if integration is None:
            return back
        if not self.has_change_permission(request, integration):
            raise PermissionDenied
        if not has_endpoint(integration, "health"):
            self.message_user(
                request, f"“{integration.name}” has no health endpoint to call.", messages.ERROR
            )
            return back
        outcome = manifest.check_health(integration, actor=request.user)
        integration.refresh_from_db(fields=["status"])
        self.message_user(
            request,
            describe_outcome(integration, outcome),
            messages.SUCCESS if outcome.ok else messages.ERROR,
        )
        return back

    def signing_secret_view(self, request, object_id):
        """A new signing secret for manifest calls, shown on this response only (never stored in a page)."""
        integration, back = self._posted_object(request, object_id)
        if integration is None:
            return back
        if not self.may_manage_secrets(request, integration):
            raise PermissionDenied
        if not integration.connector.manifest:
            self.message_user(
                request,
                f"“{integration.name}” has no manifest: the hub makes no calls to sign.",
                messages.ERROR,
            )
            return back
        secret = services.rotate_signing_secret(integration, actor=request.user)
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
            can_move = self.has_change_permission(request, obj)
            context.update(
                can_move=can_move,
                can_manage_access=scope_for(request.user).administers(obj.organization_id),
                is_disabled=obj.status == IntegrationStatus.DISABLED,
                is_error=obj.status == IntegrationStatus.ERROR,
                can_test_connection=can_move and has_endpoint(obj, "health"),
                can_rotate_secret=bool(obj.connector.manifest) and self.may_manage_secrets(request, obj),
                deliveries_url=reverse("admin:integrations_webhookdelivery_changelist")
                + f"?integration__id__exact={obj.pk}",
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


SUBSCRIPTION_BADGE = {"active": "green", "failing": "amber", "off": "red"}


def _deliveries_of(status):
    """Deliveries of the row's subscription in `status`: a subquery run for the listed rows only."""
    counted = (
        WebhookDelivery.objects.filter(subscription=OuterRef("pk"), status=status)
        .order_by()
        .values("subscription")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ConfigHistoryAdmin, OrganizationScopedAdmin):
    """Webhook subscriptions of the organization's integrations; the signing secret is never shown."""

    organization_field = "integration__organization"
    member_access_field = "integration"
    list_display = [
        "url",
        "integration",
        "event_list",
        "state_badge",
        "failing_since",
        "delivery_counts",
        "created_at",
    ]
    list_filter = ["active", "integration"]
    list_select_related = ["integration"]
    search_fields = ["url", "integration__name"]
    exclude = ["secret"]
    # URL and events are checked (SSRF guard, grants) by the API's service only: not editable here. On and
    # off go through the buttons and actions, which record why.
    fields = [
        "integration",
        "url",
        "event_types",
        "state_badge",
        "disabled_at",
        "failing_since",
        "last_sequence",
        "delivery_counts",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    actions = ["send_test_event_selected", "switch_on_selected", "switch_off_selected"]
    change_form_template = "admin/integrations/webhooksubscription/change_form.html"

    def has_add_permission(self, request, *args):
        return False  # made through the API, which shows the secret once

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(**{f"_{status.value}": _deliveries_of(status) for status in UNSETTLED})
        )

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.event_types)

    @admin.display(description="state", ordering="active")
    def state_badge(self, obj):
        if not obj.active:
            return format_html(
                "{}<br><small>{}</small>",
                badge(SUBSCRIPTION_BADGE, "off", "Switched off"),
                obj.disabled_reason or "No reason recorded.",
            )
        if obj.failing_since:
            return badge(SUBSCRIPTION_BADGE, "failing", "Failing")
        return badge(SUBSCRIPTION_BADGE, "active", "Active")

    @admin.display(description="deliveries")
    def delivery_counts(self, obj):
        counts = {status.value: getattr(obj, f"_{status.value}", 0) for status in UNSETTLED}
        return deliveries_links(f"subscription__id__exact={obj.pk}", counts, label="All")

    # --- test event, on and off: actions on the list, buttons on the page --------------------------------
    def _test_event(self, request, subscription):
        if not subscription.active:
            return f"{subscription.url} is switched off: switch it on first.", messages.WARNING
        if subscription.integration.status == IntegrationStatus.DISABLED:
            return f"“{subscription.integration}” is disabled: nothing is sent while it is.", messages.WARNING
        sent = delivery.send_test_event(subscription, actor=request.user)
        link = reverse("admin:integrations_webhookdelivery_change", args=[sent.pk])
        return (
            format_html(
                'Test event <a href="{}">{}</a> queued for {}.', link, sent.event_id, subscription.url
            ),
            messages.SUCCESS,
        )

    def _switch_on(self, request, subscription):
        if not webhooks.reactivate(subscription, actor=request.user):
            return f"{subscription.url} is already on.", messages.INFO
        return f"Switched {subscription.url} back on; what it owes goes out now.", messages.SUCCESS

    def _switch_off(self, request, subscription):
        if not subscription.active:
            return f"{subscription.url} is already off.", messages.INFO
        delivery.switch_off(subscription, f"Switched off by {services.actor_label(request.user)}.")
        return f"Switched {subscription.url} off; its deliveries wait until it is on again.", messages.SUCCESS

    def _each(self, request, queryset, do):
        for subscription in queryset.select_related("integration__organization"):
            if not self.has_change_permission(request, subscription):
                self.message_user(request, f"{subscription.url}: not allowed.", messages.WARNING)
                continue
            self.message_user(request, *do(request, subscription))

    @admin.action(description="Send a test event to selected subscriptions", permissions=["change"])
    def send_test_event_selected(self, request, queryset):
        self._each(request, queryset, self._test_event)

    @admin.action(description="Switch selected subscriptions back on", permissions=["change"])
    def switch_on_selected(self, request, queryset):
        self._each(request, queryset, self._switch_on)

    @admin.action(description="Switch selected subscriptions off", permissions=["change"])
    def switch_off_selected(self, request, queryset):
        self._each(request, queryset, self._switch_off)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        name = "integrations_webhooksubscription_"
        return [
            path("<path:object_id>/test-event/", wrap(self.button(self._test_event)), name=name + "test"),
            path("<path:object_id>/switch-on/", wrap(self.button(self._switch_on)), name=name + "switch_on"),
            path(
                "<path:object_id>/switch-off/", wrap(self.button(self._switch_off)), name=name + "switch_off"
            ),
            *super().get_urls(),
        ]

    def button(self, do):
        def view(request, object_id):
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            subscription = self.get_object(request, object_id)
            if not self.has_change_permission(request, subscription):
                raise PermissionDenied
            self.message_user(request, *do(request, subscription))
            return HttpResponseRedirect(
                reverse("admin:integrations_webhooksubscription_change", args=[subscription.pk])
            )

        return view

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["can_act"] = self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # Deleting in the admin is unsubscribing: recorded on the integration's trail like the API's DELETE.
    def delete_model(self, request, obj):
        webhooks.unsubscribe(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for subscription in queryset.select_related("integration__organization"):
            webhooks.unsubscribe(subscription, actor=request.user)


class EventTypeFilter(admin.SimpleListFilter):
    """The catalogue's event types and the test event: no DISTINCT scan of the deliveries table."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return [(t.value, t.value) for t in EventType] + [(TEST_EVENT_TYPE, TEST_EVENT_TYPE)]

    def queryset(self, request, queryset):
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(OrganizationColumnMixin, ReadOnlyAdminMixin, OrganizationScopedAdmin):
    """The delivery log: what was owed to whom, how each attempt went; replayed, never edited."""

    member_access_field = "integration"
    list_display = [
        "created_at",
        "organization",
        "integration",
        "event_type",
        "event_id",
        "sequence",
        "status_badge",
        "attempts",
        "last_status_code",
        "last_duration",
        "next_attempt",
    ]
    list_display_links = ["created_at", "event_id"]
    list_filter = ["status", EventTypeFilter, "integration"]
    list_select_related = ["integration", "organization"]
    # Event ids are pasted from a receiver's logs (the webhook-id header), whole or cut short.
    search_fields = ["^event_id"]
    search_help_text = "The event id (webhook-id header), or its start."
    show_full_result_count = False
    actions = ["replay_selected"]
    change_form_template = "admin/integrations/webhookdelivery/change_form.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "created_at",
                    "organization",
                    "integration",
                    "subscription_link",
                    "event_id",
                    "event_type",
                    "sequence",
                ]
            },
        ),
        (
            "Status",
            {
                "fields": [
                    "status_badge",
                    "attempts",
                    "next_attempt",
                    "last_attempt_at",
                    "last_status_code",
                    "last_duration",
                    "last_error",
                    "last_response_excerpt",
                    "succeeded_at",
                ]
            },
        ),
        ("Body", {"fields": ["pretty_body"]}),
        ("Attempts", {"fields": ["attempt_table"]}),
    ]
    readonly_fields = [
        "subscription_link",
        "status_badge",
        "next_attempt",
        "last_duration",
        "last_response_excerpt",
        "pretty_body",
        "attempt_table",
    ]

    # --- list -----------------------------------------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(DELIVERY_BADGE, obj.status, obj.get_status_display())

    @admin.display(description="last duration", ordering="last_duration_ms")
    def last_duration(self, obj):
        return "—" if obj.last_duration_ms is None else f"{obj.last_duration_ms} ms"

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        if obj.status not in (DeliveryStatus.PENDING, DeliveryStatus.FAILED):
            return "—"  # settled: the stored time is history, not a plan
        return timezone.localtime(obj.next_attempt_at).strftime("%Y-%m-%d %H:%M:%S")

    # --- the page -------------------------------------------------------------------------------------
    @admin.display(description="subscription")
    def subscription_link(self, obj):
        subscription = obj.subscription
        state = "" if subscription.active else " (switched off)"
        return format_html(
            '<a href="{}">{}</a>{}',
            reverse("admin:integrations_webhooksubscription_change", args=[subscription.pk]),
            subscription.url,
            state,
        )

    @admin.display(description="last response")
    def last_response_excerpt(self, obj):
        return pre(obj.last_response) if obj.last_response else "—"

    @admin.display(description="body (as signed and sent)")
    def pretty_body(self, obj):
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return pre(text)

    @admin.display(description="attempts")
    def attempt_table(self, obj):
        # The latest ATTEMPTS_SHOWN, oldest first (a replay starts numbering again at 1).
        attempts = reversed(obj.attempt_log.order_by("-started_at", "-pk")[:ATTEMPTS_SHOWN])
        return html_table(
            ["#", "Started", "URL", "Request headers", "Response", "Body excerpt", "Duration", "Error"],
            (
                (
                    a.number,
                    timezone.localtime(a.started_at).strftime("%Y-%m-%d %H:%M:%S"),
                    a.url,
                    pre("\n".join(f"{k}: {v}" for k, v in (a.request_headers or {}).items())),
                    attempt_badge(a),
                    pre(a.response_excerpt) if a.response_excerpt else "—",
                    "—" if a.duration_ms is None else f"{a.duration_ms} ms",
                    a.error or "—",
                )
                for a in attempts
            ),
            empty="Not attempted yet.",
        )

    # --- replay -----------------------------------------------------------------------------------------
    def has_replay_permission(self, request):
        return self.role_allows(request, "change")

    def replayable(self, request, queryset):
        """Deliveries of organizations the user administers, or of integrations they may change."""
        scope = scope_for(request.user)
        if scope.is_superuser:
            return queryset
        allowed = Q(organization__in=scope.admin_org_ids)
        if scope.member_org_ids:
            changeable = granted_integrations(request.user, scope, ("change_integration",))
            allowed |= Q(integration__in=changeable.values("pk"))
        return queryset.filter(allowed)

    def _replay(self, request, queryset):
        selected = queryset.count()
        allowed = self.replayable(request, queryset)
        permitted = selected if scope_for(request.user).is_superuser else allowed.count()
        queued = delivery.replay(allowed, actor=request.user)
        if queued:
            self.message_user(
                request, f"Queued {queued} deliver{'y' if queued == 1 else 'ies'} again.", messages.SUCCESS
            )
            waiting = allowed.filter(subscription__active=False).count()
            if waiting:
                self.message_user(
                    request,
                    f"{waiting} of them wait: their subscription is switched off (switch it back on to send).",
                    messages.WARNING,
                )
        if permitted - queued:
            self.message_user(
                request, f"{permitted - queued} already pending: left as they are.", messages.INFO
            )
        if selected - permitted:
            self.message_user(
                request,
                f"{selected - permitted} not replayed: you may not change their integration.",
                messages.WARNING,
            )

    @admin.action(description="Replay selected deliveries", permissions=["replay"])
    def replay_selected(self, request, queryset):
        self._replay(request, queryset)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="integrations_webhookdelivery_replay",
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        sent = self.get_object(request, object_id)
        one = WebhookDelivery.objects.filter(pk=sent.pk)
        if not self.replayable(request, one).exists():
            raise PermissionDenied
        self._replay(request, one)
        return HttpResponseRedirect(reverse("admin:integrations_webhookdelivery_change", args=[sent.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["can_replay"] = self.replayable(
                request, WebhookDelivery.objects.filter(pk=obj.pk)
            ).exists()
        return super().render_change_form(request, context, add, change, form_url, obj)


ATTEMPTS_SHOWN = 50


def pre(text):
    return format_html('<pre class="sy-pre">{}</pre>', text)


def attempt_badge(attempt: WebhookAttempt):
    label = str(attempt.status_code) if attempt.status_code else "no answer"
    return badge({"ok": "green", "failed": "red"}, "ok" if attempt.succeeded else "failed", label)
