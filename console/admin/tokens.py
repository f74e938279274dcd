"""
API keys in the admin: prefix, state, grants and last use at a glance; issuing a key (for an integration or
an org key), registering a custom integration with its first key, and revoke / regenerate / rotate as
buttons. A key's secret is shown once, on the response that made it, and never again.
"""

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html

from console.admin.history import ConfigHistoryAdmin
from integrations.choices import ConnectorType
from integrations.models import Connector, Integration
from organizations.models import Organization
from tokens import issuing, registration
from tokens.choices import BADGE, KeyKind, KeyState
from tokens.models import ApiKey

from ..forms.tokens import ApiKeyChangeForm, IssueKeyForm, RegisterCustomIntegrationForm, RotateForm
from .integrations.common import status_badge as integration_badge
from .mixins import ObjectActionsMixin, OrganizationScopedAdmin, object_action


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return KeyState.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        live = queryset.filter(revoked_at__isnull=True)
        match self.value():
            case KeyState.REVOKED:
                return queryset.filter(revoked_at__isnull=False)
            case KeyState.EXPIRED:
                return live.filter(expires_at__lte=now)
            case KeyState.ROTATING:
                return live.filter(replaced_by__isnull=False, expires_at__gt=now)
            case KeyState.ACTIVE:
                return live.filter(replaced_by__isnull=True).exclude(expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ConfigHistoryAdmin, ObjectActionsMixin, OrganizationScopedAdmin):
    """Keys: prefix, state, grants and last use at a glance; revoke, regenerate and rotate; never the secret."""

    form = ApiKeyChangeForm
    list_display = [
        "name",
        "prefix_display",
        "state_badge",
        "kind",
        "owner",
        "grant_count",
        "expires_at",
        "last_used_at",
        "last_used_ip",
    ]
    list_filter = [StateFilter, "kind", "integration"]
    list_select_related = ["integration", "organization", "user"]
    search_fields = ["name", "prefix", "integration__name"]
    actions = ["revoke_selected"]
    change_form_template = "admin/tokens/apikey/change_form.html"
    readonly_fields = [
        "prefix_display",
        "state_badge",
        "kind",
        "organization",
        "integration",
        "user",
        "created_by",
        "created_at",
        "last_used_at",
        "last_used_ip",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
        "replaced_by",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "prefix_display",
                    "state_badge",
                    "kind",
                    "organization",
                    "integration",
                    "user",
                ]
            },
        ),
        ("Access", {"fields": ["grants", "expires_at", "allowed_ips"]}),
        ("Use", {"fields": ["last_used_at", "last_used_ip", "created_by", "created_at"]}),
        ("Revocation", {"fields": ["revoked_at", "revoked_by", "revoke_reason", "replaced_by"]}),
    ]

    @admin.display(description="key", ordering="prefix")
    def prefix_display(self, obj):
        return format_html("<code>{}</code>", obj.display)

    @admin.display(description="state")
    def state_badge(self, obj):
        state = obj.state()
        return format_html(
            '<span class="sy-badge sy-badge-{}" data-state="{}">{}</span>', BADGE[state], state, state.label
        )

    @admin.display(description="owner")
    def owner(self, obj):
        return obj.integration or obj.user or "platform"

    @admin.display(description="grants")
    def grant_count(self, obj):
        return format_html('<span title="{}">{}</span>', ", ".join(obj.grants), len(obj.grants))

    # --- permissions: org admins, and members holding "manage keys" on the key's integration ------------
    def key_integrations(self, request):
        """Integrations whose keys the user may manage."""
        return Integration.objects.restrict(request.user, "manage_keys").select_related(
            "organization", "connector"
        )

    def has_add_permission(self, request, *args):
        may_add = Organization.objects.tenancy.reaches_any(request.user, "add")
        return may_add or self.key_integrations(request).exists()

    def has_delete_permission(self, request, obj=None):
        return False  # keys are revoked, never deleted: the audit trail refers to them

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.changed_data:
            issuing.record_key_event(
                obj, f"Key {obj.display} changed: {', '.join(form.changed_data)}.", request.user
            )

    # --- actions and buttons --------------------------------------------------------------------------
    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        allowed = queryset.restrict(request.user, "change")
        count = issuing.revoke_many(allowed, actor=request.user, reason="revoked in the admin")
        self.message_user(request, f"Revoked {count} key{'s' if count != 1 else ''}.", messages.SUCCESS)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("register-integration/", wrap(self.register_view), name="tokens_apikey_register"),
            *super().get_urls(),
        ]

    @object_action("revoke")
    def revoke(self, request, key):
        if issuing.revoke(key, actor=request.user, reason="revoked in the admin"):
            return f"Revoked {key.display}."
        return None

    @object_action("regenerate")
    def regenerate(self, request, key):
        issued = issuing.regenerate(key, actor=request.user)
        return self.shown_once(request, issued, f"Regenerated: {key.display} no longer works.")

    @object_action("rotate", methods=("GET", "POST"), refused=(ValidationError,))
    def rotate(self, request, key):
        form = RotateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            issued = issuing.rotate(
                key, grace=timedelta(hours=form.cleaned_data["grace_hours"]), actor=request.user
            )
            key.refresh_from_db()
            return self.shown_once(
                request,
                issued,
                f"Rotated: {key.display} keeps working until {key.expires_at:%Y-%m-%d %H:%M} UTC.",
            )
        return TemplateResponse(
            request,
            "admin/tokens/apikey/rotate.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": key,
                "form": form,
                "title": f"Rotate {key.display}",
            },
        )

    def shown_once(self, request, issued, note="", integration=None):
        """The only page that ever shows a key's plaintext. Rendered from the POST itself, never stored."""
        integration = integration or issued.key.integration
        response = TemplateResponse(
            request,
            "admin/tokens/apikey/shown_once.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Copy the new API key now",
                "plaintext": issued.plaintext,
                "key": issued.key,
                "note": note,
                "integration": integration,
                "integration_badge": integration_badge(integration.status) if integration else "",
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    # --- issuing a key: choose its owner, then grants and expiry ----------------------------------------
    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        integrations = self.key_integrations(request).order_by("organization__name", "name")
        orgs = Organization.objects.restrict(request.user, "add")
        integration = org = None
        if request.GET.get("integration"):
            integration = integrations.filter(pk=request.GET["integration"]).first()
        elif request.GET.get("org"):
            org = orgs.filter(pk=request.GET["org"]).first()
        if integration is None and org is None:
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Issue an API key: for what?",
                "integrations": integrations,
                "orgs": orgs,
            }
            return TemplateResponse(request, "admin/tokens/apikey/choose_owner.html", context)
        initial = {
            "name": f"{integration.name} key" if integration else f"{request.user.get_username()} org key",
            "grants": integration.connector.recommended_grants if integration else [],
        }
        form = IssueKeyForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = issuing.issue_key(
                    kind=KeyKind.INTEGRATION if integration else KeyKind.ORG,
                    name=data["name"],
                    integration=integration,
                    organization=org,
                    user=request.user if org else None,
                    grants=data["grants"],
                    expires_at=data.get("expires_at"),
                    allowed_ips=data["allowed_ips"],
                    created_by=request.user,
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                return self.shown_once(request, issued)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": f"Issue a key for {integration or org}",
            "owner": integration or org,
        }
        return TemplateResponse(request, "admin/tokens/apikey/issue.html", context)

    def register_view(self, request):
        """Register a custom integration: a private connector, its integration and first key, in one step."""
        if not Organization.objects.tenancy.reaches_any(request.user, "add"):
            raise PermissionDenied
        orgs = Organization.objects.restrict(request.user, "add")
        connector_type = request.GET.get("type") or request.POST.get("connector_type")
        if connector_type not in ConnectorType.values:
            templates = Connector.objects.filter(
                organization__isnull=True, key__in=[f"custom-{t}" for t in ConnectorType.values]
            )
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Register a custom integration: what kind of system?",
                "templates": templates,
            }
            return TemplateResponse(request, "admin/tokens/apikey/register_choose.html", context)
        template = Connector.objects.get(organization__isnull=True, key=f"custom-{connector_type}")
        form = RegisterCustomIntegrationForm(
            request.POST or None,
            organizations=orgs,
            initial={
                "connector_type": connector_type,
                "grants": template.recommended_grants,
                "organization": orgs.first(),
            },
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = registration.register_custom_integration(
                    data["organization"],
                    connector_type=connector_type,
                    name=data["name"],
                    grants=data["grants"],
                    expires_at=data.get("expires_at"),
                    notification_email=data["notification_email"],
                    allowed_ips=data["allowed_ips"],
                    actor=request.user,
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                return self.shown_once(
                    request,
                    issued,
                    f"Registered “{issued.key.integration.name}”. Hand this key to your partner.",
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": f"Register a custom {template.get_type_display()}",
            "template": template,
        }
        return TemplateResponse(request, "admin/tokens/apikey/register.html", context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(
                can_manage=self.has_change_permission(request, obj),
                is_live=obj.state() in (KeyState.ACTIVE, KeyState.ROTATING),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)
