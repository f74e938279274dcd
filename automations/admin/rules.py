"""
Automation rules in the admin: conditions and actions edited as rows (automations/forms.py), validated before
anything is saved; a dry run of a rule on one order; the run log.
"""

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.ids import parse_id
from inventory.models import Location
from orders.models import Order
from organizations.admin_mixins import (
    OrganizationColumnMixin,
    OrganizationScopedAdmin,
    ReadOnlyAdminMixin,
    SameOrganizationForm,
    badge,
    html_table,
)
from organizations.history_admin import ConfigHistoryAdmin
from organizations.scoping import scope_for

from .. import conditions, rules
from ..forms import ActionFormSet, ConditionFormSet
from ..models import AutomationRule, RuleRun

RECENT_RUNS = 20
MATCH_WINDOW = timedelta(days=7)
ACTIVE_BADGE = {"active": "green", "off": "grey"}


class AutomationRuleForm(SameOrganizationForm):
    """The rule's own fields, plus its conditions and actions as formsets validated with it."""

    same_organization = ("organization", "source")
    locations = Location.objects.none()  # the "route to" choices: set per request by the admin

    class Meta:
        model = AutomationRule
        fields = [
            "organization",
            "name",
            "source",
            "trigger",
            "match",
            "position",
            "stop_processing",
            "active",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        data = self.data if self.is_bound else None
        org = self.instance.organization if self.instance.organization_id else None
        locations = self.locations.filter(organization=org) if org else self.locations
        self.condition_formset = ConditionFormSet(data, conditions=self.instance.conditions)
        self.action_formset = ActionFormSet(
            data, actions=self.instance.actions, locations=locations, organization=org
        )
        if not self.instance.pk and not self.instance.actions:
            self.action_formset.extra = 1

    def clean(self):
        cleaned = super().clean()
        conditions_ok = self.condition_formset.is_valid()
        actions_ok = self.action_formset.is_valid()
        org = cleaned.get("organization") or (
            self.instance.organization if self.instance.organization_id else None
        )
        if actions_ok and org is not None:
            actions_ok = self.action_formset.validate_for(org)
        if not (conditions_ok and actions_ok):
            raise ValidationError("The rule was not saved: fix the conditions or actions marked below.")
        self.instance.conditions = self.condition_formset.cleaned_conditions()
        self.instance.actions = self.action_formset.cleaned_actions()
        return cleaned


class RuleChangeList(ChangeList):
    """Names the locations that the page's rules route to, in one query for the whole page."""

    def get_results(self, request):
        super().get_results(request)
        page = list(self.result_list)
        names = rules.location_names(rule.actions for rule in page)
        for rule in page:
            rule.location_names = names


@admin.register(AutomationRule)
class AutomationRuleAdmin(ConfigHistoryAdmin, OrganizationColumnMixin, OrganizationScopedAdmin):
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
        scope = scope_for(request.user)
        locations = Location.objects.filter(active=True, ships=True)
        if not scope.is_superuser:
            locations = locations.filter(organization__in=scope.admin_org_ids)
        return type(form.__name__, (form,), {"locations": locations})

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        scope = scope_for(request.user)
        if len(scope.admin_org_ids) == 1:
            initial.setdefault("organization", next(iter(scope.admin_org_ids)))
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
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/dry-run/",
                wrap(self.dry_run_view),
                name="automations_automationrule_dry_run",
            ),
            *super().get_urls(),
        ]

    def dry_run_view(self, request, object_id):
        """Try the rule on one order of its organization; logged as a dry run, the order unchanged."""
        rule = self.get_object(request, object_id)  # 404 outside your scope
        if not self.has_change_permission(request, rule):
            raise PermissionDenied
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


class DryRunForm(forms.Form):
    order = forms.CharField(
        label="Order", max_length=100, help_text="Its number (e.g. #1001), external id or id in the hub."
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_order(self):
        text = self.cleaned_data["order"].strip()
        found = Q(number=text) | Q(external_id=text)
        if (pk := parse_id(text)) is not None:  # "²" passed isdigit() and failed int(): a 500
            found |= Q(pk=pk)
        orders = list(Order.objects.filter(found, organization=self.organization).order_by("-pk")[:2])
        if not orders:
            raise ValidationError(f"No order {text!r} in {self.organization}.")
        if len(orders) > 1:
            raise ValidationError(f"Several orders match {text!r}; give the order's id.")
        return orders[0]


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
