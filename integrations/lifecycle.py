"""
The lifecycle of an integration (docs/architecture.md, "Integration lifecycle"): the one function that moves
its status, the moves people and connectors ask for (enable, disable, re-enable, handshake, report an error),
the connect window, and the outbound health count that moves a failing integration to `error` and a recovered
one back to `connected`.
"""

from datetime import timedelta
from functools import partial

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core import sync_exceptions, triggers
from core.errors import DomainError
from core.queue import enqueue
from core.sync_exceptions import ExceptionKind

from .audit import actor_label, record_event
from .choices import ALLOWED_TRANSITIONS, EventKind, EventType, IntegrationStatus
from .connector_settings import full_settings, is_configured, missing_required
from .models import Integration
from .webhooks.outbox import emit

Status = IntegrationStatus
# Entering `connecting` asks for a manifest connector's health check (the task sits above this module).
HEALTH_CHECK_TASK = "integrations.tasks.check_health_task"


class TransitionRefused(DomainError, ValidationError):
    """
    A lifecycle move that docs/architecture.md ("Integration lifecycle") does not allow (API: 409 `conflict`).
    A ValidationError too, whose own `code` says which refusal: an unknown status or a move not allowed from
    the current one.
    """

    api_code = "conflict"


def transition(integration: Integration, to_status, *, reason: str, actor=None) -> Integration:
    """The only way an integration's status changes: checks the move, stores the reason, records the event."""
    if to_status not in Status.values:
        raise TransitionRefused(
            f"Unknown status {to_status!r}; one of: {', '.join(Status.values)}.", code="unknown_status"
        )
    to_status = Status(to_status)
    with transaction.atomic():
        locked = (
            Integration.objects.select_for_update(of=("self",))
            .select_related("connector")
            .get(pk=integration.pk)
        )
        current = Status(locked.status)
        if to_status not in ALLOWED_TRANSITIONS[current]:
            raise TransitionRefused(
                f"Cannot move {locked.name!r} from {current.label} to {to_status.label}"
                + (": it is already there." if current == to_status else ".")
                + _hint(current, to_status),
                code="transition_refused",
            )
        # Only for these moves: the others must work even when the secrets cannot be decrypted.
        missing = (
            missing_required(locked.connector, full_settings(locked))
            if to_status in (Status.CONNECTING, Status.CONNECTED)
            else []
        )
        if missing:
            raise TransitionRefused(
                f"Cannot move {locked.name!r} to {to_status.label}: required settings missing ({', '.join(missing)}).",
                code="transition_refused",
            )
        now = timezone.now()
        locked.status, locked.status_reason, locked.status_changed_at = to_status, reason[:500], now
        locked.last_activity_at = now
        fields = ["status", "status_reason", "status_changed_at", "last_activity_at", "updated_at"]
        if to_status == Status.ERROR:
            locked.last_error, locked.last_error_at = reason, now
            fields += ["last_error", "last_error_at"]
        locked.save(update_fields=fields)
        record_event(
            locked,
            EventKind.STATUS_CHANGED,
            f"{current.label} → {to_status.label}: {reason}",
            actor=actor,
            data={"from": current.value, "to": to_status.value, "reason": reason},
        )
        emit(
            locked.organization_id,
            EventType.INTEGRATION_STATUS_CHANGED,
            "integration",
            locked.pk,
            {
                "id": str(locked.pk),
                "name": locked.name,
                "status": to_status.value,
                "previous": current.value,
                "reason": reason,
            },
            integration=locked,
        )
        triggers.fire(
            triggers.INTEGRATION_STATUS_CHANGED,
            organization_id=locked.organization_id,
            integration_id=locked.pk,
            previous=current.value,
            status=to_status.value,
        )
        if to_status == Status.CONNECTING and (locked.connector.manifest or {}).get("health"):
            # A manifest connector's handshake is the hub's health check: run one once this commits (the
            # beat's round checks it soon if the broker is down).
            transaction.on_commit(partial(enqueue, HEALTH_CHECK_TASK, args=[locked.pk]))
    for field in (
        "status",
        "status_reason",
        "status_changed_at",
        "last_error",
        "last_error_at",
        "last_activity_at",
    ):
        setattr(integration, field, getattr(locked, field))
    return integration


def _hint(current, to_status) -> str:
    if to_status == Status.CONNECTED and current in (Status.NOT_CONFIGURED, Status.DISABLED, Status.ERROR):
        return " It must pass through Connecting (handshake or health check) first."
    if current == Status.DISABLED:
        return " Enable it first."
    if current == Status.NOT_CONFIGURED and to_status == Status.ERROR:
        return " Complete its settings first."
    return ""


def sync_configuration_status(integration: Integration, *, actor=None) -> Integration:
    """Complete settings move a not-configured integration to connecting; a missing required one moves back."""
    missing = missing_required(integration.connector, full_settings(integration))
    if integration.status == Status.NOT_CONFIGURED and not missing:
        return transition(integration, Status.CONNECTING, reason="Settings complete.", actor=actor)
    if missing and integration.status in (Status.CONNECTING, Status.CONNECTED, Status.ERROR):
        return transition(
            integration,
            Status.NOT_CONFIGURED,
            reason=f"Required setting missing: {', '.join(missing)}.",
            actor=actor,
        )
    return integration


def disable(integration: Integration, *, actor=None, reason="") -> Integration:
    return transition(
        integration, Status.DISABLED, reason=reason or f"Disabled by {actor_label(actor)}.", actor=actor
    )


def enable(integration: Integration, *, actor=None, reason="") -> Integration:
    """Back from disabled: always re-checked (connecting), or not configured while settings are incomplete."""
    if integration.status != Status.DISABLED:
        raise TransitionRefused(f"{integration.name!r} is not disabled.", code="transition_refused")
    to = Status.CONNECTING if is_configured(integration) else Status.NOT_CONFIGURED
    return transition(integration, to, reason=reason or f"Enabled by {actor_label(actor)}.", actor=actor)


def reenable(integration: Integration, *, actor=None, reason="") -> Integration:
    """From `error` back to `connecting`: the next handshake, health check or outbound success connects it."""
    if integration.status != Status.ERROR:
        raise TransitionRefused(f"{integration.name!r} is not in error.", code="transition_refused")
    return transition(
        integration,
        Status.CONNECTING,
        reason=reason or f"Re-enabled by {actor_label(actor)}; checking the connection again.",
        actor=actor,
    )


def handshake(integration: Integration, *, actor=None) -> Integration:
    """The connector says it is ready (POST /api/v1/integration/connect): connecting/error → connected."""
    if integration.status == Status.CONNECTED:
        return integration
    if integration.status == Status.ERROR:
        transition(integration, Status.CONNECTING, reason="Connector retried the handshake.", actor=actor)
    return transition(integration, Status.CONNECTED, reason="Handshake completed.", actor=actor)


def report_error(integration: Integration, message: str, *, actor=None) -> Integration:
    if integration.status == Status.ERROR:
        integration.last_error, integration.last_error_at = message, timezone.now()
        Integration.objects.filter(pk=integration.pk).update(
            last_error=integration.last_error, last_error_at=integration.last_error_at
        )
        return integration
    return transition(integration, Status.ERROR, reason=message, actor=actor)


def expire_stale_connecting(now=None) -> int:
    """Integrations left in `connecting` past INTEGRATION_CONNECT_WINDOW move to `error`; returns how many."""
    now = now or timezone.now()
    window = django_settings.INTEGRATION_CONNECT_WINDOW
    cutoff = now - timedelta(seconds=window)
    moved = 0
    stale = Integration.objects.filter(status=Status.CONNECTING, status_changed_at__lt=cutoff).select_related(
        "organization"
    )
    for integration in stale.iterator(chunk_size=200):
        with transaction.atomic():
            # Re-checked under the lock: connected → error is a legal move, so a handshake (or a fresh
            # return to connecting) since the query would not be refused by transition() itself.
            still_stale = (
                Integration.objects.select_for_update()
                .filter(pk=integration.pk, status=Status.CONNECTING, status_changed_at__lt=cutoff)
                .first()
            )
            if still_stale is None:
                continue
            transition(
                integration,
                Status.ERROR,
                reason=f"No handshake or passing health check within {timedelta(seconds=window)}.",
            )
            moved += 1
    return moved


# --- outbound health --------------------------------------------------------------------------------


def note_outbound(
    integration: Integration, *, ok: bool, failures: int = 1, reason: str = "", what="delivery"
):
    """
    Count an outbound outcome (webhook delivery or manifest call). A success resets the count, and brings
    an integration that failures had moved to `error`, once re-enabled (connecting), back to `connected`;
    INTEGRATION_FAILURE_THRESHOLD failures in a row move a `connected` one to `error` (docs/architecture.md).
    """
    threshold = django_settings.INTEGRATION_FAILURE_THRESHOLD
    if ok:
        if not integration.consecutive_failures:
            return integration
        tripped = integration.consecutive_failures >= threshold
        Integration.objects.filter(pk=integration.pk).update(consecutive_failures=0)
        integration.consecutive_failures = 0
        if tripped:
            current = Integration.objects.filter(pk=integration.pk).values_list("status", flat=True).first()
            if current == Status.CONNECTING:
                transition(
                    integration, Status.CONNECTED, reason=f"Outbound {what} succeeded after re-enabling."
                )
                resolve_integration_error(integration)
        return integration
    Integration.objects.filter(pk=integration.pk).update(
        consecutive_failures=F("consecutive_failures") + failures
    )
    row = Integration.objects.filter(pk=integration.pk).values("consecutive_failures", "status").first()
    if row is None:
        return integration
    integration.consecutive_failures = row["consecutive_failures"]
    if row["consecutive_failures"] >= threshold and row["status"] == Status.CONNECTED:
        message = (
            f"{row['consecutive_failures']} outbound deliveries or calls failed in a row; last: {reason}"
        )
        try:
            transition(integration, Status.ERROR, reason=message[:500])
        except TransitionRefused:
            return integration  # moved meanwhile (disabled, reconfigured): nothing to do
        raise_integration_error(integration, message)
    return integration


def raise_integration_error(integration: Integration, reason: str) -> None:
    """Consecutive failures moved the integration to `error`: an exception a person sees and fixes."""
    sync_exceptions.raise_exception(
        integration.organization_id,
        ExceptionKind.INTEGRATION_ERROR,
        f"{integration.name} moved to Error: {reason}",
        integration=integration,
        entity_type="integration",
        entity_id=integration.pk,
    )


def resolve_integration_error(integration: Integration) -> None:
    """The integration is connected again: its open `integration_error` exception is resolved."""
    sync_exceptions.resolve_exception(
        integration.organization_id,
        ExceptionKind.INTEGRATION_ERROR,
        integration=integration,
        entity_type="integration",
        entity_id=integration.pk,
    )
