"""
Manifest connectors, order side (examples/MANIFEST_PROTOCOL.md): the hub pulls orders from a channel's
`orders` endpoint and reports the shipments of its orders to its `dispatch` endpoint. Both keep their cursor
in the integration's manifest_state and move it only once what it covers is done: a pulled page is
ingested in the same transaction that stores its cursor, and dispatched shipments are only passed once the
connector accepted them (at least once, never lost).
"""

import logging
from collections.abc import Callable
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.utils import timezone

from core.sync_exceptions import ExceptionKind, raise_exception
from integrations import manifest as calls
from integrations.choices import EventType, Workflow
from integrations.models import OutboxEvent
from integrations.webhooks import outbox

from .ingest import ingest_order
from .models import Order
from .state import OrderConflict

logger = logging.getLogger(__name__)

ORDERS_PAGE_SIZE = 100  # the `limit` of a pull (protocol: 1–500)
MAX_PAGES = 10  # pages pulled per run; a backlog continues at the next sweep
MAX_CURSOR = 500  # characters (protocol)
DISPATCH_BATCH = 100  # fulfillments per dispatch call (protocol)
MAX_DISPATCH_BATCHES = 10  # per run
# Seconds an outbox row waits before dispatch reads it. Ids are taken at insert, not at commit: a row may
# still have an uncommitted one below it, which a cursor would step over for good. The fulfillment
# transaction writes its row last and commits at once, so a minute leaves a wide margin.
DISPATCH_SETTLE = 60
SWEEP_LIMIT = 20  # integrations per flow taken by one sweep; a full claim re-enqueues the sweep
DISPATCH_GAP = 20  # seconds: an integration's dispatch runs at most this often (about once per beat)

ORDERS_CURSOR = "orders_cursor"
DISPATCH_AFTER = "dispatch_after"

# A pulled order is the body a connector would POST to /api/v1/orders, read by the same rules: the API layer
# (above this module) registers its reader when Django starts (api/orders/readers.py), as it registers the
# renderers the dispatch push uses. body -> (the data ingest_order takes, None) or (None, errors by field).
OrderReader = Callable[[object], tuple[dict | None, dict | None]]
_read_order: OrderReader | None = None


def register_order_reader(reader: OrderReader) -> OrderReader:
    global _read_order
    _read_order = reader
    return reader


def read_order(body) -> tuple[dict | None, dict | None]:
    if _read_order is None:
        raise ImproperlyConfigured("No order reader is registered: is the api app installed?")
    return _read_order(body)


# --- orders pull ---------------------------------------------------------------------------------------


def _orders_page(data):
    """A `check` for an orders answer: an "orders" list and a string (or null) next_cursor."""
    if not isinstance(data.get("orders"), list):
        return 'The answer has no "orders" list.'
    cursor = data.get("next_cursor")
    if cursor is not None and (not isinstance(cursor, str) or len(cursor) > MAX_CURSOR):
        return f'"next_cursor" must be a string of at most {MAX_CURSOR} characters, or null.'
    if len(data["orders"]) > ORDERS_PAGE_SIZE:
        return f"The page has {len(data['orders'])} orders; at most {ORDERS_PAGE_SIZE} were asked for."
    return None


def pull_orders(integration, *, max_pages: int | None = None) -> dict:
    """
    Pull pages of new and changed orders and upsert them (a re-pulled order updates, never duplicates).
    An invalid order is raised as an exception and skipped. Returns counts and whether more is waiting.
    """
    result = {"pages": 0, "created": 0, "updated": 0, "invalid": 0, "more": False, "ok": True}
    for _ in range(max_pages or MAX_PAGES):
        cursor = (integration.manifest_state or {}).get(ORDERS_CURSOR)
        try:
            outcome = calls.call(
                integration,
                "orders",
                {"cursor": cursor, "limit": ORDERS_PAGE_SIZE},
                flow=Workflow.ORDERS_IN,
                check=_orders_page,
            )
        except calls.CallRefused:
            return result
        if not outcome.ok:
            result["ok"] = False
            return result  # the cursor stays: the same page is asked for again next time
        orders, next_cursor = outcome.data["orders"], outcome.data.get("next_cursor")
        with transaction.atomic():
            for index, body in enumerate(orders):
                _ingest_one(integration, body, cursor, index, result)
            if next_cursor is not None:
                # Stored with the page's orders: the cursor moves if and only if they are committed.
                calls.save_state(integration, **{ORDERS_CURSOR: next_cursor})
        result["pages"] += 1
        # Protocol: a full page with a cursor means more is waiting; anything else waits for the next poll.
        if next_cursor is None or len(orders) < ORDERS_PAGE_SIZE:
            return result
    result["more"] = True
    return result


def _ingest_one(integration, body, cursor, index, result):
    external_id = str(body.get("external_id") or "")[:100] if isinstance(body, dict) else ""
    data, errors = read_order(body)
    if errors:
        _invalid(integration, external_id, cursor, index, _describe(errors), {"errors": errors})
        result["invalid"] += 1
        return
    try:
        _, created = ingest_order(integration, data)
    except (OrderConflict, ValidationError) as exc:
        message = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        _invalid(integration, external_id, cursor, index, message, {})
        result["invalid"] += 1
        return
    result["created" if created else "updated"] += 1


def _describe(errors) -> str:
    parts = []
    for field, messages in errors.items():
        text = messages if isinstance(messages, str) else "; ".join(str(m) for m in _flatten(messages))
        parts.append(f"{field}: {text}")
    return ", ".join(parts)[:500]


def _flatten(messages):
    if isinstance(messages, dict):
        for value in messages.values():
            yield from _flatten(value)
    elif isinstance(messages, list):
        for value in messages:
            yield from _flatten(value)
    else:
        yield messages


def _invalid(integration, external_id, cursor, index, message, data):
    where = f"order {external_id!r}" if external_id else f"order #{index + 1} of the page"
    raise_exception(
        integration.organization_id,
        ExceptionKind.INVALID_ORDER_DATA,
        f"Pulled {where} from {integration.name} was skipped: {message}"[:1000],
        integration=integration,
        entity_type="order",
        # One open exception per external id; the page position when the order has none.
        entity_id=external_id or f"page:{cursor or ''}:{index}"[:60],
        data={**data, "cursor": cursor, "index": index},
    )


# --- dispatch push -------------------------------------------------------------------------------------


def pending_dispatch(integration):
    """fulfillment.created outbox rows of orders this integration sent, past its cursor and settled."""
    after = int((integration.manifest_state or {}).get(DISPATCH_AFTER) or 0)
    return OutboxEvent.objects.filter(
        organization_id=integration.organization_id,
        integration=integration,
        type=EventType.FULFILLMENT_CREATED,
        pk__gt=after,
        created_at__lte=timezone.now() - timedelta(seconds=DISPATCH_SETTLE),
    ).order_by("pk")


def render_fulfillments(integration, ids) -> dict[str, dict]:
    """The fulfillments as GET /api/v1/fulfillments answers them to this integration, with their order's ids."""
    rendered = outbox.render("fulfillment", integration, ids)
    orders = {
        str(pk): (external_id, number)
        for pk, external_id, number in Order.objects.filter(
            organization_id=integration.organization_id,
            source=integration,
            pk__in={item["order"] for item in rendered.values()},
        ).values_list("pk", "external_id", "number")
    }
    # Only fulfillments of its own orders (the protocol's promise), with the ids the connector knows them by.
    return {
        fid: {**item, "order_external_id": orders[item["order"]][0], "order_number": orders[item["order"]][1]}
        for fid, item in rendered.items()
        if item["order"] in orders
    }


def push_dispatch(integration, *, max_batches: int | None = None) -> dict:
    """Report new shipments of its orders, a batch per call; the cursor moves only past accepted batches."""
    result = {"calls": 0, "sent": 0, "ok": True}
    for _ in range(max_batches or MAX_DISPATCH_BATCHES):
        events = list(pending_dispatch(integration).values_list("pk", "object_id")[:DISPATCH_BATCH])
        if not events:
            return result
        rendered = render_fulfillments(integration, sorted({object_id for _, object_id in events}))
        fulfillments = [
            rendered[object_id] for object_id in dict.fromkeys(o for _, o in events) if object_id in rendered
        ]
        if fulfillments:
            try:
                outcome = calls.call(
                    integration,
                    "dispatch",
                    {"fulfillments": fulfillments},
                    flow=Workflow.FULFILLMENTS_OUT,
                    check=calls.answered_accepted(len(fulfillments)),
                )
            except calls.CallRefused:
                return result
            result["calls"] += 1
            if not outcome.ok:
                result["ok"] = False
                return result  # the same batch goes again next run
            result["sent"] += len(fulfillments)
        # Past the batch (fulfillments deleted since are skipped): it is done.
        calls.save_state(integration, **{DISPATCH_AFTER: events[-1][0]})
        if len(events) < DISPATCH_BATCH:
            return result
    return result


# --- the sweep -----------------------------------------------------------------------------------------


def _run(integration, endpoint, work) -> dict:
    """One flow run for one claimed integration, its lease released whatever happens."""
    try:
        result = work(integration)
    except Exception:  # one integration's failure must not stop the others; retried next run
        logger.exception("Manifest %s run failed for integration %s.", endpoint, integration.pk)
        result = {"ok": False}
    # A pull that stopped with more waiting is due again at once rather than after its poll interval.
    calls.release(integration, endpoint, poll_now=bool(result.get("more")))
    return result


def sweep(limit: int = SWEEP_LIMIT) -> dict:
    """Beat: pull from integrations whose poll is due, push dispatches where shipments wait."""
    pulls = calls.claim("orders", Workflow.ORDERS_IN, limit=limit, due=calls.due_for_poll(), poll=True)
    pulled = [_run(integration, "orders", pull_orders) for integration in pulls]
    dispatches = calls.claim("dispatch", Workflow.FULFILLMENTS_OUT, limit=limit, gap=DISPATCH_GAP)
    pushed = [_run(integration, "dispatch", push_dispatch) for integration in dispatches]
    return {
        "pulled": len(pulls),
        "orders": sum(r.get("created", 0) + r.get("updated", 0) for r in pulled),
        "dispatched": len(dispatches),
        "fulfillments": sum(r.get("sent", 0) for r in pushed),
        "full": len(pulls) >= limit or len(dispatches) >= limit,
    }
