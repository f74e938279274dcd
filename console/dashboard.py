"""
The organization dashboard at /admin/automations/dashboard/: integrations and orders by status, open
exceptions, held orders and the engines' last runs, for the organizations the user sees (members too).
It reads every domain app, so it lives in the console, above them; the admin site (console/site.py)
serves it.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Max, OuterRef, Q, Subquery, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from automations.choices import RUN_BADGE, Engine, ExceptionStatus, RunOutcome
from automations.models import EngineSettings, EngineStatus, SyncException
from console.display import badge
from integrations.choices import BADGE as INTEGRATION_BADGE
from integrations.choices import IntegrationStatus
from integrations.models import Integration
from orders.choices import ORDER_BADGE, OrderStatus
from orders.models import Order
from organizations.models import Organization

SWITCH_BADGE = {True: "green", False: "grey"}
HELD_SHOWN = 10  # most recent on-hold orders listed on the dashboard


def describe_counts(counts) -> str:
    """{"released": 3, "held": 1} → "3 released, 1 held" (what an engine run did, for people)."""
    done = [
        f"{value} {key.replace('_', ' ')}"
        for key, value in (counts or {}).items()
        if value and key != "organizations"  # Run now is for one organization: it goes without saying
    ]
    return ", ".join(done) or "nothing to do"


def status_summary(status) -> str:
    """An engine's last run as badge, time, trigger, duration and counts, and its last error if any."""
    if status is None or status.last_run_at is None:
        return format_html('<span class="sy-muted">{}</span>', "Not run yet.")
    summary = format_html(
        "{} {} · {} · {} ms · {}",
        badge(RUN_BADGE, status.last_outcome, status.get_last_outcome_display()),
        timezone.localtime(status.last_run_at).strftime("%Y-%m-%d %H:%M:%S"),
        status.get_last_trigger_display(),
        status.last_duration_ms,
        describe_counts(status.last_counts),
    )
    if status.last_error:
        when = (
            timezone.localtime(status.last_error_at).strftime("%Y-%m-%d %H:%M")
            if status.last_error_at
            else ""
        )
        summary = format_html(
            '{}<div class="sy-error">Last error {}: {}</div>', summary, when, status.last_error
        )
    return summary


def _changelist(name, **params) -> str:
    url = reverse(f"admin:{name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _selected_organization(request, orgs):
    """`?org=<id>` among the organizations the user sees (another one: 404); one organization: that one."""
    raw = request.GET.get("org", "")
    if raw == "":
        return orgs[0] if len(orgs) == 1 else None
    try:
        wanted = int(raw)
    except ValueError:
        raise Http404("No such organization.") from None
    for org in orgs:
        if org.pk == wanted:
            return org
    raise Http404("No such organization.")


class Dashboard:
    """The figures of one organization (or all the user sees): a fixed number of aggregate queries."""

    def __init__(self, request, site, orgs, selected):
        self.request, self.site, self.orgs, self.selected = request, site, orgs, selected
        self.filter = {"organization__id__exact": selected.pk} if selected else {}
        self.settings = None  # the selected organization's EngineSettings row, once engines() read it

    def scoped(self, model):
        """The model's rows as its own admin scopes them (the tenancy chokepoint), narrowed to the org."""
        queryset = self.site._registry[model].get_queryset(self.request).order_by()
        return queryset.filter(organization=self.selected) if self.selected else queryset

    def by_status(self, model, statuses, colours, changelist, **extra):
        counts = dict(self.scoped(model).filter(**extra).values_list("status").annotate(n=Count("pk")))
        return [
            {
                "status": status.value,
                "badge": badge(colours, status.value, status.label),
                "count": counts.get(status.value, 0),
                "url": _changelist(changelist, status__exact=status.value, **self.filter),
            }
            for status in statuses
        ]

    def open_exceptions(self):
        group = Coalesce("integration_id", Value(0))
        latest = (
            SyncException.objects.filter(
                status=ExceptionStatus.OPEN, organization_id=OuterRef("organization_id")
            )
            .annotate(group=group)
            .filter(group=Coalesce(OuterRef("integration_id"), Value(0)))
            .order_by("-last_seen", "-pk")
            .values("message")[:1]
        )
        rows = (
            self.scoped(SyncException)
            .filter(status=ExceptionStatus.OPEN)
            .values("organization_id", "organization__name", "integration_id", "integration__name")
            .annotate(count=Count("pk"), last_seen=Max("last_seen"), message=Subquery(latest))
            .order_by("-count", "integration__name")
        )
        for row in rows:
            where = (
                {"integration__id__exact": row["integration_id"]}
                if row["integration_id"]
                else {"integration__isnull": "True", "organization__id__exact": row["organization_id"]}
            )
            row["url"] = _changelist("automations_syncexception", status__exact="open", **where)
        return list(rows)

    def held_orders(self):
        return list(
            self.scoped(Order)
            .filter(status=OrderStatus.ON_HOLD)
            .select_related("organization")
            .order_by("-updated_at", "-pk")[:HELD_SHOWN]
        )

    def engines(self):
        org_ids = None if self.request.user.is_superuser else [o.pk for o in self.orgs]
        if self.selected:
            org_ids = [self.selected.pk]
        statuses = EngineStatus.objects.filter(last_run_at__isnull=False).select_related("organization")
        if org_ids is not None:
            statuses = statuses.filter(organization_id__in=org_ids)
        if self.selected:
            # No row yet: every engine on (the defaults); the settings page makes it on first visit.
            row = self.settings = EngineSettings.objects.filter(organization=self.selected).first()
            off = {e: int(row is not None and not row.enabled(e)) for e in Engine.values}
        else:
            settings = EngineSettings.objects.all()
            if org_ids is not None:
                settings = settings.filter(organization_id__in=org_ids)
            off = settings.aggregate(
                **{e: Count("pk", filter=Q(**{f"{e}_enabled": False})) for e in Engine.values}
            )
        failing = dict(
            statuses.filter(last_outcome=RunOutcome.FAILED)
            .order_by()
            .values_list("engine")
            .annotate(Count("pk"))
        )
        # The latest run of each engine among the organizations shown (one query, however many).
        latest = {
            s.engine: s
            for s in statuses.annotate(
                rank=Window(RowNumber(), partition_by=F("engine"), order_by=F("last_run_at").desc())
            ).filter(rank=1)
        }
        total = 1 if self.selected else len(self.orgs)
        return [
            {
                "engine": engine,
                "label": label,
                "on": total - off[engine],
                "total": total,
                "switch": badge(SWITCH_BADGE, off[engine] == 0, "On" if off[engine] == 0 else "Off"),
                "status": latest.get(engine),
                "outcome": badge(
                    RUN_BADGE, latest[engine].last_outcome, latest[engine].get_last_outcome_display()
                )
                if engine in latest
                else "",
                "counts": describe_counts(latest[engine].last_counts) if engine in latest else "",
                "failing": failing.get(engine, 0),
            }
            for engine, label in Engine.choices
        ]

    def settings_url(self):
        """The organization's settings page (the list, which makes the row, when there is none yet)."""
        if self.settings is None:
            return reverse("admin:automations_enginesettings_changelist")
        return reverse("admin:automations_enginesettings_change", args=[self.settings.pk])

    def context(self):
        return {
            "engines": self.engines(),
            "settings_url": self.settings_url(),  # after engines(), which read the row
            "integrations": self.by_status(
                Integration, IntegrationStatus, INTEGRATION_BADGE, "integrations_integration"
            ),
            "orders": self.by_status(Order, OrderStatus, ORDER_BADGE, "orders_order"),
            "exceptions": self.open_exceptions(),
            "exceptions_url": _changelist("automations_syncexception", status__exact="open", **self.filter),
            "held_orders": self.held_orders(),
        }


def dashboard_view(request, site=admin.site):
    """Integrations, orders, open exceptions and engines of the user's organization(s); members too."""
    if not Organization.objects.tenancy.reaches_any(request.user, "view"):
        raise PermissionDenied
    orgs = list(Organization.objects.restrict(request.user, "view").order_by("name", "pk"))
    selected = _selected_organization(request, orgs)
    context = {
        **site.each_context(request),
        "title": "Dashboard",
        "subtitle": selected.name if selected else ("All organizations" if len(orgs) > 1 else ""),
        "organizations": orgs,
        "selected": selected,
        "held_shown": HELD_SHOWN,
        **Dashboard(request, site, orgs, selected).context(),
    }
    return TemplateResponse(request, "admin/automations/dashboard.html", context)
