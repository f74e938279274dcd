"""
Webhook delivery (API.md, "Webhook deliveries"): outbox rows become one WebhookDelivery per matching
subscription, due deliveries are claimed in batches and POSTed over pooled connections, and each outcome
moves the delivery along the retry schedule to `succeeded` or `dead`.

PostgreSQL is the queue, the broker only a doorbell: every step claims its rows with SELECT … FOR UPDATE
SKIP LOCKED, a claimed delivery is leased (`locked_until`) rather than held in a transaction during the
HTTP call, and a beat sweeper rings again for whatever a lost message, a killed worker or a Redis outage
left behind. Long backoffs are `next_attempt_at` values, never Celery countdowns.
"""

import logging
import math
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, F, Q, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from core import history, outbound, signing
from core.queue import answer_doorbell as celery_answer_doorbell
from core.queue import enqueue, enqueue_once
from core.transactions import on_commit_once

from . import services, signals
from .choices import TEST_EVENT_TYPE, DeliveryStatus, EventKind, EventType, IntegrationStatus, Workflow
from .models import Integration, OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from .webhooks import EVENT_GRANTS

logger = logging.getLogger(__name__)

OUTBOX_BATCH = 500  # outbox rows turned into deliveries per transaction
MAX_PARALLEL_TASKS = 4  # delivery tasks rung at once for a burst (each claims WEBHOOK_BATCH_SIZE)
SHORT_RETRY = 60  # seconds: a retry due this soon also gets a delayed doorbell, for punctuality
OWED = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)

# The workflow switch an event type goes out under (None: visibility and grants alone decide).
FLOW_OF_EVENT: dict[str, Workflow | None] = {
    EventType.ORDER_CREATED: None,
    EventType.ORDER_UPDATED: None,
    EventType.ORDER_CANCELED: None,
    EventType.SHIPPING_REQUEST_CREATED: Workflow.SHIPPING_REQUESTS_OUT,
    EventType.SHIPPING_REQUEST_CANCELED: Workflow.SHIPPING_REQUESTS_OUT,
    EventType.FULFILLMENT_CREATED: Workflow.FULFILLMENTS_OUT,
    EventType.INVENTORY_UPDATED: None,
    EventType.PRODUCT_CREATED: Workflow.PRODUCTS_OUT,
    EventType.PRODUCT_UPDATED: Workflow.PRODUCTS_OUT,
    EventType.INTEGRATION_STATUS_CHANGED: None,
}


# --- what an integration is shown ------------------------------------------------------------------------

# object_type → fn(integration, ids) → {id: data}: the objects that integration's key may read, rendered
# as the API renders them for it. Registered by the apps whose API owns the object (orders, inventory), so
# a webhook carries exactly what GET would answer — same scope, same mapped SKUs and codes.
Renderer = Callable[[Integration, list[str]], dict[str, Any]]
_renderers: dict[str, Renderer] = {}


def register_renderer(object_type: str):
    def decorator(fn: Renderer) -> Renderer:
        _renderers[object_type] = fn
        return fn

    return decorator


def _active_grants(integration_ids: Iterable[int]) -> dict[int, set[str]]:
    """The grants an integration's usable keys hold together (checked again at delivery time)."""
    # tokens sits above integrations (STYLE.md §3): its model comes from the app registry.
    api_key = apps.get_model("tokens", "ApiKey")
    now = timezone.now()
    grants: dict[int, set[str]] = defaultdict(set)
    rows = (
        api_key.objects.filter(integration_id__in=list(integration_ids), revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values_list("integration_id", "grants")
    )
    for integration_id, key_grants in rows:
        grants[integration_id].update(key_grants or [])
    return grants


def _may_receive(event: OutboxEvent, subscription: WebhookSubscription, grants: dict[int, set[str]]) -> bool:
    integration = subscription.integration
    if event.type not in subscription.event_types or subscription.created_at > event.created_at:
        return False  # a subscription hears of what happens after it was made
    flow = FLOW_OF_EVENT.get(event.type)
    if flow is not None and not integration.workflow_enabled(flow):
        return False
    grant = EVENT_GRANTS.get(event.type)
    return grant is None or grant in grants.get(integration.pk, set())


# --- outbox → deliveries ---------------------------------------------------------------------------------


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def dispatch_outbox(limit: int = OUTBOX_BATCH) -> tuple[int, int]:
    """One batch of undispatched outbox rows into deliveries; returns (events dispatched, deliveries made)."""
    with transaction.atomic():
        events = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(dispatched_at__isnull=True)
            .order_by("pk")[:limit]
        )
        if not events:
            return 0, 0
        deliveries = _deliveries_for(events)
        OutboxEvent.objects.filter(pk__in=[e.pk for e in events]).update(dispatched_at=timezone.now())
        if deliveries:
            count = len(deliveries)
            transaction.on_commit(lambda: ring(count))
    return len(events), len(deliveries)


def _deliveries_for(events: list[OutboxEvent]) -> list[WebhookDelivery]:
    subscriptions = list(
        WebhookSubscription.objects.filter(
            active=True, integration__organization_id__in={e.organization_id for e in events}
        )
        .exclude(integration__status=IntegrationStatus.DISABLED)
        .select_related("integration")
        .order_by("pk")
    )
    if not subscriptions:
        return []
    by_org: dict[int, list[WebhookSubscription]] = defaultdict(list)
    for subscription in subscriptions:
        by_org[subscription.integration.organization_id].append(subscription)
    grants = _active_grants({s.integration_id for s in subscriptions})

    pairs = [
        (event, subscription)
        for event in events
        for subscription in by_org[event.organization_id]
        if _may_receive(event, subscription, grants)
    ]
    if not pairs:
        return []

    # Render each object once per receiving integration (one query set per object type and integration).
    wanted: dict[tuple[str, int], set[str]] = defaultdict(set)
    integrations: dict[int, Integration] = {}
    for event, subscription in pairs:
        wanted[(event.object_type, subscription.integration_id)].add(event.object_id)
        integrations[subscription.integration_id] = subscription.integration
    rendered: dict[tuple[str, int], dict[str, Any]] = {}
    for (object_type, integration_id), ids in wanted.items():
        renderer = _renderers.get(object_type)
        if renderer is None:
            continue
        try:
            rendered[(object_type, integration_id)] = renderer(integrations[integration_id], sorted(ids))
        except Exception:
            # One object that cannot be rendered must not stall the outbox behind it: what it cannot show
            # is not delivered (who may see it is unknown), and the error is logged with its ids.
            logger.exception(
                "Rendering %s %s for integration %s failed", object_type, sorted(ids), integration_id
            )
            rendered[(object_type, integration_id)] = {}

    visible = []
    for event, subscription in pairs:
        renderer_output = rendered.get((event.object_type, subscription.integration_id))
        if renderer_output is None:
            # No API renders it (integration.status_changed): only the integration it concerns is told.
            if event.integration_id == subscription.integration_id:
                visible.append((event, subscription, event.payload))
        elif event.object_id in renderer_output:
            visible.append((event, subscription, renderer_output[event.object_id]))
    if not visible:
        return []

    sequences = _take_sequences([s for _, s, _ in visible])
    now = timezone.now()
    event_ids = {event.pk: new_event_id() for event, _, _ in visible}
    deliveries = []
    for event, subscription, data in visible:
        sequence = sequences[subscription.pk].pop(0)
        body = signing.payload(event_ids[event.pk], event.type, event.created_at, sequence, data)
        deliveries.append(
            WebhookDelivery(
                organization_id=event.organization_id,
                integration_id=subscription.integration_id,
                subscription=subscription,
                outbox_event=event,
                event_id=event_ids[event.pk],
                event_type=event.type,
                sequence=sequence,
                body=body.decode("utf-8"),
                next_attempt_at=now,
            )
        )
    return WebhookDelivery.objects.bulk_create(deliveries)


def _take_sequences(subscriptions: list[WebhookSubscription]) -> dict[int, list[int]]:
    """The next `sequence` numbers for each subscription, in order (rows locked in id order: no deadlock)."""
    needed: dict[int, int] = defaultdict(int)
    for subscription in subscriptions:
        needed[subscription.pk] += 1
    locked = (
        WebhookSubscription.objects.select_for_update()
        .filter(pk__in=list(needed))
        .order_by("pk")
        .values_list("pk", "last_sequence")
    )
    taken, updates = {}, []
    for pk, last in locked:
        taken[pk] = list(range(last + 1, last + 1 + needed[pk]))
        updates.append(WebhookSubscription(pk=pk, last_sequence=last + needed[pk]))
    WebhookSubscription.objects.bulk_update(updates, ["last_sequence"])
    return taken


# --- the doorbell ----------------------------------------------------------------------------------------


def ring(deliveries: int = 1, *, countdown: float | None = None) -> None:
    """Wake enough delivery tasks for `deliveries` rows (at most MAX_PARALLEL_TASKS)."""
    from .tasks import deliver_due_task  # tasks imports this module

    tasks = min(max(1, math.ceil(deliveries / settings.WEBHOOK_BATCH_SIZE)), MAX_PARALLEL_TASKS)
    for _ in range(tasks):
        enqueue(deliver_due_task, countdown=countdown)


# While a rung dispatch has not started yet, further commits need not ring again: the task claims every
# row committed before it starts. The flag expires on its own, so a lost message costs at most this long
# (and the sweeper is there anyway).
DOORBELL_KEY = "integrations:dispatch-rung"
DOORBELL_TTL = 10


def _dispatch_soon() -> None:
    from .tasks import dispatch_outbox_task  # tasks imports this module

    enqueue_once(dispatch_outbox_task, DOORBELL_KEY, ttl=DOORBELL_TTL)


def answer_doorbell() -> None:
    """Called by the dispatch task before it claims rows, so commits from now on ring again."""
    celery_answer_doorbell(DOORBELL_KEY)


def schedule_dispatch() -> None:
    """After the current transaction commits, turn its outbox rows into deliveries (once per transaction)."""
    on_commit_once(_dispatch_soon)


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
            subscription.url, subscription.secret, delivery.event_id, delivery.body.encode("utf-8")
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


def record_outcomes(deliveries, outcomes, started) -> None:
    now = timezone.now()
    attempts, dead, gone, soonest_retry = [], [], {}, None
    per_subscription: dict[int, list[bool]] = defaultdict(list)
    per_integration: dict[int, list[outbound.Outcome]] = defaultdict(list)
    with transaction.atomic():
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
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
            fields = {
                "locked_until": None,
                "last_attempt_at": now,
                "last_status_code": outcome.status_code,
                "last_response": outcome.excerpt,
                "last_error": outcome.error[:500],
                "last_duration_ms": outcome.duration_ms,
                "updated_at": now,
            }
            if outcome.ok:
                fields.update(status=DeliveryStatus.SUCCEEDED, succeeded_at=now)
            elif outcome.gone:
                fields.update(
                    status=DeliveryStatus.DEAD, last_error="410 Gone: the subscription was switched off."
                )
                gone[delivery.subscription_id] = delivery
            else:
                delay = signing.next_attempt_delay(delivery.attempts, retry_after=outcome.retry_after)
                if delay is None:
                    fields.update(status=DeliveryStatus.DEAD)
                    dead.append(delivery)
                else:
                    fields.update(
                        status=DeliveryStatus.FAILED, next_attempt_at=now + timedelta(seconds=delay)
                    )
                    soonest_retry = delay if soonest_retry is None else min(soonest_retry, delay)
            # Only while the lease is ours: a worker that outlived its lease does not overwrite the one that
            # took the delivery over (the attempt count moved on when it was claimed again).
            owned = WebhookDelivery.objects.filter(
                pk=delivery.pk, attempts=delivery.attempts, status__in=OWED
            ).update(**fields)
            if not owned:
                continue
            for name, value in fields.items():
                setattr(delivery, name, value)
            if not outcome.gone:
                per_subscription[delivery.subscription_id].append(outcome.ok)
                per_integration[delivery.integration_id].append(outcome)
        WebhookAttempt.objects.bulk_create(attempts)
        subscriptions = {d.subscription_id: d.subscription for d in deliveries}
        for subscription_id, delivery in gone.items():
            switch_off(
                subscriptions[subscription_id], "The receiver answered 410 Gone.", delivery=delivery, now=now
            )
        for subscription_id, results in per_subscription.items():
            _track_subscription(subscriptions[subscription_id], results, now)
        for delivery in dead:
            services.record_event(
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
            signals.delivery_dead.send(sender=WebhookDelivery, delivery=delivery)
        integrations = {d.integration_id: d.integration for d in deliveries}
        for integration_id, results in per_integration.items():
            _track_integration(integrations[integration_id], results)
    if soonest_retry is not None and soonest_retry <= SHORT_RETRY:
        # A short wait is kept punctual with a delayed doorbell (well inside the broker's visibility
        # timeout); the row's next_attempt_at stays the truth and the sweeper backs it up.
        transaction.on_commit(lambda: ring(1, countdown=soonest_retry))


def _track_subscription(subscription: WebhookSubscription, results: list[bool], now) -> None:
    """Clear a run of failures on success; switch the subscription off after days of nothing but failures."""
    if any(results):
        if subscription.failing_since is not None:
            WebhookSubscription.objects.filter(pk=subscription.pk).update(failing_since=None)
            subscription.failing_since = None
            signals.delivery_recovered.send(sender=WebhookSubscription, subscription=subscription)
        return
    if subscription.failing_since is None:
        WebhookSubscription.objects.filter(pk=subscription.pk, failing_since__isnull=True).update(
            failing_since=now
        )
        subscription.failing_since = now
        return
    window = timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
    if now - subscription.failing_since >= window:
        switch_off(
            subscription,
            f"Every delivery failed for {settings.WEBHOOK_DISABLE_AFTER_DAYS:g} days "
            f"(since {subscription.failing_since:%Y-%m-%d %H:%M} UTC).",
            now=now,
        )


def _track_integration(integration: Integration, results: list[outbound.Outcome]) -> None:
    if any(o.ok for o in results):
        services.note_outbound(integration, ok=True)
    else:
        services.note_outbound(integration, ok=False, failures=len(results), reason=results[-1].summary)


def switch_off(subscription: WebhookSubscription, reason: str, *, delivery=None, now=None) -> None:
    """Deactivate a subscription (its owed deliveries wait; re-activating sends them) and say why."""
    now = now or timezone.now()
    updated = WebhookSubscription.objects.filter(pk=subscription.pk, active=True).update(
        active=False, disabled_reason=reason[:500], disabled_at=now, updated_at=now
    )
    subscription.active, subscription.disabled_reason, subscription.disabled_at = False, reason[:500], now
    if updated:
        history.record_change(subscription)  # update() sends no post_save; whoever is acting (none: the hub)
        services.record_event(
            subscription.integration,
            EventKind.CONFIG_CHANGED,
            f"Webhook subscription to {subscription.url} switched off: {reason}",
            data={"webhook": str(subscription.pk), "url": subscription.url, "reason": reason}
            | ({"event_id": delivery.event_id} if delivery else {}),
        )


# --- operator actions ------------------------------------------------------------------------------------


def replay(deliveries, *, actor=None) -> int:
    """
    Queue deliveries again with a fresh retry schedule (same webhook-id and body); returns how many. One
    event per integration says who replayed what.
    """
    now = timezone.now()
    with transaction.atomic():
        chosen = WebhookDelivery.objects.filter(pk__in=deliveries.values("pk")).exclude(
            status=DeliveryStatus.PENDING
        )
        per_integration = dict(
            chosen.values_list("integration_id").annotate(n=Count("pk")).values_list("integration_id", "n")
        )
        count = chosen.update(
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, locked_until=None, updated_at=now
        )
        for integration in Integration.objects.filter(pk__in=list(per_integration)).select_related(
            "organization"
        ):
            n = per_integration[integration.pk]
            services.record_event(
                integration,
                EventKind.DELIVERY,
                f"{n} webhook deliver{'y' if n == 1 else 'ies'} queued again (replay).",
                actor=actor,
                data={"replayed": n},
            )
        if count:
            transaction.on_commit(lambda: ring(count))
    return count


def send_test_event(subscription: WebhookSubscription, *, actor=None) -> WebhookDelivery:
    """A `webhook.test` delivery to one subscription, sent now through the normal path."""
    with transaction.atomic():
        sequence = _take_sequences([subscription])[subscription.pk][0]
        event_id, now = new_event_id(), timezone.now()
        data = {"message": "A test event from Switchyard.", "webhook": str(subscription.pk)}
        delivery = WebhookDelivery.objects.create(
            organization_id=subscription.integration.organization_id,
            integration_id=subscription.integration_id,
            subscription=subscription,
            event_id=event_id,
            event_type=TEST_EVENT_TYPE,
            sequence=sequence,
            body=signing.payload(event_id, TEST_EVENT_TYPE, now, sequence, data).decode("utf-8"),
            next_attempt_at=now,
        )
        services.record_event(
            subscription.integration,
            EventKind.DELIVERY,
            f"Test event {event_id} queued for {subscription.url}.",
            actor=actor,
            data={"delivery": delivery.pk, "event_id": event_id},
        )
        transaction.on_commit(lambda: ring(1))
    return delivery


# --- housekeeping ----------------------------------------------------------------------------------------


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


def _prunable_outbox(cutoff):
    """
    Dispatched outbox rows past the retention, but never a shipment a manifest connector has not taken yet:
    its dispatch reads them from the outbox past its cursor, however long it stayed in error.
    """
    cursor = Coalesce(
        Cast(KeyTextTransform("dispatch_after", "integration__manifest_state"), BigIntegerField()), Value(0)
    )
    owed_to_manifest = Q(
        type=EventType.FULFILLMENT_CREATED,
        integration__connector__manifest__has_key="dispatch",
        pk__gt=cursor,
    )
    return OutboxEvent.objects.filter(dispatched_at__lt=cutoff).exclude(owed_to_manifest)


def prune(now=None, batch: int = 5000) -> dict[str, int]:
    """Delete succeeded deliveries (with their attempts) and dispatched outbox rows past the retention."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    deleted = {"deliveries": 0, "outbox_events": 0}
    while True:
        ids = list(
            WebhookDelivery.objects.filter(
                status=DeliveryStatus.SUCCEEDED, succeeded_at__lt=cutoff
            ).values_list("pk", flat=True)[:batch]
        )
        if not ids:
            break
        WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
        deleted["deliveries"] += WebhookDelivery.objects.filter(pk__in=ids)._raw_delete(connection.alias)
    while True:
        ids = list(_prunable_outbox(cutoff).values_list("pk", flat=True)[:batch])
        if not ids:
            break
        WebhookDelivery.objects.filter(outbox_event_id__in=ids).update(outbox_event=None)
        deleted["outbox_events"] += OutboxEvent.objects.filter(pk__in=ids)._raw_delete(connection.alias)
    return deleted
