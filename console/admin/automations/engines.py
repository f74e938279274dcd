"""
Engine settings per organization (the four switches, their parameters, the organization-wide buffer, a
"Run now" button per engine). The organization dashboard is console/dashboard.py.
"""

from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse

from automations.choices import EXCEPTION_CATEGORIES, Engine, RunTrigger
from automations.engine_settings import engine_settings
from automations.models import EngineSettings, EngineStatus
from automations.tasks import run_engine_task
from core.queue import enqueue
from inventory import services as inventory_services
from organizations.models import Organization

from ...dashboard import status_summary
from ...forms.automations import EngineSettingsForm, default_buffer
from ..history import ConfigHistoryAdmin
from ..mixins import ObjectActionsMixin, OrganizationScopedAdmin, object_action


def _status_display(engine):
    """A change-page field showing `engine`'s last run beside its switch."""

    @admin.display(description="status")
    def show(self, obj):
        return self.engine_status(obj, engine)

    return show


@admin.register(EngineSettings)
class EngineSettingsAdmin(ConfigHistoryAdmin, ObjectActionsMixin, OrganizationScopedAdmin):
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

    # Members of an organization view its settings, its admins change them (EngineSettings' tenancy).
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
        orgs = Organization.objects.restrict(request.user, "view")
        # The rows, with every engine on, made on first visit: one INSERT however many organizations.
        EngineSettings.objects.bulk_create(
            [
                EngineSettings(organization_id=pk)
                for pk in orgs.filter(engine_settings__isnull=True).values_list("pk", flat=True)
            ],
            ignore_conflicts=True,  # made by engine_settings() meanwhile
        )
        if not request.user.is_superuser:
            org_ids = list(orgs.values_list("pk", flat=True)[:2])
            if len(org_ids) == 1:
                settings = engine_settings(org_ids[0])
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

    @object_action("run/<str:engine>", name="run")
    def run(self, request, settings, engine):
        """POST: run one engine now for this organization and say what it did."""
        if engine not in Engine.values:
            raise Http404("No such engine.")
        label = Engine(engine).label
        if not settings.enabled(engine):
            return (
                f"The {label} engine is switched off for {settings.organization}: nothing ran.",
                messages.WARNING,
            )
        # Queued, not run in the request: a full inventory recompute of a large catalog takes seconds, a
        # digest talks to the mail server; the outcome shows beside the switch and on the dashboard.
        if enqueue(run_engine_task, args=[engine, settings.organization_id, RunTrigger.ADMIN.value]):
            return (
                f"Queued the {label} engine for {settings.organization}: its outcome appears beside its "
                "switch once a worker ran it."
            )
        return (
            f"Could not queue the {label} engine: the task broker is unavailable. Support staff can run "
            f"`manage.py run_engine {engine} --org {settings.organization.slug}` on the server.",
            messages.ERROR,
        )
