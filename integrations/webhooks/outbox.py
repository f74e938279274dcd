"""
The outbox (API.md, "Webhook deliveries"): a change records its domain events in its own transaction (`emit`),
and after the commit a task turns them into one WebhookDelivery per subscription that may see them — the
subscription hears of the type, the workflow switch is on, a usable key of its integration holds the read
grant — with the object rendered as the API answers it to that integration.

Rows are claimed with SELECT … FOR UPDATE SKIP LOCKED, so any number of workers may dispatch at once.
"""

import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from core import signing

from ..choices import EventType, IntegrationStatus, Workflow
from ..models import Integration, OutboxEvent, WebhookDelivery, WebhookSubscription
from .doorbells import ring, schedule_dispatch
from .subscriptions import EVENT_GRANTS

logger = logging.getLogger(__name__)

OUTBOX_BATCH = 500  # outbox rows turned into deliveries per transaction


# --- recording events ------------------------------------------------------------------------------------


def emit(organization, event_type, obj_type, obj_id, payload, *, integration=None, changes=None):
    """
    Record a domain event in the current transaction (the outbox); delivered after the commit. `changes`
    (a list of field names) goes out as the envelope's `changes` beside `data`.
    """
    schedule_dispatch()
    return OutboxEvent.objects.create(
        organization_id=organization if isinstance(organization, int) else organization.pk,
        integration=integration,
        type=EventType(event_type).value,
        object_type=obj_type,
        object_id=str(obj_id),
        payload=payload,
        changes=changes,
    )


def emit_many(organization, events, *, integration=None):
    """Record many domain events in one INSERT: events are (type, object type, object id, payload)."""
    org_id = organization if isinstance(organization, int) else organization.pk
    if events:
        schedule_dispatch()
    return OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                organization_id=org_id,
                integration=integration,
                type=EventType(event_type).value,
                object_type=obj_type,
                object_id=str(obj_id),
                payload=payload,
            )
            for event_type, obj_type, obj_id, payload in events
        ],
    )


def emit_rows(organization, event_type, obj_type, rows: QuerySet, *, integration, object_id, payload) -> int:
    """
    Record one domain event per row of `rows` (a queryset of any app's model) in one INSERT … SELECT, for a
    writer of many rows that never brings them into Python (the inventory engine's figures). `integration`,
    `object_id` and `payload` are expressions over those rows: the integration's id (or None), the object's
    id, a JSON object (JSONObject). Returns how many events were recorded.
    """
    org_id = organization if isinstance(organization, int) else organization.pk
    source = (
        rows.order_by()
        .annotate(
            outbox_integration=integration,
            outbox_object_id=Cast(object_id, output_field=TextField()),
            outbox_payload=payload,
        )
        .values_list("outbox_integration", "outbox_object_id", "outbox_payload")
    )
    select, params = source.query.sql_with_params()
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    columns = "organization_id, integration_id, type, object_type, object_id, payload, created_at"
    values = "%s, s.outbox_integration, %s, %s, s.outbox_object_id, s.outbox_payload, %s"
    insert = f"INSERT INTO {table} ({columns}) SELECT {values} FROM ({select}) AS s"  # noqa: S608 - the ORM's SQL
    with connection.cursor() as cursor:
        cursor.execute(insert, [org_id, EventType(event_type).value, obj_type, timezone.now(), *params])
        count = cursor.rowcount
    if count:
        schedule_dispatch()
    return count


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


def render(object_type: str, integration: Integration, ids: list[str]) -> dict[str, Any]:
    """{id: data} for those of `ids` (objects of `object_type`) that `integration` may read, as its API shows them."""
    try:
        renderer = _renderers[object_type]
    except KeyError:
        raise ImproperlyConfigured(f"No renderer is registered for {object_type!r} objects.") from None
    return renderer(integration, ids)


# fn(integration ids) → {integration id: the grants its usable keys hold together}. Keys are the tokens app's
# (above this one), so it registers the reader when Django starts; grants are read at dispatch, so a key
# revoked or expired since the subscription was made stops the events it granted.
GrantsReader = Callable[[Iterable[int]], dict[int, set[str]]]
_grants_reader: GrantsReader | None = None


def register_grants_reader(reader: GrantsReader) -> None:
    global _grants_reader
    _grants_reader = reader


def _read_grants(integration_ids: Iterable[int]) -> dict[int, set[str]]:
    if _grants_reader is None:
        raise ImproperlyConfigured("No reader of key grants is registered: is the tokens app installed?")
    return _grants_reader(integration_ids)


# The workflow switch an event type goes out under (None: visibility and grants alone decide).
FLOW_OF_EVENT: dict[str, Workflow | None] = {
    EventType.ORDER_CREATED: None,
    EventType.ORDER_UPDATED: None,
    EventType.ORDER_CANCELED: None,
    EventType.SHIPPING_REQUEST_CREATED: Workflow.SHIPPING_REQUESTS_OUT,
    EventType.SHIPPING_REQUEST_UPDATED: Workflow.SHIPPING_REQUESTS_OUT,
    EventType.SHIPPING_REQUEST_CANCELED: Workflow.SHIPPING_REQUESTS_OUT,
    EventType.SHIPPING_REQUEST_REJECTED: Workflow.SHIPPING_REQUESTS_OUT,
    EventType.FULFILLMENT_CREATED: Workflow.FULFILLMENTS_OUT,
    EventType.FULFILLMENT_UPDATED: Workflow.FULFILLMENTS_OUT,
    EventType.FULFILLMENT_CANCELED: Workflow.FULFILLMENTS_OUT,
    EventType.INVENTORY_UPDATED: None,
    EventType.PRODUCT_CREATED: Workflow.PRODUCTS_OUT,
    EventType.PRODUCT_UPDATED: Workflow.PRODUCTS_OUT,
    EventType.PRODUCT_DELETED: Workflow.PRODUCTS_OUT,
    EventType.INTEGRATION_STATUS_CHANGED: None,
}


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
    grants = _read_grants({s.integration_id for s in subscriptions})

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
        if object_type not in _renderers:
            continue
        try:
            rendered[(object_type, integration_id)] = render(
                object_type, integrations[integration_id], sorted(ids)
            )
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

    sequences = take_sequences([s for _, s, _ in visible])
    now = timezone.now()
    event_ids = {event.pk: new_event_id() for event, _, _ in visible}
    deliveries = []
    for event, subscription, data in visible:
        sequence = sequences[subscription.pk].pop(0)
        body = signing.payload(
            event_ids[event.pk], event.type, event.created_at, sequence, data, changes=event.changes
        )
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


def take_sequences(subscriptions: list[WebhookSubscription]) -> dict[int, list[int]]:
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
