"""
Sending webhook deliveries (docs/connectors/contract.md, "Webhook deliveries"): due deliveries are claimed in
batches and POSTed signed over pooled connections (core.signing, core.outbound), and each outcome moves the
delivery along the retry schedule to `succeeded` or `dead`. A dead delivery is an exception a person fixes; a
subscription's first success after one resolves it.

A claimed delivery is leased (`locked_until`) rather than held in a transaction during the HTTP call, and the
beat's sweep rings again for whatever a lost message, a killed worker or a Redis outage left behind. Long
backoffs are `next_attempt_at` values, never Celery countdowns.
"""

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, F, OuterRef, Q, Subquery, Value, When
from django.utils import timezone

from core import outbound, signing, sync_exceptions
from core.sync_exceptions import ExceptionKind

from ..audit import record_event
from ..choices import OWED, DeliveryStatus, EventKind, IntegrationStatus
from ..lifecycle import note_outbound
from ..models import Integration, WebhookAttempt, WebhookDelivery, WebhookSubscription
from .doorbells import ring
from .outbox import OUTBOX_BATCH, dispatch_outbox
from .subscriptions import previous_secrets, switch_off

logger = logging.getLogger(__name__)

SHORT_RETRY = 60  # seconds: a retry due this soon also gets a delayed doorbell, for punctuality


# --- deliveries → HTTP -----------------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=settings.WEBHOOK_CONCURRENCY, thread_name_prefix="webhook")
    return _pool


def _due():
    now = timezone.now()
    return (
        WebhookDelivery.objects.filter(status__in=OWED, next_attempt_at__lte=now, subscription__active=True)
        .exclude(integration__status=IntegrationStatus.DISABLED)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
    )


def claim(limit: int | None = None) -> list[WebhookDelivery]:
    """Lease up to `limit` due deliveries to this worker (their attempt count goes up as they are taken)."""
    limit = limit or settings.WEBHOOK_BATCH_SIZE
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            _due()
            .order_by("next_attempt_at", "pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return []
        WebhookDelivery.objects.filter(pk__in=ids).update(
            locked_until=now + timedelta(seconds=settings.WEBHOOK_DELIVERY_LEASE),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    return list(
        WebhookDelivery.objects.filter(pk__in=ids)
        .select_related("subscription", "integration")
        .order_by("pk")
    )


def _send(delivery: WebhookDelivery) -> outbound.Outcome:
    subscription = delivery.subscription
    try:
        return outbound.post_signed(
            subscription.url,
            subscription.secret,
            delivery.event_id,
            delivery.body.encode("utf-8"),
            also_signed_with=previous_secrets(subscription),  # a rotation's overlap: both sign
        )
    except Exception as exc:  # a bad row (say, an unusable secret) fails alone, not its whole batch
        logger.exception("Delivery %s could not be sent", delivery.pk)
        return outbound.Outcome(False, error=f"Could not send: {type(exc).__name__}: {exc}"[:500])


def deliver_due(limit: int | None = None) -> int:
    """Claim one batch of due deliveries, send them concurrently, record the outcomes; returns how many."""
    claimed = claim(limit)
    if not claimed:
        return 0
    started = timezone.now()
    outcomes = list(_executor().map(_send, claimed))
    record_outcomes(claimed, outcomes, started)
    return len(claimed)


# --- outcomes --------------------------------------------------------------------------------------------


def _lock_current(deliveries: list[WebhookDelivery]) -> dict[int, tuple[int, str]]:
    """
    Lock the batch's rows that still exist until this transaction ends, in id order (the order in which
    unsubscribe() locks them: no deadlock between the two), and say where each stands: {id: (attempts, status)}.
    A delivery deleted while it was being sent (its subscription removed) is absent: it takes no attempt, which
    would break the foreign key at commit and lose every other outcome of the batch with it.
    """
    return {
        pk: (attempts, status)
        for pk, attempts, status in WebhookDelivery.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted(d.pk for d in deliveries))
        .order_by("pk")
        .values_list("pk", "attempts", "status")
    }


def _outcome_fields(delivery: WebhookDelivery, outcome: outbound.Outcome, now) -> dict:
    """
    The delivery's columns after this outcome (succeeded, dead: 410 Gone or out of retries, or failed) that
    are the same for every delivery of a batch with the same outcome; the rest (`_LAST_ATTEMPT`) are copied
    from the attempt just recorded.
    """
    fields = {"locked_until": None, "last_attempt_at": now, "updated_at": now}
    if outcome.ok:
        fields.update(status=DeliveryStatus.SUCCEEDED, succeeded_at=now)
    elif outcome.gone:
        fields.update(status=DeliveryStatus.DEAD, last_error="410 Gone: the subscription was switched off.")
    else:
        delay = signing.next_attempt_delay(delivery.attempts, retry_after=outcome.retry_after)
        if delay is None:
            fields.update(status=DeliveryStatus.DEAD)
        else:
            fields.update(status=DeliveryStatus.FAILED, next_attempt_at=now + timedelta(seconds=delay))
    return fields


# delivery column → the column of its attempt it repeats
_LAST_ATTEMPT = {
    "last_status_code": "status_code",
    "last_response": "response_excerpt",
    "last_error": "error",
    "last_duration_ms": "duration_ms",
}


def _update_from_attempts(groups: dict[tuple, list[WebhookDelivery]]) -> None:
    """
    One UPDATE per group of deliveries that take the same values: those values, each failure's own retry
    time, and their last attempt's answer copied from the attempt rows just inserted. (Django's bulk_update
    writes a CASE per column and row: for a batch of 100 it cost more than the 100 single UPDATEs it would
    replace, 376 against 134 ms in bench/deliveries.py's profile of a batch.)
    """
    for values, rows in groups.items():
        fields = dict(values)
        if fields["status"] == DeliveryStatus.FAILED:  # each retry's time has its own jitter
            fields["next_attempt_at"] = Case(
                *(When(pk=d.pk, then=Value(d.next_attempt_at)) for d in rows), output_field=DateTimeField()
            )
        attempt = WebhookAttempt.objects.filter(delivery=OuterRef("pk"), number=OuterRef("attempts"))
        copied = {
            column: Subquery(attempt.order_by("-pk").values(source)[:1])
            for column, source in _LAST_ATTEMPT.items()
            if column not in fields
        }
        WebhookDelivery.objects.filter(pk__in=sorted(d.pk for d in rows)).update(**fields, **copied)


def record_outcomes(deliveries, outcomes, started) -> None:
    """
    Record a batch's outcomes in one transaction: one SELECT locks the rows, one INSERT adds the attempts and
    one UPDATE per kind of outcome moves the deliveries on (a batch of 100 used to take 100 UPDATEs, the
    larger part of a worker's CPU per delivery in bench/deliveries.py's profile).
    """
    now = timezone.now()
    attempts, dead, gone, soonest_retry = [], [], {}, None
    per_subscription: dict[int, list[bool]] = defaultdict(list)
    per_integration: dict[int, list[outbound.Outcome]] = defaultdict(list)
    # the values written → the deliveries that take them (one group per kind of outcome, as a rule)
    groups: dict[tuple, list[WebhookDelivery]] = defaultdict(list)
    with transaction.atomic():
        current = _lock_current(deliveries)
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            if delivery.pk not in current:
                continue
            attempts.append(
                WebhookAttempt(
                    delivery=delivery,
                    number=delivery.attempts,
                    url=delivery.subscription.url[:500],
                    request_headers=outcome.request_headers,
                    status_code=outcome.status_code,
                    response_excerpt=outcome.excerpt,
                    error=outcome.error[:500],
                    duration_ms=outcome.duration_ms,
                    succeeded=outcome.ok,
                    started_at=started,
                )
            )
            # Only while the lease is ours: a worker that outlived its lease does not overwrite the one that
            # took the delivery over (the attempt count moved on when it was claimed again).
            attempts_now, status_now = current[delivery.pk]
            if attempts_now != delivery.attempts or status_now not in OWED:
                continue
            fields = _outcome_fields(delivery, outcome, now)
            shared = {name: value for name, value in fields.items() if name != "next_attempt_at"}  # jittered
            groups[tuple(sorted(shared.items()))].append(delivery)
            fields = {
                "last_status_code": outcome.status_code,
                "last_response": outcome.excerpt,
                "last_error": outcome.error[:500],
                "last_duration_ms": outcome.duration_ms,
                **fields,
            }
            for name, value in fields.items():
                setattr(delivery, name, value)
            if outcome.gone:
                gone[delivery.subscription_id] = delivery
                continue
            if delivery.status == DeliveryStatus.DEAD:
                dead.append(delivery)
            elif delivery.status == DeliveryStatus.FAILED:
                delay = (delivery.next_attempt_at - now).total_seconds()
                soonest_retry = delay if soonest_retry is None else min(soonest_retry, delay)
            per_subscription[delivery.subscription_id].append(outcome.ok)
            per_integration[delivery.integration_id].append(outcome)
        WebhookAttempt.objects.bulk_create(attempts)
        _update_from_attempts(groups)
        subscriptions = {d.subscription_id: d.subscription for d in deliveries}
        for subscription_id, delivery in gone.items():
            switch_off(
                subscriptions[subscription_id], "The receiver answered 410 Gone.", delivery=delivery, now=now
            )
        _track_subscriptions(
            [
                (subscriptions[subscription_id], results)
                for subscription_id, results in per_subscription.items()
            ],
            now,
        )
        for delivery in dead:
            record_event(
                delivery.integration,
                EventKind.DELIVERY,
                f"Delivery {delivery.event_id} ({delivery.event_type}) is dead after {delivery.attempts} "
                f"attempts: {delivery.last_error or f'HTTP {delivery.last_status_code}'}",
                data={
                    "delivery": delivery.pk,
                    "event_id": delivery.event_id,
                    "url": delivery.subscription.url,
                },
            )
            _raise_dead(delivery)
        integrations = {d.integration_id: d.integration for d in deliveries}
        for integration_id, results in per_integration.items():
            _track_integration(integrations[integration_id], results)
    if soonest_retry is not None and soonest_retry <= SHORT_RETRY:
        # A short wait is kept punctual with a delayed doorbell (well inside the broker's visibility
        # timeout); the row's next_attempt_at stays the truth and the sweeper backs it up.
        transaction.on_commit(lambda: ring(1, countdown=soonest_retry))


def _track_subscriptions(tracked: list[tuple[WebhookSubscription, list[bool]]], now) -> None:
    """
    Clear a run of failures on success; start one on a first failure (one UPDATE for the whole batch); switch
    the subscription off after days of nothing but failures.
    """
    starting = []
    for subscription, results in tracked:
        if any(results):
            if subscription.failing_since is not None:
                WebhookSubscription.objects.filter(pk=subscription.pk).update(failing_since=None)
                subscription.failing_since = None
                sync_exceptions.resolve_exception(
                    subscription.integration.organization_id,
                    ExceptionKind.DELIVERY_DEAD,
                    integration=subscription.integration,
                    entity_type="webhook_subscription",
                    entity_id=subscription.pk,
                )
        elif subscription.failing_since is None:
            starting.append(subscription)
        elif now - subscription.failing_since >= timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS):
            switch_off(
                subscription,
                f"Every delivery failed for {settings.WEBHOOK_DISABLE_AFTER_DAYS:g} days "
                f"(since {subscription.failing_since:%Y-%m-%d %H:%M} UTC).",
                now=now,
            )
    if starting:
        WebhookSubscription.objects.filter(
            pk__in=sorted(s.pk for s in starting), failing_since__isnull=True
        ).update(failing_since=now)
        for subscription in starting:
            subscription.failing_since = now


def _track_integration(integration: Integration, results: list[outbound.Outcome]) -> None:
    if any(o.ok for o in results):
        note_outbound(integration, ok=True)
    else:
        note_outbound(integration, ok=False, failures=len(results), reason=results[-1].summary)


def _raise_dead(delivery: WebhookDelivery) -> None:
    subscription = delivery.subscription
    sync_exceptions.raise_exception(
        delivery.organization_id,
        ExceptionKind.DELIVERY_DEAD,
        f"Webhook {delivery.event_type} {delivery.event_id} to {subscription.url} is dead after "
        f"{delivery.attempts} attempts ({delivery.last_error or f'HTTP {delivery.last_status_code}'}). "
        "Fix the receiver, then replay it from the deliveries list or with `manage.py replay_deliveries`.",
        integration=delivery.integration,
        # One open exception per subscription, counting its dead deliveries.
        entity_type="webhook_subscription",
        entity_id=subscription.pk,
        data={"delivery": delivery.pk, "event_id": delivery.event_id, "url": subscription.url},
    )


# --- the beat's safety net -------------------------------------------------------------------------------


def sweep(max_batches: int = 20) -> dict[str, int]:
    """Beat: dispatch what the doorbell missed and wake workers for deliveries that are due."""
    events = made = 0
    for _ in range(max_batches):
        dispatched, deliveries = dispatch_outbox()
        events, made = events + dispatched, made + deliveries
        if dispatched < OUTBOX_BATCH:
            break
    due = _due().count()
    if due:
        ring(due)
    return {"events": events, "deliveries": made, "due": due}
