from django.core.validators import MinValueValidator
from django.db import models

from core.history import ConfigHistory
from core.sync_exceptions import ExceptionKind
from integrations.models import Integration
from organizations.models import Organization
from organizations.scoping import restricted

from .choices import (
    EXCEPTION_CATEGORIES,
    Engine,
    ExceptionStatus,
    MatchMode,
    RoutingStrategy,
    RuleTrigger,
    RunOutcome,
    RunTrigger,
)


def default_notify_categories():
    return list(EXCEPTION_CATEGORIES)


class SyncException(models.Model):
    """Something that could not flow and needs a person: deduplicated per (integration, kind, entity)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sync_exceptions")
    integration = models.ForeignKey(
        Integration, null=True, blank=True, on_delete=models.CASCADE, related_name="sync_exceptions"
    )
    kind = models.CharField(max_length=40, choices=ExceptionKind.choices)
    entity_type = models.CharField(max_length=40, blank=True, help_text="e.g. order, product, delivery.")
    entity_id = models.CharField(max_length=100, blank=True)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=ExceptionStatus.choices, default=ExceptionStatus.OPEN)
    occurrences = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When a digest e-mail told someone of it (empty: not yet)."
    )
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = restricted(member_access="integration")

    class Meta:
        ordering = ["-last_seen", "-pk"]
        verbose_name = "exception"
        constraints = [
            # One open exception per cause; a resolved one may come back as a new row.
            models.UniqueConstraint(
                fields=["organization", "integration", "kind", "entity_type", "entity_id"],
                condition=models.Q(status="open"),
                nulls_distinct=False,
                name="syncexception_one_open_per_cause",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "status", "-last_seen"], name="syncexc_org_status_idx"),
            models.Index(fields=["integration", "status", "-last_seen"], name="syncexc_integration_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.message[:60]}"


class EngineSettings(models.Model):
    """One organization's switches and parameters for the four engines; every engine is on by default."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="engine_settings"
    )
    hold_enabled = models.BooleanField(
        "hold engine", default=True, help_text="Automation rules hold, tag and route new orders."
    )
    routing_enabled = models.BooleanField(
        "routing engine", default=True, help_text="Ready orders are routed to locations that can ship them."
    )
    inventory_enabled = models.BooleanField(
        "inventory engine", default=True, help_text="What each channel may sell is recomputed as stock moves."
    )
    exceptions_enabled = models.BooleanField(
        "exceptions engine",
        default=True,
        help_text="Stuck orders and stale exceptions are found, and notification digests sent.",
    )
    default_hold_minutes = models.PositiveIntegerField(
        default=0,
        help_text="Every new order waits this long before it is routed, so the customer can still change or "
        "cancel it. 0: routed at once.",
    )
    routing_strategy = models.CharField(
        max_length=20, choices=RoutingStrategy.choices, default=RoutingStrategy.PRIORITY
    )
    allow_split = models.BooleanField(
        default=True,
        help_text="When no routing card matches: an order no single location can ship may be split across "
        "locations.",
    )
    unroutable_retry_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MinValueValidator(1)],
        help_text="An order no location could ship is tried again this often (and as soon as stock arrives).",
    )
    stuck_after_hours = models.PositiveIntegerField(
        default=48,
        validators=[MinValueValidator(1)],
        help_text="An order ready or sent to fulfillment for longer than this raises a stuck-order exception.",
    )
    stale_after_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Open exceptions not seen again for this many days are resolved as stale. Empty: never.",
    )
    notify_categories = models.JSONField(
        default=default_notify_categories,
        blank=True,
        help_text="Exception categories e-mailed to the integration's (else the organization's) address.",
    )
    digest_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MinValueValidator(1)],
        help_text="New exceptions are e-mailed at most this often, as one digest per address.",
    )
    last_digest_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = ConfigHistory(excluded_fields=["last_digest_at", "updated_at"])

    objects = restricted(members_see_all=True)

    class Meta:
        verbose_name = "engine settings"
        verbose_name_plural = "engine settings"

    def __str__(self):
        return f"Engines of {self.organization}"

    def enabled(self, engine) -> bool:
        return getattr(self, f"{engine}_enabled")


class EngineStatus(models.Model):
    """Each engine's last run in an organization, for the dashboard: when, how it went, what it did."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="engine_statuses")
    engine = models.CharField(max_length=20, choices=Engine.choices)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_trigger = models.CharField(max_length=20, choices=RunTrigger.choices, blank=True)
    last_outcome = models.CharField(max_length=20, choices=RunOutcome.choices, blank=True)
    last_duration_ms = models.PositiveIntegerField(default=0)
    last_counts = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["organization", "engine"]
        verbose_name_plural = "engine statuses"
        constraints = [
            models.UniqueConstraint(fields=["organization", "engine"], name="enginestatus_unique_engine")
        ]

    def __str__(self):
        return f"{self.get_engine_display()} in {self.organization}"


class AutomationRule(models.Model):
    """When an order arrives (or is updated) and its conditions match: hold, release, route, tag or raise."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="automation_rules")
    name = models.CharField(max_length=120)
    source = models.ForeignKey(
        Integration,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="automation_rules",
        help_text="Only orders from this channel. Empty: every channel.",
    )
    trigger = models.CharField(max_length=30, choices=RuleTrigger.choices, default=RuleTrigger.ORDER_CREATED)
    match = models.CharField(max_length=3, choices=MatchMode.choices, default=MatchMode.ALL)
    conditions = models.JSONField(default=list, blank=True)
    actions = models.JSONField(default=list)
    position = models.PositiveIntegerField(default=100, help_text="Rules run in this order, lowest first.")
    stop_processing = models.BooleanField(
        default=False, help_text="When this rule matches, later rules are not tried for the order."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = ConfigHistory(excluded_fields=["updated_at"])

    objects = restricted()

    class Meta:
        ordering = ["organization", "position", "pk"]
        indexes = [models.Index(fields=["organization", "active", "position"], name="rule_org_active_idx")]

    def __str__(self):
        return self.name


class RuleRun(models.Model):
    """One rule tried on one order: which conditions matched, and what was done (nothing, on a dry run)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(AutomationRule, on_delete=models.CASCADE, related_name="runs")
    order = models.ForeignKey("orders.Order", null=True, on_delete=models.SET_NULL, related_name="rule_runs")
    trigger = models.CharField(max_length=30)
    matched = models.BooleanField()
    results = models.JSONField(
        default=list, help_text="Each condition, the order's value and whether it matched."
    )
    actions = models.JSONField(default=list, help_text="What was done, or why not.")
    dry_run = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = restricted()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["rule", "-created_at"], name="rulerun_rule_idx"),
            models.Index(fields=["organization", "-created_at"], name="rulerun_org_idx"),
        ]

    def __str__(self):
        return f"{self.rule} on {self.order_id}: {'matched' if self.matched else 'no match'}"


class RoutingRule(models.Model):
    """
    A routing card: orders matching its conditions go to the first of its locations that can ship them all,
    else (if it allows) split across them. Cards are tried in order; the first that matches decides.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="routing_rules")
    name = models.CharField(max_length=120)
    match = models.CharField(max_length=3, choices=MatchMode.choices, default=MatchMode.ALL)
    conditions = models.JSONField(default=list, blank=True, help_text="None: every order matches.")
    allow_split = models.BooleanField(
        default=False, help_text="No single location can ship it all: split it across these locations."
    )
    position = models.PositiveIntegerField(default=100)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = ConfigHistory(excluded_fields=["updated_at"])

    objects = restricted()

    class Meta:
        ordering = ["organization", "position", "pk"]
        verbose_name = "routing rule"

    def __str__(self):
        return self.name


class RoutingRuleLocation(models.Model):
    """A location on a routing card, in the card's order of preference."""

    rule = models.ForeignKey(RoutingRule, on_delete=models.CASCADE, related_name="preferences")
    location = models.ForeignKey("inventory.Location", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0)
    history = ConfigHistory(excluded_fields=[])

    objects = restricted(organization="rule__organization")

    class Meta:
        ordering = ["rule", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "location"], name="routingrule_location_unique")
        ]

    def __str__(self):
        return f"{self.rule}: {self.location}"
