"""
Engine settings per organization (the four switches, their parameters, the organization-wide buffer, a
"Run now" button per engine). The organization dashboard is console/dashboard.py.
"""

import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse

from console.admin.history import ConfigHistoryAdmin
from console.dashboard import status_summary
from core.queue import enqueue
from inventory import services as inventory_services
from inventory.models import InventoryBuffer
from organizations.admin_mixins import OrganizationScopedAdmin
from organizations.models import Organization
from organizations.scoping import scope_for

from ..choices import EXCEPTION_CATEGORIES, Engine, RunTrigger
from ..engine_settings import engine_settings
from ..models import EngineSettings, EngineStatus

logger = logging.getLogger(__name__)


def default_buffer(organization_id):
    """The organization-wide buffer row (no location, product or channel), or None."""
    return InventoryBuffer.objects.filter(
        organization_id=organization_id, location=None, product=None, channel=None
    ).first()


# --- engine settings ------------------------------------------------------------------------------------


class EngineSettingsForm(forms.ModelForm):
    """The settings, with notification categories as checkboxes and the org-wide buffer beside them."""

    notify_categories = forms.MultipleChoiceField(
        choices=[(key, label) for key, (label, _) in EXCEPTION_CATEGORIES.items()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Notify about",
        help_text="Exception categories e-mailed to the integration's (else the organization's) address.",
    )
    buffer_quantity = forms.IntegerField(
        min_value=0,
        required=False,
        label="Default buffer (units)",
        help_text="Units of every product held back from every channel, unless a more specific buffer "
        "(location, product or channel) applies.",
    )
    buffer_percent = forms.DecimalField(
        min_value=0,
        max_value=100,
        max_digits=5,
        decimal_places=2,
        required=False,
        label="Default buffer (percent)",
        help_text="Or a percent of what is available, rounded up. Leave both empty for no default buffer.",
    )

    class Meta:
        model = EngineSettings
        fields = [
            "hold_enabled",
            "routing_enabled",
            "inventory_enabled",
            "exceptions_enabled",
            "default_hold_minutes",
            "routing_strategy",
            "allow_split",
            "unroutable_retry_minutes",
            "stuck_after_hours",
            "stale_after_days",
            "notify_categories",
            "digest_minutes",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            buffer = default_buffer(self.instance.organization_id)
            if buffer is not None:
                self.initial.setdefault("buffer_quantity", buffer.quantity)
                self.initial.setdefault("buffer_percent", buffer.percent)

    def clean_notify_categories(self):
        chosen = set(self.cleaned_data["notify_categories"])
        return [key for key in EXCEPTION_CATEGORIES if key in chosen]  # stored in the catalogue's order

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("buffer_quantity") is not None and cleaned.get("buffer_percent") is not None:
            raise forms.ValidationError(
                "A default buffer holds back units or a percent, not both: leave one of them empty."
            )
        return cleaned


def _status_display(engine):
    """A change-page field showing `engine`'s last run beside its switch."""

    @admin.display(description="status")
    def show(self, obj):
        return self.engine_status(obj, engine)

    return show


@admin.register(EngineSettings)
class EngineSettingsAdmin(ConfigHistoryAdmin, OrganizationScopedAdmin):
    """
    One row per organization, made on first visit: its admins change it, its members view it. Saving
    stores the org-wide buffer through inventory.services so the inventory engine recomputes.
    """

    form = EngineSettingsForm
    change_form_template = "admin/automations/enginesettings/change_form.html"
    list_display = [
        "organization",
        "hold_enabled",
        "routing_enabled",
        "inventory_enabled",
        "exceptions_enabled",
        "default_hold_minutes",
        "routing_strategy",
        "updated_at",
    ]
    list_select_related = ["organization"]
    ordering = ["organization__name"]
    search_fields = ["organization__name", "organization__slug"]
    fieldsets = [
        (None, {"fields": ["organization"]}),
        (
            "Engines",
            {
                "fields": [(f"{engine}_enabled", f"{engine}_status") for engine in Engine.values],
                "description": "Every engine is on by default. A switched-off engine does nothing for this "
                "organization: its orders, stock and exceptions wait until it is on again.",
            },
        ),
        ("Hold", {"fields": ["default_hold_minutes"]}),
        ("Routing", {"fields": ["routing_strategy", "allow_split", "unroutable_retry_minutes"]}),
        (
            "Inventory",
            {
                "fields": ["buffer_quantity", "buffer_percent"],
                "description": "The safety buffer held back from every channel. Buffers for a location, "
                "product or channel are set under Inventory › Inventory buffers; the most specific wins.",
            },
        ),
        (
            "Exceptions",
            {"fields": ["stuck_after_hours", "stale_after_days", "notify_categories", "digest_minutes"]},
        ),
    ]
    readonly_fields = ["organization", *(f"{engine}_status" for engine in Engine.values)]

    hold_status = _status_display(Engine.HOLD)
    routing_status = _status_display(Engine.ROUTING)
    inventory_status = _status_display(Engine.INVENTORY)
    exceptions_status = _status_display(Engine.EXCEPTIONS)

    # --- scope: members of an organization view its settings; its admins change them ----------------------
    def scope_queryset(self, request, queryset):
        scope = scope_for(request.user)
        return queryset if scope.is_superuser else queryset.filter(organization__in=scope.org_ids)

    def role_allows(self, request, action, obj=None) -> bool:
        scope = scope_for(request.user)
        if scope.is_superuser:
            return action in ("view", "change")
        if action == "view":
            return obj.organization_id in scope.org_ids if obj is not None else bool(scope.org_ids)
        if action == "change":
            return (
                obj.organization_id in scope.admin_org_ids if obj is not None else bool(scope.admin_org_ids)
            )
        return False  # one row per organization, made on first visit: never added or deleted here

    def has_add_permission(self, request, *args):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    # --- read-only display (members) ---------------------------------------------------------------------
    def get_fieldsets(self, request, obj=None):
        if self.has_change_permission(request, obj):
            return self.fieldsets
        # Read-only: show the buffer and the categories as words, not the form's inputs.
        swap = {
            "buffer_quantity": "default_buffer",
            "buffer_percent": "default_buffer",
            "notify_categories": "notify_categories_display",
        }
        return [
            (name, {**options, "fields": list(dict.fromkeys(swap.get(f, f) for f in options["fields"]))})
            for name, options in self.fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "default_buffer", "notify_categories_display"]

    @admin.display(description="default buffer")
    def default_buffer(self, obj):
        buffer = default_buffer(obj.organization_id)
        if buffer is None:
            return "None"
        return f"{buffer.quantity} units" if buffer.quantity is not None else f"{buffer.percent} %"

    @admin.display(description="notify about")
    def notify_categories_display(self, obj):
        chosen = [
            EXCEPTION_CATEGORIES[k][0] for k in obj.notify_categories or [] if k in EXCEPTION_CATEGORIES
        ]
        return ", ".join(chosen) or "Nothing"

    def engine_status(self, obj, engine):
        statuses = getattr(obj, "_statuses", None)
        if statuses is None:  # one query for the four engines of the page
            statuses = obj._statuses = {
                s.engine: s for s in EngineStatus.objects.filter(organization_id=obj.organization_id)
            }
        return status_summary(statuses.get(engine))

    # --- the list: a row for every organization in scope, and straight to it for a one-org user ------------
    def changelist_view(self, request, extra_context=None):
        scope = scope_for(request.user)
        orgs = Organization.objects.filter(engine_settings__isnull=True)
        if not scope.is_superuser:
            orgs = orgs.filter(pk__in=scope.org_ids)
        EngineSettings.objects.bulk_create(
            [EngineSettings(organization_id=pk) for pk in orgs.values_list("pk", flat=True)],
            ignore_conflicts=True,  # made by engine_settings() meanwhile
        )
        if not scope.is_superuser and len(scope.org_ids) == 1:
            (org_id,) = scope.org_ids
            settings = engine_settings(org_id)
            return HttpResponseRedirect(
                reverse("admin:automations_enginesettings_change", args=[settings.pk])
            )
        return super().changelist_view(request, extra_context)

    # --- saving: the settings row, and the org-wide buffer through its owner's service ------------------
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if {"buffer_quantity", "buffer_percent"} & set(form.changed_data):
            inventory_services.set_default_buffer(
                obj.organization,
                quantity=form.cleaned_data.get("buffer_quantity"),
                percent=form.cleaned_data.get("buffer_percent"),
            )

    # --- Run now ---------------------------------------------------------------------------------------
    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_change_permission(request, obj):
            context["run_buttons"] = [
                (engine, label, reverse("admin:automations_enginesettings_run", args=[obj.pk, engine]))
                for engine, label in Engine.choices
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/run/<str:engine>/",
                wrap(self.run_view),
                name="automations_enginesettings_run",
            ),
            *super().get_urls(),
        ]

    def run_view(self, request, object_id, engine):
        """POST: run one engine now for this organization and say what it did."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        settings = self.get_object(request, object_id)  # 404 outside your organizations
        if engine not in Engine.values:
            raise Http404("No such engine.")
        if not self.has_change_permission(request, settings):
            raise PermissionDenied
        label = Engine(engine).label
        back = HttpResponseRedirect(reverse("admin:automations_enginesettings_change", args=[settings.pk]))
        if not settings.enabled(engine):
            self.message_user(
                request,
                f"The {label} engine is switched off for {settings.organization}: nothing ran.",
                messages.WARNING,
            )
            return back
        # Queued, not run in the request: a full inventory recompute of a large catalog takes seconds, a
        # digest talks to the mail server; the outcome shows beside the switch and on the dashboard.
        from ..tasks import run_engine_task  # tasks import the engines, which this module lists

        if enqueue(run_engine_task, args=[engine, settings.organization_id, RunTrigger.ADMIN.value]):
            self.message_user(
                request,
                f"Queued the {label} engine for {settings.organization}: its outcome appears beside its "
                "switch once a worker ran it.",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                f"Could not queue the {label} engine: the task broker is unavailable. Support staff can run "
                f"`manage.py run_engine {engine} --org {settings.organization.slug}` on the server.",
                messages.ERROR,
            )
        return back
