"""Manifest orders pull and dispatch push against a real receiver on 127.0.0.1."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations import housekeeping, lifecycle
from integrations import manifest as calls
from integrations.choices import EventKind, EventType, IntegrationStatus
from integrations.models import Integration, IntegrationEvent, OutboxEvent
from orders import manifest, services
from orders.models import Order
from orders.tasks import manifest_orders_sweep_task
from tokens import issuing as key_services
from tokens.choices import KeyKind

S = IntegrationStatus


def page(orders, next_cursor=None):
    return (200, {"orders": orders, "next_cursor": next_cursor})


def body(n, **changes):
    return {
        "external_id": f"M-{n}",
        "number": f"#M-{n}",
        "currency": "USD",
        "customer": {"name": f"Customer {n}", "email": f"c{n}@example.test"},
        "shipping_address": {"name": "C", "line1": "1 Way", "city": "X", "postal_code": "1", "country": "US"},
        "lines": [{"sku": "TSHIRT-S", "quantity": 1, "unit_price": "12.50"}],
        **changes,
    }


def cursor_of(integration):
    integration.refresh_from_db()
    return integration.manifest_state.get(manifest.ORDERS_CURSOR)


@pytest.fixture(autouse=True)
def _nothing_by_default(receiver):
    receiver.default = page([])


@pytest.fixture(autouse=True)
def _settled_at_once(monkeypatch):
    """Outbox rows are read as soon as they are written (one test puts the settling time back)."""
    monkeypatch.setattr(manifest, "DISPATCH_SETTLE", 0)


# --- pull --------------------------------------------------------------------------------------------------


def test_a_page_is_ingested_and_its_cursor_stored(storefront, receiver, products, verify_call):
    receiver.script = [page([body(1), body(2)], "c2")]

    result = manifest.pull_orders(storefront)

    assert (result["created"], result["invalid"], result["ok"]) == (2, 0, True)
    [request] = receiver.requests
    assert request.path == "/hub/orders"
    assert verify_call(request, storefront) == {"cursor": None, "limit": manifest.ORDERS_PAGE_SIZE}
    orders = Order.objects.filter(source=storefront).order_by("external_id")
    assert [o.external_id for o in orders] == ["M-1", "M-2"]
    assert orders[0].organization_id == storefront.organization_id and orders[0].lines.get().product_id
    assert cursor_of(storefront) == "c2"


def test_the_next_pull_sends_the_stored_cursor_and_null_keeps_it(storefront, receiver, products):
    receiver.script = [page([body(1)], "c1"), page([], None)]
    manifest.pull_orders(storefront)

    manifest.pull_orders(storefront)

    assert receiver.requests[1].json()["cursor"] == "c1"
    assert cursor_of(storefront) == "c1"  # null: "keep the cursor you sent"


def test_a_re_pulled_order_is_updated_not_duplicated(storefront, receiver, products):
    receiver.script = [page([body(1)], "c1"), page([body(1, number="#M-1b")], "c2")]

    manifest.pull_orders(storefront)
    result = manifest.pull_orders(storefront)

    assert (result["created"], result["updated"]) == (0, 1)
    assert Order.objects.get(source=storefront, external_id="M-1").number == "#M-1b"


def test_the_same_external_id_from_another_channel_is_another_order(storefront, receiver, products, ingest):
    ingest(body(1))  # the plain `integration` channel
    receiver.script = [page([body(1)], "c1")]

    manifest.pull_orders(storefront)

    assert Order.objects.filter(external_id="M-1").count() == 2


def test_a_full_page_asks_for_the_next_one_at_once_up_to_a_bound(storefront, receiver, products, monkeypatch):
    monkeypatch.setattr(manifest, "ORDERS_PAGE_SIZE", 2)
    receiver.script = [
        page([body(1), body(2)], "c2"),
        page([body(3), body(4)], "c4"),
        page([body(5), body(6)], "c6"),
    ]

    result = manifest.pull_orders(storefront, max_pages=2)

    assert [r.json()["cursor"] for r in receiver.requests] == [None, "c2"]
    assert (result["pages"], result["created"], result["more"]) == (2, 4, True)
    assert cursor_of(storefront) == "c4"

    # and a short page ends the run
    result = manifest.pull_orders(storefront, max_pages=5)
    assert (result["pages"], result["more"]) == (2, False)  # c6's page was full, the next one empty
    assert cursor_of(storefront) == "c6"


def test_an_invalid_order_is_raised_and_skipped_the_rest_ingested(storefront, receiver, products):
    bad_lines = body(2, lines=[])
    bad_currency = body(3, currency="dollars")
    receiver.script = [page([body(1), bad_lines, "not an order", bad_currency, body(4)], "c5")]

    result = manifest.pull_orders(storefront)

    assert (result["created"], result["invalid"]) == (2, 3)
    assert sorted(Order.objects.filter(source=storefront).values_list("external_id", flat=True)) == [
        "M-1",
        "M-4",
    ]
    raised = SyncException.objects.filter(integration=storefront, kind=ExceptionKind.INVALID_ORDER_DATA)
    assert sorted(raised.values_list("entity_id", flat=True)) == ["M-2", "M-3", "page::2"]
    assert "lines" in raised.get(entity_id="M-2").message
    assert cursor_of(storefront) == "c5"  # the page is done


def test_an_order_the_state_forbids_changing_is_raised_and_skipped(storefront, receiver, products):
    receiver.script = [page([body(1)], "c1")]
    manifest.pull_orders(storefront)
    services.cancel_order(Order.objects.get(external_id="M-1"))
    changed = body(1, lines=[{"sku": "MUG", "quantity": 3, "unit_price": "8.00"}])
    receiver.script = [page([changed, body(2)], "c2")]

    result = manifest.pull_orders(storefront)

    assert (result["created"], result["invalid"]) == (1, 1)
    assert (
        SyncException.objects.get(integration=storefront, entity_id="M-1").kind
        == ExceptionKind.INVALID_ORDER_DATA
    )
    assert cursor_of(storefront) == "c2"


@pytest.mark.parametrize(
    "answer",
    [
        (200, {"error": "rate limited"}),
        (502, "bad gateway"),
        (200, {"orders": "nope"}),
        (200, {"orders": [], "next_cursor": 5}),
    ],
    ids=["error-field", "502", "orders-not-a-list", "cursor-not-a-string"],
)
def test_a_failed_pull_keeps_the_cursor_and_counts(storefront, receiver, products, answer):
    calls.save_state(storefront, orders_cursor="c1")
    receiver.script = [answer]

    result = manifest.pull_orders(storefront)

    assert result["ok"] is False and result["pages"] == 0
    assert cursor_of(storefront) == "c1"
    assert storefront.consecutive_failures == 1
    assert Order.objects.count() == 0


def test_pull_query_count_is_bounded_per_order(storefront, receiver, products, django_assert_max_num_queries):
    # given a page of 20 orders (a warm-up pull first, so one-off look-ups are not counted)
    receiver.script = [page([body(0)], "c0"), page([body(n) for n in range(1, 21)], "c20")]
    manifest.pull_orders(storefront)

    # then ingesting it costs a fixed number of queries per order, plus a few for the call and the cursor
    # (11 an order since #16: each order's event is rendered, numbered and kept as it is recorded; 227 measured)
    with django_assert_max_num_queries(20 * 11 + 10):
        result = manifest.pull_orders(storefront)
    assert result["created"] == 20


# --- the sweep ---------------------------------------------------------------------------------------------


def test_the_sweep_pulls_due_integrations_and_moves_their_poll_on(storefront, receiver, products):
    receiver.script = [page([body(1)], "c1")]
    before = timezone.now()

    result = manifest.sweep()

    assert result["pulled"] == 1 and result["orders"] == 1
    storefront.refresh_from_db()
    assert storefront.next_poll_at >= before + timedelta(seconds=storefront.poll_interval)

    # not due again yet: a second sweep does not call
    calls = len(receiver.requests)
    manifest.sweep()
    assert len([r for r in receiver.requests[calls:] if r.path.endswith("/orders")]) == 0


def test_a_backlog_makes_the_pull_due_again_at_once(storefront, receiver, products, monkeypatch):
    monkeypatch.setattr(manifest, "ORDERS_PAGE_SIZE", 1)
    monkeypatch.setattr(manifest, "MAX_PAGES", 1)
    receiver.script = [page([body(1)], "c1")]

    manifest.sweep()

    storefront.refresh_from_db()
    assert storefront.next_poll_at <= timezone.now()


def test_a_claimed_integration_is_not_pulled_by_a_second_sweep(storefront, receiver, products):
    # given a sweep that holds the integration (its run is still going)
    [held] = calls.claim("orders", "orders_in", limit=5, due=calls.due_for_poll(), poll=True)
    Integration.objects.filter(pk=held.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))

    # when another sweep runs, though the poll is due again
    manifest.sweep()

    # then it leaves it alone
    assert not [r for r in receiver.requests if r.path.endswith("/orders")]


@pytest.mark.parametrize(
    "change",
    [
        {"status": S.DISABLED},
        {"status": S.ERROR},
        {"status": S.CONNECTING},
        {"flow_orders_in": False},
    ],
    ids=["disabled", "error", "connecting", "orders-in-off"],
)
def test_nothing_is_pulled_from_an_integration_that_may_not_be_called(storefront, receiver, change):
    Integration.objects.filter(pk=storefront.pk).update(**change)

    assert manifest.sweep()["pulled"] == 0
    assert receiver.requests == []


def test_the_sweep_task_runs_the_sweep(storefront, receiver, products):
    receiver.script = [page([body(1)], "c1")]

    result = manifest_orders_sweep_task.apply().get()

    assert result["orders"] == 1 and not result["full"]


def test_the_sweep_is_on_the_beat_every_30_seconds(db):
    task = PeriodicTask.objects.select_related("interval").get(task="orders.tasks.manifest_orders_sweep_task")
    assert (task.interval.every, task.interval.period, task.enabled) == (30, "seconds", True)


# --- dispatch ----------------------------------------------------------------------------------------------


@pytest.fixture
def ship(stock, warehouse, warehouse_integration):
    """`ship(order, n)`: route the order to the warehouse and post a fulfillment of all of it."""

    def go(order, n=1):
        request = services.create_shipping_request(order, warehouse)
        lines = [(line.product_id, line.quantity) for line in order.lines.all()]
        fulfillment, _ = services.create_fulfillment(
            request,
            {"lines": lines, "carrier": "UPS", "tracking_number": f"1Z{n}", "external_id": f"S-{n}"},
            integration=warehouse_integration,
        )
        return fulfillment

    return go


@pytest.fixture
def shipped(storefront, products, ship):
    """An order of the storefront, shipped."""
    order, _ = services.ingest_order(storefront, body(1))
    return ship(services.make_ready(order))


def accepting(request):
    return (200, {"accepted": len(request.json()["fulfillments"])})


def dispatched(receiver):
    return [r for r in receiver.requests if r.path == "/hub/dispatch"]


def test_shipments_are_dispatched_as_the_api_renders_them(
    storefront, shipped, receiver, verify_call, api_client
):
    receiver.script = [accepting]

    result = manifest.push_dispatch(storefront)

    assert (result["calls"], result["sent"], result["ok"]) == (1, 1, True)
    [request] = dispatched(receiver)
    [sent] = verify_call(request, storefront)["fulfillments"]
    key = key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="k", integration=storefront, grants=["fulfillments:read"]
    )
    answer = api_client(key).get(f"/api/v1/fulfillments/{shipped.pk}").json()
    assert sent == {**answer, "order_external_id": "M-1", "order_number": "#M-1"}
    assert sent["lines"] == [{"sku": "TSHIRT-S", "quantity": 1}]
    storefront.refresh_from_db()
    assert (
        storefront.manifest_state[manifest.DISPATCH_AFTER]
        == OutboxEvent.objects.get(type=EventType.FULFILLMENT_CREATED).pk
    )


def test_dispatch_is_at_least_once(storefront, shipped, receiver):
    # a failed call: the cursor stays and the same shipment goes again
    receiver.script = [(500, "down"), (200, {"accepted": 0}), accepting]
    assert manifest.push_dispatch(storefront)["ok"] is False
    assert manifest.DISPATCH_AFTER not in Integration.objects.get(pk=storefront.pk).manifest_state
    assert manifest.push_dispatch(manifest_state_fresh(storefront))["ok"] is False  # fewer accepted than sent

    assert manifest.push_dispatch(manifest_state_fresh(storefront))["sent"] == 1

    ids = [r.json()["fulfillments"][0]["id"] for r in dispatched(receiver)]
    assert ids == [str(shipped.pk)] * 3
    # once accepted, never again
    assert manifest.push_dispatch(manifest_state_fresh(storefront)) == {"calls": 0, "sent": 0, "ok": True}
    assert len(dispatched(receiver)) == 3


def manifest_state_fresh(integration):
    return Integration.objects.select_related("connector", "organization").get(pk=integration.pk)


def test_dispatch_sends_only_this_integrations_orders_never_another_tenants(
    storefront, shipped, receiver, other_org, make_storefront, integration, ship, ingest
):
    # given a shipment of another channel of the same org, and another org's storefront with its own
    theirs_here, _ = ingest(body(9))
    not_ours = ship(theirs_here, n=9)
    other_shop = make_storefront(other_org, "Globex storefront")
    # a forged outbox row naming our storefront but another organization and one of its objects
    OutboxEvent.objects.create(
        organization=other_org,
        integration=storefront,
        type=EventType.FULFILLMENT_CREATED,
        object_type="fulfillment",
        object_id=str(shipped.pk),
        payload={},
    )
    # and one in our organization naming the other channel's shipment
    OutboxEvent.objects.create(
        organization=storefront.organization,
        integration=storefront,
        type=EventType.FULFILLMENT_CREATED,
        object_type="fulfillment",
        object_id=str(not_ours.pk),
        payload={},
    )
    receiver.default = (200, {"accepted": 100})

    manifest.push_dispatch(storefront)
    manifest.push_dispatch(other_shop)

    sent = [f["id"] for r in dispatched(receiver) for f in r.json()["fulfillments"]]
    assert sent == [str(shipped.pk)]


def test_a_shipment_is_dispatched_once_its_outbox_row_settled(storefront, shipped, receiver, monkeypatch):
    monkeypatch.setattr(manifest, "DISPATCH_SETTLE", 60)
    receiver.script = [accepting]

    # a row just written may have an uncommitted neighbour below it: not read yet
    assert manifest.push_dispatch(storefront)["calls"] == 0

    OutboxEvent.objects.filter(type=EventType.FULFILLMENT_CREATED).update(
        created_at=timezone.now() - timedelta(seconds=61)
    )
    assert manifest.push_dispatch(storefront)["sent"] == 1


def test_dispatch_waits_while_fulfillments_out_is_off(storefront, shipped, receiver):
    Integration.objects.filter(pk=storefront.pk).update(flow_fulfillments_out=False)

    result = manifest.sweep()

    assert result["dispatched"] == 0 and dispatched(receiver) == []


def test_the_sweep_dispatches_and_a_disabled_integration_gets_nothing(storefront, shipped, receiver):
    receiver.default = (200, {"accepted": 1, "orders": [], "next_cursor": None})
    lifecycle.disable(storefront)
    assert manifest.sweep()["dispatched"] == 0 and receiver.requests == []

    Integration.objects.filter(pk=storefront.pk).update(status=S.CONNECTED)
    assert manifest.sweep()["fulfillments"] == 1
    assert len(dispatched(receiver)) == 1


def test_dispatch_batches_are_bounded(storefront, products, ship, receiver, monkeypatch, stock):
    monkeypatch.setattr(manifest, "DISPATCH_BATCH", 2)
    for n in range(1, 6):
        order, _ = services.ingest_order(storefront, body(n))
        ship(services.make_ready(order), n=n)
    receiver.default = (200, {"accepted": 2})

    result = manifest.push_dispatch(storefront, max_batches=2)

    assert [len(r.json()["fulfillments"]) for r in dispatched(receiver)] == [2, 2]
    assert result["sent"] == 4
    receiver.default = (200, {"accepted": 1})
    assert manifest.push_dispatch(manifest_state_fresh(storefront))["sent"] == 1


def test_each_call_is_in_the_audit_trail(storefront, shipped, receiver):
    receiver.script = [accepting]

    manifest.push_dispatch(storefront)

    [event] = IntegrationEvent.objects.filter(integration=storefront, kind=EventKind.OUTBOUND_CALL)
    assert event.data["endpoint"] == "dispatch" and event.data["ok"] is True


def test_pruning_keeps_shipments_a_manifest_connector_has_not_taken(storefront, shipped, receiver, settings):
    # given: the storefront was unreachable past the retention, so its shipment sits past its cursor
    old = timezone.now() - timedelta(days=settings.WEBHOOK_RETENTION_DAYS + 1)
    OutboxEvent.objects.update(dispatched_at=old, created_at=old)
    waiting = OutboxEvent.objects.get(type=EventType.FULFILLMENT_CREATED)

    housekeeping.prune()

    assert OutboxEvent.objects.filter(pk=waiting.pk).exists()
    receiver.script = [accepting]
    assert manifest.push_dispatch(manifest_state_fresh(storefront))["sent"] == 1

    housekeeping.prune()  # taken now: it goes with the rest
    assert not OutboxEvent.objects.filter(pk=waiting.pk).exists()
