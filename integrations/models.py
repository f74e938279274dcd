from django.conf import settings
from django.db import models

from core.fields import EncryptedJSONField, EncryptedTextField
from core.history import ConfigHistory
from organizations.models import Organization
from organizations.scoping import restricted

from .choices import (
    DEFAULT_WORKFLOWS,
    WORKFLOW_HELP,
    ConnectorType,
    DeliveryStatus,
    EventKind,
    IntegrationStatus,
    Workflow,
)


class Connector(models.Model):
    """A kind of external system in the catalog: its settings schema, mapping kinds and optional manifest."""

    key = models.SlugField(max_length=80, help_text="Stable identifier, e.g. custom-channel.")
    name = models.CharField(max_length=120)
    type = models.CharField(max_length=20, choices=ConnectorType.choices)
    description = models.TextField(blank=True)
    version = models.CharField(max_length=20, default="1.0")
    recommended_grants = models.JSONField(
        default=list, blank=True, help_text="Grants pre-filled when a key is issued for this connector."
    )
    settings_schema = models.JSONField(
        default=dict,
        blank=True,
        help_text='JSON Schema of the integration settings. Properties with "writeOnly": true are secrets.',
    )
    mapping_kinds = models.JSONField(
        default=list, blank=True, help_text='Mappings this connector uses, e.g. ["shipping_methods", "skus"].'
    )
    manifest = models.JSONField(
        null=True,
        blank=True,
        help_text="Endpoint paths the hub calls (health, orders, dispatch, inventory, prices).",
    )
    organization = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="private_connectors",
        help_text="Empty for a public catalog connector; set for one private to an organization.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = restricted(shared_when_null=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(organization__isnull=True),
                name="connector_public_key_unique",
            ),
            models.UniqueConstraint(
                fields=["organization", "key"],
                condition=models.Q(organization__isnull=False),
                name="connector_private_key_unique",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_public(self):
        return self.organization_id is None

    @property
    def secret_fields(self) -> set[str]:
        props = (self.settings_schema or {}).get("properties", {})
        return {name for name, spec in props.items() if spec.get("writeOnly")}


def _flow_field(flow: Workflow):
    return models.BooleanField(f"{flow.label}", default=False, help_text=WORKFLOW_HELP[flow])


class Integration(models.Model):
    """One connected external system of an organization: an instance of a connector, with its lifecycle."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="integrations")
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="integrations")
    name = models.CharField(max_length=120)
    status = models.CharField(
        max_length=20, choices=IntegrationStatus.choices, default=IntegrationStatus.NOT_CONFIGURED
    )
    status_reason = models.CharField(max_length=500, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # The connector schema's "writeOnly" settings live in secret_settings, encrypted; `settings` never holds
    # one (save() moves them), so it can be shown, exported and kept in history. Read both through
    # connector_settings.full_settings().
    settings = models.JSONField(default=dict, blank=True)
    secret_settings = EncryptedJSONField(default=dict, blank=True)
    mappings = models.JSONField(
        default=dict,
        blank=True,
        help_text='Connector-specific mapping kinds (e.g. locations), each {"external": "hub"} pairs. SKU and '
        "shipping method mappings are rows (SkuMapping, ShippingMethodMapping), not JSON.",
    )
    notification_email = models.EmailField(
        blank=True, help_text="Exceptions and key-expiry notices go here (else the organization's address)."
    )
    flow_orders_in = _flow_field(Workflow.ORDERS_IN)
    flow_shipping_requests_out = _flow_field(Workflow.SHIPPING_REQUESTS_OUT)
    flow_fulfillments_in = _flow_field(Workflow.FULFILLMENTS_IN)
    flow_fulfillments_out = _flow_field(Workflow.FULFILLMENTS_OUT)
    flow_inventory_in = _flow_field(Workflow.INVENTORY_IN)
    flow_inventory_out = _flow_field(Workflow.INVENTORY_OUT)
    flow_products_in = _flow_field(Workflow.PRODUCTS_IN)
    flow_products_out = _flow_field(Workflow.PRODUCTS_OUT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    # Outbound health (webhook deliveries and manifest calls): reset by a success, counted by each failure;
    # INTEGRATION_FAILURE_THRESHOLD of them in a row move a connected integration to `error`.
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Manifest connectors: the hub signs its calls with this (whsec_…); generated on first use. Encrypted.
    signing_secret = EncryptedTextField(blank=True)
    poll_interval = models.PositiveIntegerField(
        "orders poll interval (seconds)",
        default=300,
        help_text="Manifest connectors: how often the hub pulls new orders from the orders endpoint.",
    )
    next_poll_at = models.DateTimeField(null=True, blank=True)
    # Manifest connectors: cursors of the pulls and pushes (orders cursor, last outbox id dispatched, …).
    manifest_state = models.JSONField(default=dict, blank=True)
    # Secrets never reach the history tables; the rest excluded is the state the hub writes as it runs.
    history = ConfigHistory(
        excluded_fields=[
            "signing_secret",
            "secret_settings",
            "status",
            "status_reason",
            "status_changed_at",
            "last_error",
            "last_error_at",
            "last_activity_at",
            "consecutive_failures",
            "next_poll_at",
            "manifest_state",
            "updated_at",
        ]
    )

    objects = restricted(member_access="")

    class Meta:
        ordering = ["name", "pk"]
        permissions = [("manage_keys_integration", "Can manage the integration's keys")]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="integration_unique_name_per_org"),
        ]
        indexes = [
            models.Index(fields=["organization", "status"], name="integration_org_status_idx"),
            models.Index(fields=["status", "status_changed_at"], name="integration_status_since_idx"),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        writes_settings = update_fields is None or "settings" in update_fields
        if writes_settings and self.move_secret_settings() and update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "secret_settings"}
        super().save(*args, **kwargs)

    def move_secret_settings(self) -> bool:
        """Move the connector's secret settings out of `settings` into `secret_settings`; True if any moved."""
        secrets = self.connector.secret_fields
        moving = {k: v for k, v in (self.settings or {}).items() if k in secrets}
        if not moving:
            return False
        self.settings = {k: v for k, v in self.settings.items() if k not in secrets}
        self.secret_settings = {**(self.secret_settings or {}), **moving}
        return True

    def workflow_enabled(self, flow: Workflow | str) -> bool:
        return getattr(self, f"flow_{Workflow(flow).value}")

    def apply_default_workflows(self):
        """Switch the flows on that the connector type uses, the others off."""
        on = DEFAULT_WORKFLOWS.get(self.connector.type, set())
        for flow in Workflow:
            setattr(self, f"flow_{flow.value}", flow in on)

    @property
    def notify_address(self) -> str:
        return self.notification_email or self.organization.notification_email


class IntegrationEvent(models.Model):
    """The audit trail: one row for every status move, configuration change, request, delivery or call."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="integration_events"
    )
    # Kept when the integration is deleted, so the trail says what happened to it.
    integration = models.ForeignKey(
        Integration, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    integration_name = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=30, choices=EventKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(
        max_length=200, blank=True, help_text='"user:<name>", "key:<prefix>" or "system".'
    )
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)

    objects = restricted(member_access="integration")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["integration", "-created_at"], name="event_integration_recent_idx"),
            models.Index(fields=["organization", "-created_at"], name="event_org_recent_idx"),
            # The request log's prune (REQUEST_LOG_RETENTION_DAYS) finds its old rows by age alone.
            models.Index(
                fields=["created_at"],
                name="event_api_request_age_idx",
                condition=models.Q(kind="api_request"),
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.message[:60]}"


class OutboxEvent(models.Model):
    """
    A domain event written in the same transaction as the change it describes (the transactional outbox):
    the webhooks issue delivers these to subscribers, so no committed change goes untold and no rolled-back
    one is told.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="outbox_events")
    integration = models.ForeignKey(
        Integration,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="outbox_events",
        help_text="The integration the event concerns (the order's channel, the request's 3PL), if one.",
    )
    type = models.CharField(max_length=60, help_text="e.g. order.created, fulfillment.created.")
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    changes = models.JSONField(
        null=True,
        blank=True,
        help_text='What changed (e.g. ["shipping_address.line1"]), sent as the envelope\'s `changes`; empty '
        "for events that carry none.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(
                fields=["id"], name="outbox_undispatched_idx", condition=models.Q(dispatched_at__isnull=True)
            ),
            models.Index(fields=["organization", "type", "-created_at"], name="outbox_org_type_idx"),
            # Manifest dispatch reads an integration's fulfillment events past its cursor.
            models.Index(fields=["integration", "type", "id"], name="outbox_integration_type_idx"),
        ]

    def __str__(self):
        return f"{self.type} {self.object_type}:{self.object_id}"


class WebhookSubscription(models.Model):
    """An integration's request to be told of domain events (docs/connectors/contract.md, "Events, exceptions,
    webhooks")."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="webhook_subscriptions"
    )
    url = models.URLField(max_length=500, help_text="Where deliveries are POSTed (public http/https only).")
    event_types = models.JSONField(default=list, help_text='Event types, e.g. ["order.created"].')
    # Encrypted, not hashed like API keys: deliveries are signed with it (HMAC), so the hub must read it back.
    # Never shown after creation, logged or exported.
    secret = EncryptedTextField(help_text="The whsec_… signing secret; shown once, on creation.")
    # A rotation (POST /webhooks/{id}/rotate-secret) keeps the secret it replaced signing beside the new one
    # until `previous_secret_until`, so a receiver can switch over without refusing a delivery; then it is
    # dropped (integrations.housekeeping). Encrypted like `secret`, never shown.
    previous_secret = EncryptedTextField(blank=True, help_text="The secret before the last rotation.")
    previous_secret_until = models.DateTimeField(
        null=True, blank=True, help_text="Until when deliveries are also signed with the previous secret."
    )
    active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # No longer read: `sequence` is counted per integration and object (WebhookSequence, issue 16) and kept
    # across subscriptions; left so older delivery rows and the admin's column still make sense.
    last_sequence = models.PositiveBigIntegerField(default=0)
    # When the current run of failed attempts began (None after a success): 5 days of it switch it off.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The secret never reaches the history tables; the rest excluded is delivery state.
    history = ConfigHistory(
        excluded_fields=[
            "secret",
            "previous_secret",
            "previous_secret_until",
            "last_sequence",
            "failing_since",
            "updated_at",
        ]
    )

    objects = restricted(organization="integration__organization", member_access="integration")

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["integration", "active"], name="webhook_integration_active_idx")]

    def __str__(self):
        return f"{self.url} ({', '.join(self.event_types)})"


class WebhookEvent(models.Model):
    """
    One outbox event as one integration is told of it (issue 16): rendered as that integration's key would
    have read the object with GET when the event's transaction committed, numbered, and kept for the
    catch-up feed (GET /webhook-events) and as the exact body every delivery of it sends.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="webhook_events")
    outbox_event = models.ForeignKey(
        OutboxEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_events"
    )
    event_id = models.CharField(max_length=40, unique=True, help_text="The webhook-id header (evt_…).")
    type = models.CharField(max_length=60)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=40)
    sequence = models.PositiveBigIntegerField(
        help_text="Increasing per integration and object, in commit order."
    )
    # The body as signed and sent ({id, type, created_at, sequence, data}): deliveries copy these bytes.
    body = models.TextField()
    created_at = models.DateTimeField(help_text="The event time (when it was recorded).")
    # The feed's order: PostgreSQL's id of the writing transaction (0 on SQLite, whose writers take turns).
    # The feed shows only rows older than every transaction still running, so a row never appears behind one
    # a reader has already passed (see integrations.webhooks.feed).
    position = models.BigIntegerField(default=0)

    objects = restricted(member_access="integration")

    class Meta:
        ordering = ["position", "pk"]
        indexes = [
            models.Index(fields=["integration", "position", "id"], name="webhook_event_feed_idx"),
            models.Index(
                fields=["integration", "object_type", "object_id", "sequence"],
                name="webhook_event_object_idx",
            ),
            models.Index(fields=["organization", "position", "id"], name="webhook_event_org_feed_idx"),
            models.Index(fields=["created_at"], name="webhook_event_age_idx"),
        ]

    def __str__(self):
        return f"{self.type} {self.object_type}:{self.object_id} #{self.sequence} → {self.integration_id}"


class WebhookSequence(models.Model):
    """The last `sequence` given to one object's events for one integration (issue 16: one counter per pair)."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="+", db_index=False)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=40)
    last = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "object_type", "object_id"], name="webhook_sequence_one_per_object"
            ),
        ]

    def __str__(self):
        return f"{self.object_type}:{self.object_id} → {self.integration_id}: {self.last}"


class WebhookDelivery(models.Model):
    """
    One event owed to one subscription: the exact signed body, its retry state and its last outcome. The
    table, not the broker, is the queue: due rows are claimed with SELECT … FOR UPDATE SKIP LOCKED.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="webhook_deliveries")
    # Indexed with its creation time below (a subscription's deliveries list), not alone.
    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    outbox_event = models.ForeignKey(
        OutboxEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    event_id = models.CharField(max_length=40, help_text="The webhook-id header: the same on every attempt.")
    event_type = models.CharField(max_length=60)
    sequence = models.PositiveBigIntegerField()
    # The body as sent: signing is over these exact bytes, so a retry or a replay sends the same ones.
    body = models.TextField()
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(help_text="When the delivery is due (next retry).")
    # A claimed row is reserved to its worker until then; a killed worker's rows become due again after.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True, help_text="The start of the last response body.")
    last_error = models.CharField(max_length=500, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = restricted(member_access="integration")

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # One delivery per event and subscription: a re-run dispatcher never duplicates one.
            models.UniqueConstraint(
                fields=["subscription", "outbox_event"],
                condition=models.Q(outbox_event__isnull=False),
                name="delivery_one_per_event_and_subscription",
            ),
        ]
        indexes = [
            # The claim: due rows among those still owed.
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due_idx",
                condition=models.Q(status__in=["pending", "failed"]),
            ),
            models.Index(fields=["integration", "status", "-created_at"], name="delivery_integration_idx"),
            # GET /webhooks/{id}/deliveries, newest first; also serves the subscription's cascade.
            models.Index(fields=["subscription", "-created_at"], name="delivery_subscription_idx"),
            models.Index(fields=["organization", "-created_at"], name="delivery_org_recent_idx"),
            models.Index(fields=["status", "updated_at"], name="delivery_status_age_idx"),
        ]

    def __str__(self):
        return f"{self.event_type} → {self.subscription_id} ({self.status})"


# PostgreSQL also has delivery_event_id_idx on (UPPER(event_id) text_pattern_ops) for the admin's search by
# webhook-id, made by migration 0011 in SQL (Django renders that expression index without the parentheses
# PostgreSQL needs).


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: what was sent, what came back, how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    url = models.URLField(max_length=500)
    request_headers = models.JSONField(default=dict, help_text="As sent (the signature is not a secret).")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    started_at = models.DateTimeField()

    class Meta:
        ordering = ["delivery", "number", "pk"]
        indexes = [models.Index(fields=["delivery", "number"], name="attempt_delivery_idx")]

    def __str__(self):
        return f"attempt {self.number} of delivery {self.delivery_id}"
