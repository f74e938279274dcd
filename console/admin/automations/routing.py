"""
Routing cards in the admin: listed in the order they are tried, each with its conditions in words, its
locations in order of preference and whether it may split; conditions edited as rows (automations/forms.py),
locations as an inline limited to the organization's shipping locations. The implicit default card that
follows them is explained above the list.
"""

from django.contrib import admin
from django.db.models import Prefetch, Q
from django.utils.html import format_html_join

from automations import conditions
from automations.models import EngineSettings, RoutingRule, RoutingRuleLocation
from console.admin.history import ConfigHistoryAdmin, rows_table
from inventory.models import Location

from ...display import badge
from ...forms.automations import PreferenceFormSet, RoutingRuleForm
from ..mixins import (
    OrganizationColumnMixin,
    OrganizationScopedAdmin,
    OrganizationScopedInline,
    administered_organization,
)

DEFAULT_CARD_HELP = (
    "Cards are tried from the lowest position; the first whose conditions match decides where an order "
    "ships from. When none matches, the default card applies: every active shipping location by its "
    "priority, split as the engine settings allow."
)
YES_NO_BADGE = {True: "green", False: "grey"}


class PreferenceInline(OrganizationScopedInline):
    """The card's locations, in order of preference (lowest position first)."""

    model = RoutingRuleLocation
    formset = PreferenceFormSet
    fields = ["location", "position"]
    ordering = ["position", "pk"]
    extra = 1
    verbose_name = "location"
    verbose_name_plural = "locations, in order of preference (none: every shipping location by priority)"

    def get_formset(self, request, obj=None, **kwargs):
        self._card = obj  # the location choices depend on the card's organization
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "location":
            kwargs["queryset"] = self.location_choices(request, getattr(self, "_card", None))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def location_choices(self, request, card):
        """Shipping locations of the card's organization (of yours, for a new card), and those it lists."""
        usable = Q(active=True, ships=True)
        if card is not None and card.pk:
            usable |= Q(pk__in=card.preferences.values("location_id"))
            locations = Location.objects.filter(organization_id=card.organization_id)
        else:
            locations = Location.objects.restrict(request.user, "add")
        return locations.filter(usable).order_by("priority", "name")


@admin.register(RoutingRule)
class RoutingRuleAdmin(ConfigHistoryAdmin, OrganizationColumnMixin, OrganizationScopedAdmin):
    """Routing cards: conditions over the order, then where it ships from; tried in position order."""

    form = RoutingRuleForm
    inlines = [PreferenceInline]
    list_display = [
        "position",
        "name",
        "conditions_text",
        "locations_text",
        "split",
        "status",
        "organization",
    ]
    list_display_links = ["name"]
    list_editable = ["position"]
    list_filter = ["active", "allow_split"]
    list_select_related = ["organization"]
    search_fields = ["name"]
    ordering = ["organization", "position", "pk"]

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ["organization", "name", "match"]}),
            (None, {"fields": ["condition_rows"]}),
            ("Shipping", {"fields": ["allow_split", "position", "active"]}),
        ]

    def related_history(self, obj):
        rows = RoutingRuleLocation.history.filter(rule_id=obj.pk)
        names = dict(Location.objects.filter(pk__in=rows.values("location_id")).values_list("pk", "name"))
        table = rows_table(
            RoutingRuleLocation.history.model,
            rows,
            lambda row: f"{names.get(row.location_id, row.location_id)} at position {row.position}",
        )
        return ("Its locations", table)

    def get_readonly_fields(self, request, obj=None):
        # A card does not move between organizations: its locations are that organization's.
        return ["organization"] if obj is not None else []

    def get_queryset(self, request):
        preferences = RoutingRuleLocation.objects.select_related("location").order_by("position", "pk")
        return super().get_queryset(request).prefetch_related(Prefetch("preferences", queryset=preferences))

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if (org_id := administered_organization(request.user)) is not None:
            initial.setdefault("organization", org_id)
        return initial

    def changelist_view(self, request, extra_context=None):
        extra_context = {"subtitle": self.default_card_text(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def default_card_text(self, request) -> str:
        """The implicit last card, with its locations and split setting when one organization is in view."""
        org_id = administered_organization(request.user)
        if org_id is None:
            return DEFAULT_CARD_HELP
        names = Location.objects.filter(organization_id=org_id, active=True, ships=True).order_by(
            "priority", "name"
        )
        allowed = (
            EngineSettings.objects.filter(organization_id=org_id)
            .values_list("allow_split", flat=True)
            .first()
        )
        if allowed is None:  # no settings saved yet: the model's default
            allowed = EngineSettings._meta.get_field("allow_split").default
        where = ", ".join(names.values_list("name", flat=True)) or "none yet"
        return (
            f"{DEFAULT_CARD_HELP} Default card now: {where}; split {'allowed' if allowed else 'not allowed'}."
        )

    # --- columns ----------------------------------------------------------------------------------------
    @admin.display(description="conditions")
    def conditions_text(self, obj):
        if not obj.conditions:
            return "Every order"
        joiner = " and " if obj.match == "all" else " or "
        return joiner.join(conditions.describe(c) for c in obj.conditions)

    @admin.display(description="locations, in order")
    def locations_text(self, obj):
        listed = [p.location for p in obj.preferences.all()]
        if not listed:
            return "Every shipping location, by priority"
        return format_html_join(
            " → ",
            "{}",
            (
                (loc.name if loc.active and loc.ships else f"{loc.name} (not shipping: skipped)",)
                for loc in listed
            ),
        )

    @admin.display(description="split", ordering="allow_split")
    def split(self, obj):
        return badge(YES_NO_BADGE, obj.allow_split, "Split allowed" if obj.allow_split else "One location")

    @admin.display(description="status", ordering="active")
    def status(self, obj):
        return badge(YES_NO_BADGE, obj.active, "Active" if obj.active else "Off")
