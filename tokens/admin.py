from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from integrations.admin import status_badge as integration_badge
from integrations.choices import ConnectorType
from integrations.models import Connector, Integration
from organizations.admin_mixins import OrganizationScopedAdmin, granted_integrations
from organizations.history_admin import ConfigHistoryAdmin
from organizations.models import Organization
from organizations.scoping import scope_for

from . import services
from .choices import BADGE, KeyKind, KeyState
from .forms import IssueKeyForm, RegisterCustomIntegrationForm, RotateForm, validate_grants
from .grants import GRANT_CHOICES
from .models import ApiKey

MANAGE_KEYS = ("manage_keys_integration",)


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


class ApiKeyChangeForm(forms.ModelForm):
    """Name, grants, expiry and allowed IP ranges of an existing key; the secret is never shown again."""

    grants = forms.MultipleChoiceField(
        choices=GRANT_CHOICES, widget=forms.CheckboxSelectMultiple, required=False
    )
    allowed_ips = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="CIDR ranges, one per line. Empty: any address.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "grants", "expires_at", "allowed_ips"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "allowed_ips" in self.fields:
            self.initial["allowed_ips"] = "\n".join(self.instance.allowed_ips or [])

    def clean_grants(self):
        return validate_grants(self.cleaned_data["grants"])

    def clean_allowed_ips(self):
        lines = [line.strip() for line in self.cleaned_data["allowed_ips"].splitlines() if line.strip()]
        return services.validate_cidrs(lines)


@admin.register(ApiKey)
class ApiKeyAdmin(ConfigHistoryAdmin, OrganizationScopedAdmin):
    """Keys: prefix, state, grants and last use at a glance; revoke, regenerate and rotate; never the secret."""

    member_access_field = "integration"
    member_view_perms = MANAGE_KEYS
    member_change_perm = MANAGE_KEYS[0]
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
        scope = scope_for(request.user)
        integrations = Integration.objects.select_related("organization", "connector")
        if scope.is_superuser:
            return integrations
        granted = granted_integrations(request.user, scope, MANAGE_KEYS).values("pk")
        return integrations.filter(organization__in=scope.admin_org_ids) | integrations.filter(pk__in=granted)

    def has_add_permission(self, request, *args):
        scope = scope_for(request.user)
        return scope.is_superuser or bool(scope.admin_org_ids) or self.key_integrations(request).exists()

    def has_delete_permission(self, request, obj=None):
        return False  # keys are revoked, never deleted: the audit trail refers to them

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.changed_data:
            services._record(obj, f"Key {obj.display} changed: {', '.join(form.changed_data)}.", request.user)

    # --- actions and buttons --------------------------------------------------------------------------
    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        allowed = [k.pk for k in queryset if self.has_change_permission(request, k)]
        count = services.revoke_many(
            ApiKey.objects.filter(pk__in=allowed), actor=request.user, reason="revoked in the admin"
        )
        self.message_user(request, f"Revoked {count} key{'s' if count != 1 else ''}.", messages.SUCCESS)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("register-integration/", wrap(self.register_view), name="tokens_apikey_register"),
            path("<path:object_id>/revoke/", wrap(self.revoke_view), name="tokens_apikey_revoke"),
            path("<path:object_id>/regenerate/", wrap(self.regenerate_view), name="tokens_apikey_regenerate"),
            path("<path:object_id>/rotate/", wrap(self.rotate_view), name="tokens_apikey_rotate"),
            *super().get_urls(),
        ]

    def _changeable(self, request, object_id):
        key = self.get_object(request, object_id)
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        return key

    def revoke_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        key = self._changeable(request, object_id)
        if services.revoke(key, actor=request.user, reason="revoked in the admin"):
            self.message_user(request, f"Revoked {key.display}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tokens_apikey_change", args=[key.pk]))

    def regenerate_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        key = self._changeable(request, object_id)
        issued = services.regenerate(key, actor=request.user)
        return self.shown_once(request, issued, f"Regenerated: {key.display} no longer works.")

    def rotate_view(self, request, object_id):
        key = self._changeable(request, object_id)
        form = RotateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                issued = services.rotate(
                    key, grace=timedelta(hours=form.cleaned_data["grace_hours"]), actor=request.user
                )
            except ValidationError as exc:
                self.message_user(request, exc.messages[0], messages.ERROR)
                return HttpResponseRedirect(reverse("admin:tokens_apikey_change", args=[key.pk]))
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
        scope = scope_for(request.user)
        orgs = (
            Organization.objects.all()
            if scope.is_superuser
            else Organization.objects.filter(pk__in=scope.admin_org_ids)
        )
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
                issued = services.issue_key(
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
        scope = scope_for(request.user)
        if not (scope.is_superuser or scope.admin_org_ids):
            raise PermissionDenied
        orgs = (
            Organization.objects.all()
            if scope.is_superuser
            else Organization.objects.filter(pk__in=scope.admin_org_ids)
        )
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
                issued = services.register_custom_integration(
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
