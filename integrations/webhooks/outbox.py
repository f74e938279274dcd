"""
The outbox (docs/connectors/contract.md, "Webhook deliveries"): a change records its domain events in its own
transaction (`emit`), and, in that same transaction, each event is rendered for every integration entitled to
it — its workflow switch on, a usable key holding the read grant, the object in that key's scope — as the API
answers it to that integration at that moment, numbered per integration and object (`sequences`), and stored
as a WebhookEvent (issue 16: the body is the object as it was when the event committed, not when it was sent).
After the commit a task fans each WebhookEvent out into one WebhookDelivery per active subscription of its
integration that hears the type, copying the exact body, so retries and replays send the same bytes.

Rows are claimed with SELECT … FOR UPDATE SKIP LOCKED, so any number of workers may dispatch at once.
"""

import json
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from core import signing

from ..choices import EventType, IntegrationStatus, Workflow
from ..models import Integration, OutboxEvent, WebhookDelivery, WebhookEvent, WebhookSubscription
from . import sequences
from .doorbells import ring, schedule_dispatch
from .feed import TransactionPosition
from .subscriptions import EVENT_GRANTS

logger = logging.getLogger(__name__)

OUTBOX_BATCH = 500  # outbox rows turned into deliveries per transaction


# --- recording events ------------------------------------------------------------------------------------


def emit(organization, event_type, obj_type, obj_id, payload, *, integration=None, changes=None):
    """
    Record a domain event in the current transaction (the outbox) with its rendering for each integration
    entitled to it; delivered after the commit. Call it after the changes it announces. `changes` (a list of
    field names) goes out as the envelope's `changes` beside `data`.
    """
    schedule_dispatch()
    event = OutboxEvent.objects.create(
        organization_id=organization if isinstance(organization, int) else organization.pk,
        integration=integration,
        type=EventType(event_type).value,
        object_type=obj_type,
        object_id=str(obj_id),
        payload=payload,
        changes=changes,
    )
    record_snapshots([event])
    return event


def emit_many(organization, events, *, integration=None):
    """Record many domain events in one INSERT: events are (type, object type, object id, payload)."""
    org_id = organization if isinstance(organization, int) else organization.pk
    if events:
        schedule_dispatch()
    created = OutboxEvent.objects.bulk_create(
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
    record_snapshots(created)
    return created


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
    insert = (
        f"INSERT INTO {table} ({columns}) SELECT {values} FROM ({select}) AS s "  # noqa: S608 - the ORM's SQL
        "RETURNING id, integration_id, object_id, payload"
    )
    event_type, now = EventType(event_type).value, timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(insert, [org_id, event_type, obj_type, now, *params])
        returned = cursor.fetchall()
    if not returned:
        return 0
    schedule_dispatch()
    record_snapshots(
        [
            OutboxEvent(
                pk=pk,
                organization_id=org_id,
                integration_id=integration_id,
                type=event_type,
                object_type=obj_type,
                object_id=object_pk,
                payload=json.loads(data) if isinstance(data, str) else data,
                created_at=now,
            )
            for pk, integration_id, object_pk, data in sorted(returned)
        ]
    )
    return len(returned)


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


def _entitled(event_type: str, integration: Integration, grants: dict[int, set[str]]) -> bool:
    """The integration may be told of this type of event: its flow's switch is on, a usable key has the grant."""
    flow = FLOW_OF_EVENT.get(event_type)
    if flow is not None and not integration.workflow_enabled(flow):
        return False
    grant = EVENT_GRANTS.get(event_type)
    return grant is None or grant in grants.get(integration.pk, set())


# --- event → one snapshot per entitled integration ---------------------------------------------------------


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def record_snapshots(events: list[OutboxEvent]) -> list[WebhookEvent]:
    """
    Render `events` for every integration entitled to them, in the recording transaction (what its GET would
    answer once this transaction commits), number them and store one WebhookEvent per (event, integration).
    One renderer call per object type and integration for the whole batch.
    """
    if not events:
        return []
    integrations = list(
        Integration.objects.filter(organization_id__in={e.organization_id for e in events})
        .exclude(status=IntegrationStatus.DISABLED)
        .select_related("organization", "connector")
        .order_by("pk")
    )
    if not integrations:
        return []
    by_org: dict[int, list[Integration]] = defaultdict(list)
    for integration in integrations:
        by_org[integration.organization_id].append(integration)
    grants = _read_grants([i.pk for i in integrations])

    pairs: list[tuple[OutboxEvent, Integration]] = []
    wanted: dict[tuple[str, int], set[str]] = defaultdict(set)
    for event in events:
        rendered_by_api = event.object_type in _renderers
        for integration in by_org[event.organization_id]:
            if not rendered_by_api and event.integration_id != integration.pk:
                continue  # no API renders it (integration.status_changed): only the integration it concerns
            if _entitled(event.type, integration, grants):
                pairs.append((event, integration))
                if rendered_by_api:
                    wanted[(event.object_type, integration.pk)].add(event.object_id)
    if not pairs:
        return []

    by_pk = {integration.pk: integration for integration in integrations}
    rendered: dict[tuple[str, int], dict[str, Any]] = {}
    for (object_type, integration_id), ids in wanted.items():
        try:
            rendered[(object_type, integration_id)] = render(object_type, by_pk[integration_id], sorted(ids))
        except DatabaseError:
            raise  # the transaction is broken: the change fails with its event, as it must
        except Exception:
            # A renderer's bug must not refuse the change it announces: what it cannot show is told to no
            # one (who may see it is unknown), and the error is logged with its ids.
            logger.exception(
                "Rendering %s %s for integration %s failed", object_type, sorted(ids), integration_id
            )
            rendered[(object_type, integration_id)] = {}

    visible = []
    for event, integration in pairs:
        if event.object_type not in _renderers:
            visible.append((event, integration, event.payload))
        elif (data := rendered[(event.object_type, integration.pk)].get(event.object_id)) is not None:
            visible.append((event, integration, data))
    if not visible:
        return []

    numbers = sequences.take([(i.pk, e.object_type, e.object_id) for e, i, _ in visible])
    position = TransactionPosition()
    snapshots = []
    for event, integration, data in visible:
        sequence = numbers[(integration.pk, event.object_type, event.object_id)].pop(0)
        event_id = new_event_id()
        body = signing.payload(event_id, event.type, event.created_at, sequence, data, changes=event.changes)
        snapshots.append(
            WebhookEvent(
                organization_id=event.organization_id,
                integration_id=integration.pk,
                outbox_event_id=event.pk,
                event_id=event_id,
                type=event.type,
                object_type=event.object_type,
                object_id=event.object_id,
                sequence=sequence,
                body=body.decode("utf-8"),
                created_at=event.created_at,
                position=position,
            )
        )
    return WebhookEvent.objects.bulk_create(snapshots)


# --- outbox → deliveries ---------------------------------------------------------------------------------


def dispatch_outbox(limit: int = OUTBOX_BATCH) -> tuple[int, int]:
    """One batch of undispatched outbox rows into deliveries; returns (events dispatched, deliveries made)."""
    with transaction.atomic():
        events = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(dispatched_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        if not events:
            return 0, 0
        deliveries = _deliveries_for(events)
        OutboxEvent.objects.filter(pk__in=events).update(dispatched_at=timezone.now())
        if deliveries:
            count = len(deliveries)
            transaction.on_commit(lambda: ring(count))
    return len(events), len(deliveries)


def _deliveries_for(event_pks: list[int]) -> list[WebhookDelivery]:
    """
    Each recorded snapshot of these events, to each active subscription of its integration that hears the
    type and existed when it happened — if the integration is still enabled and still entitled (a key revoked
    or a switch turned off since stops what was not sent yet).
    """
    snapshots = list(
        WebhookEvent.objects.filter(outbox_event_id__in=event_pks)
        .order_by("pk")
        .only(
            "organization_id",
            "integration_id",
            "outbox_event_id",
            "event_id",
            "type",
            "sequence",
            "body",
            "created_at",
        )
    )
    if not snapshots:
        return []
    subscriptions = list(
        WebhookSubscription.objects.filter(
            active=True, integration_id__in={s.integration_id for s in snapshots}
        )
        .exclude(integration__status=IntegrationStatus.DISABLED)
        .select_related("integration")
        .order_by("pk")
    )
    if not subscriptions:
        return []
    by_integration: dict[int, list[WebhookSubscription]] = defaultdict(list)
    for subscription in subscriptions:
        by_integration[subscription.integration_id].append(subscription)
    grants = _read_grants(list(by_integration))
    now = timezone.now()
    deliveries = [
        WebhookDelivery(
            organization_id=snapshot.organization_id,
            integration_id=snapshot.integration_id,
            subscription=subscription,
            outbox_event_id=snapshot.outbox_event_id,
            event_id=snapshot.event_id,
            event_type=snapshot.type,
            sequence=snapshot.sequence,
            body=snapshot.body,
            next_attempt_at=now,
        )
        for snapshot in snapshots
        for subscription in by_integration[snapshot.integration_id]
        # A subscription hears of what happens after it was made.
        if snapshot.type in subscription.event_types
        and subscription.created_at <= snapshot.created_at
        and _entitled(snapshot.type, subscription.integration, grants)
    ]
    return WebhookDelivery.objects.bulk_create(deliveries)
