"""
Automation rules in the admin: conditions and actions edited as rows (automations/forms.py), validated before
anything is saved; a dry run of a rule on one order; the run log.
"""

from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from automations import conditions, rules
from automations.models import AutomationRule, RuleRun
from console.admin.history import ConfigHistoryAdmin
from inventory.models import Location

from ...display import badge, html_table
from ...forms.automations import AutomationRuleForm, DryRunForm
from ..mixins import (
    ObjectActionsMixin,
    OrganizationColumnMixin,
    OrganizationScopedAdmin,
    ReadOnlyAdminMixin,
    administered_organization,
    object_action,
)

RECENT_RUNS = 20
MATCH_WINDOW = timedelta(days=7)
ACTIVE_BADGE = {"active": "green", "off": "grey"}


class RuleChangeList(ChangeList):
    """Names the locations that the page's rules route to, in one query for the whole page."""

    def get_results(self, request):
        super().get_results(request)
        page = list(self.result_list)
        names = rules.location_names(rule.actions for rule in page)
        for rule in page:
            rule.location_names = names


@admin.register(AutomationRule)
class AutomationRuleAdmin(
    ConfigHistoryAdmin, OrganizationColumnMixin, ObjectActionsMixin, OrganizationScopedAdmin
):
    """Rules that hold, release, route, tag or raise on new and updated orders, tried in position order."""

    form = AutomationRuleForm
    list_display = [
        "name",
        "trigger",
        "source",
        "conditions_text",
        "actions_text",
        "position",
        "active",
        "status",
        "matches_7d",
        "last_matched",
        "organization",
    ]
    list_display_links = ["name"]
    list_editable = ["position", "active"]
    list_filter = ["active", "trigger", "source"]
    list_select_related = ["source", "organization"]
    search_fields = ["name"]
    ordering = ["organization", "position", "pk"]

    def get_fieldsets(self, request, obj=None):
        main = (None, {"fields": ["organization", "name", "source", "trigger", "match"]})
        order = ("Order of rules", {"fields": ["position", "stop_processing", "active"]})
        if obj is None:
            return [main, order]
        return [main, order, (f"Last {RECENT_RUNS} runs", {"fields": ["recent_runs"]})]

    def get_readonly_fields(self, request, obj=None):
        # A rule does not move between organizations: its actions name that organization's locations.
        return ["organization", "recent_runs"] if obj is not None else []

    def get_queryset(self, request):
        # Correlated subqueries, each a range of the (rule, -created_at) index: the run log grows with every
        # order, and a join-and-aggregate would read all of it on every page.
        since = timezone.now() - MATCH_WINDOW
        matched = RuleRun.objects.filter(rule=OuterRef("pk"), matched=True, dry_run=False).order_by()
        recent = matched.filter(created_at__gte=since).values("rule").annotate(n=Count("pk")).values("n")
        return (
            super()
            .get_queryset(request)
            .annotate(
                matches_7d=Coalesce(Subquery(recent[:1]), 0),
                last_matched=Subquery(matched.order_by("-created_at").values("created_at")[:1]),
            )
        )

    def get_changelist(self, request, **kwargs):
        return RuleChangeList

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        locations = Location.objects.restrict(request.user, "add").filter(active=True, ships=True)
        return type(form.__name__, (form,), {"locations": locations})

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if (org_id := administered_organization(request.user)) is not None:
            initial.setdefault("organization", org_id)
        return initial

    # --- columns ----------------------------------------------------------------------------------------
    @admin.display(description="conditions")
    def conditions_text(self, obj):
        if not obj.conditions:
            return "Every order"
        joiner = " and " if obj.match == "all" else " or "
        return joiner.join(conditions.describe(c) for c in obj.conditions)

    @admin.display(description="actions")
    def actions_text(self, obj):
        names = getattr(obj, "location_names", None)
        if names is None:
            names = rules.location_names([obj.actions])
        return "; ".join(rules.describe_action(a, names) for a in obj.actions)

    @admin.display(description="status", ordering="active")
    def status(self, obj):
        state = "active" if obj.active else "off"
        return badge(ACTIVE_BADGE, state, state.capitalize())

    @admin.display(description="matches (7 days)", ordering="matches_7d")
    def matches_7d(self, obj):
        return obj.matches_7d

    @admin.display(description="last matched", ordering="last_matched")
    def last_matched(self, obj):
        return obj.last_matched or "—"

    @admin.display(description="runs")
    def recent_runs(self, obj):
        runs = obj.runs.select_related("order")[:RECENT_RUNS]
        rows = [
            (
                run.created_at,
                _order_link(run.order),
                "yes" if run.matched else "no",
                "dry run" if run.dry_run else run.trigger,
                "; ".join(a["detail"] for a in run.actions) or "—",
            )
            for run in runs
        ]
        changelist = reverse("admin:automations_rulerun_changelist")
        return html_table(
            ["when", "order", "matched", "trigger", "actions"],
            rows,
            empty="Not run yet.",
            link=(f"{changelist}?rule__id__exact={obj.pk}", "All runs of this rule"),
        )

    # --- dry run ----------------------------------------------------------------------------------------
    @object_action("dry-run", methods=("GET", "POST"))
    def dry_run(self, request, rule):
        """Try the rule on one order of its organization; logged as a dry run, the order unchanged."""
        form = DryRunForm(request.POST or None, organization=rule.organization)
        run = None
        if request.method == "POST" and form.is_valid():
            run = rules.dry_run(rule, form.cleaned_data["order"])
        context = {
            **self.admin_site.each_context(request),
            "title": f"Dry run of “{rule}”",
            "opts": self.model._meta,
            "original": rule,
            "form": form,
            "run": run,
            "conditions_rows": _condition_rows(run) if run else [],
            "match_words": "all" if rule.match == "all" else "any",
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/automations/automationrule/dry_run.html", context)


def _condition_rows(run):
    return [
        {
            "text": conditions.describe(result),
            "actual": ", ".join(result["actual"])
            if isinstance(result.get("actual"), list)
            else result.get("actual"),
            "matched": result["matched"],
        }
        for result in run.results
    ]


def _order_link(order):
    if order is None:
        return "—"
    return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[order.pk]), order)


# --- the run log ------------------------------------------------------------------------------------------


@admin.register(RuleRun)
class RuleRunAdmin(ReadOnlyAdminMixin, OrganizationColumnMixin, OrganizationScopedAdmin):
    """Every time a rule was tried on an order: each condition's result and what was done."""

    list_display = [
        "created_at",
        "rule",
        "order_link",
        "trigger",
        "matched",
        "dry_run",
        "done",
        "organization",
    ]
    list_filter = ["rule", "matched", "dry_run", "trigger"]
    list_select_related = ["rule", "order", "organization"]
    search_fields = ["rule__name", "order__number", "order__external_id"]
    date_hierarchy = "created_at"
    fields = ["organization", "rule", "order_link", "trigger", "matched", "dry_run", "created_at", "detail"]
    readonly_fields = fields

    @admin.display(description="order", ordering="order")
    def order_link(self, obj):
        return _order_link(obj.order)

    @admin.display(description="actions")
    def done(self, obj):
        return "; ".join(a.get("detail", "") for a in obj.actions) or "—"

    @admin.display(description="conditions and actions")
    def detail(self, obj):
        rows = [
            (
                conditions.describe(r),
                ", ".join(r["actual"]) if isinstance(r.get("actual"), list) else r.get("actual"),
                "yes" if r["matched"] else "no",
            )
            for r in obj.results
        ]
        table = html_table(["condition", "the order's value", "matched"], rows, empty="No conditions.")
        actions = format_html_join(
            "", "<li>{} — {}</li>", ((a.get("type"), a.get("detail")) for a in obj.actions)
        )
        return format_html("{}<ul>{}</ul>", table, actions or "")
