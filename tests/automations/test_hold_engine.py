"""The hold engine: rules and the default hold on new orders, idempotency, the sweep, the off switch."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from automations import tasks
from automations.choices import ActionType, Engine, RuleTrigger, RunOutcome, RunTrigger
from automations.engines import hold
from automations.models import EngineSettings, EngineStatus, RuleRun
from core import triggers
from orders import services as order_services
from orders.choices import OrderStatus
from orders.models import Order

pytestmark = pytest.mark.django_db

CREATED = RuleTrigger.ORDER_CREATED
UPDATED = RuleTrigger.ORDER_UPDATED


def process(order, trigger=CREATED):
    return hold.process_order(order.pk, trigger=trigger)


def settings_of(org, **values):
    EngineSettings.objects.update_or_create(organization=org, defaults=values)


def age(order, **delta):
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(**delta))


def held(order, reason="review", **until):
    """Put an order on hold (until now + `until`, when given) as a person or a rule would."""
    when = timezone.now() + timedelta(**until) if until else None
    return order_services.hold(Order.objects.get(pk=order.pk), reason, until=when)


def test_new_order_without_rules_becomes_ready(new_order):
    assert new_order.status == OrderStatus.NEW
    counts = process(new_order)
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY
    assert counts == {"orders": 1, "rules_matched": 0, "held": 0, "ready": 1}


def test_a_ready_order_is_handed_to_routing_by_the_task_that_made_it_ready(
    new_order, django_capture_on_commit_callbacks, monkeypatch
):
    routed = []
    monkeypatch.setattr(tasks.routing, "route_order_by_id", lambda order_id: routed.append(order_id) or {})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        counts = tasks.process_order_task(new_order.pk, True)

    assert counts["ready"] == 1
    assert routed == [new_order.pk]
    # and not a second time through the queue: the hold engine fires no ORDER_READY for its own orders
    assert not [c for c in callbacks if isinstance(c, triggers.Firing) and c.trigger == triggers.ORDER_READY]


def test_a_matching_rule_holds_the_order(big_order_rule, ingest_new, order_body):
    order = ingest_new(order_body, total="750")
    counts = process(order)
    order.refresh_from_db()
    assert (order.status, order.hold_reason) == (OrderStatus.ON_HOLD, "review: big order")
    assert counts == {"orders": 1, "rules_matched": 1, "held": 1, "ready": 0}
    assert RuleRun.objects.get(order=order).matched is True


def test_a_rule_that_does_not_match_lets_the_order_through(big_order_rule, new_order):
    process(new_order)
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY
    assert RuleRun.objects.get(order=new_order).matched is False


def test_process_order_twice_applies_the_rules_once(make_rule, new_order):
    # Given a rule that tags and raises (each visible if done twice)
    make_rule(
        "tag",
        [],
        [{"type": ActionType.ADD_TAG, "tag": "seen"}, {"type": ActionType.RAISE_EXCEPTION, "message": "m"}],
    )
    first = process(new_order)
    # When the same message arrives again
    again = process(new_order)
    # Then nothing more happened
    assert first["rules_matched"] == 1
    assert again == {"orders": 1, "already_processed": 1}
    assert RuleRun.objects.filter(order=new_order).count() == 1
    from automations.models import SyncException

    assert SyncException.objects.get(entity_id=str(new_order.pk)).occurrences == 1


def test_process_order_twice_with_a_default_hold_and_no_rules_changes_nothing(org, new_order):
    settings_of(org, default_hold_minutes=10)
    process(new_order)
    new_order.refresh_from_db()
    before = (new_order.status, new_order.hold_reason, new_order.hold_until, new_order.updated_at)
    process(new_order)
    new_order.refresh_from_db()
    assert (new_order.status, new_order.hold_reason, new_order.hold_until, new_order.updated_at) == before


def test_order_updated_after_a_manual_release_is_not_held_again(org, new_order):
    settings_of(org, default_hold_minutes=10)
    process(new_order)
    order_services.release(Order.objects.get(pk=new_order.pk))
    assert process(new_order) == {"orders": 1, "already_processed": 1}
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY


def test_default_hold_minutes_holds_until_created_plus_n(org, new_order):
    settings_of(org, default_hold_minutes=15)
    counts = process(new_order)
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.ON_HOLD
    assert new_order.hold_reason == "new-order hold (15 min)"
    assert new_order.hold_until == new_order.created_at + timedelta(minutes=15)
    assert counts["held"] == 1


def test_default_hold_already_passed_is_skipped(org, new_order):
    settings_of(org, default_hold_minutes=15)
    age(new_order, minutes=20)
    process(new_order)
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY


def test_default_hold_is_added_beside_a_rules_hold(org, big_order_rule, ingest_new, order_body):
    settings_of(org, default_hold_minutes=5)
    order = ingest_new(order_body, total="900")
    process(order)
    order.refresh_from_db()
    # The review is open-ended, so the order stays held after the 5 minutes.
    assert (order.hold_reason, order.hold_until) == ("review: big order; new-order hold (5 min)", None)


def test_a_rules_release_skips_the_default_hold(org, make_rule, new_order):
    settings_of(org, default_hold_minutes=30)
    make_rule(
        "trusted",
        [{"field": "customer_email", "operator": "ends_with", "value": "@example.test"}],
        [{"type": ActionType.RELEASE}],
    )
    process(new_order)
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY


def test_rules_apply_to_an_order_held_for_mappings(make_rule, ingest_new, order_body):
    # Given an order ingest held for an unmapped SKU
    order = ingest_new(order_body, lines=[{"sku": "NOPE", "quantity": 1}])
    make_rule("tag", [], [{"type": ActionType.ADD_TAG, "tag": "checked"}])
    # When the engine runs
    process(order)
    # Then the rules ran, and the order stays held for its mapping
    order.refresh_from_db()
    assert order.tags == ["checked"]
    assert order.status == OrderStatus.ON_HOLD


def test_order_updated_rules_apply_to_held_and_ready_orders(make_rule, new_order):
    make_rule("tag", [], [{"type": ActionType.ADD_TAG, "tag": "updated"}], trigger=UPDATED)
    make_rule("on create", [], [{"type": ActionType.ADD_TAG, "tag": "created"}])
    process(new_order)  # → ready, tagged "created"
    counts = process(new_order, UPDATED)
    new_order.refresh_from_db()
    assert new_order.tags == ["created", "updated"]
    assert counts == {"orders": 1, "rules_matched": 1, "held": 0, "ready": 1}


@pytest.mark.parametrize("status", ["sent_to_fulfillment", "fulfilled", "canceled"])
def test_order_updated_rules_never_touch_routed_fulfilled_or_canceled_orders(make_rule, new_order, status):
    make_rule("hold", [], [{"type": ActionType.HOLD, "reason": "late"}], trigger=UPDATED)
    Order.objects.filter(pk=new_order.pk).update(status=status)
    assert process(new_order, UPDATED) == {"orders": 1, "not_updatable": 1}
    assert not RuleRun.objects.exists()
    new_order.refresh_from_db()
    assert new_order.status == status


def test_missing_order(db):
    assert hold.process_order(987654, trigger=CREATED) == {"missing": 1}


def test_switched_off_engine_does_nothing(org, big_order_rule, ingest_new, order_body):
    # Given a rule that would hold the order, and the engine switched off
    order = ingest_new(order_body, total="900")
    settings_of(org, hold_enabled=False)
    # When the event and the sweep run
    assert process(order) == {"skipped": 1}
    age(order, minutes=5)
    assert hold.sweep() == {}
    assert hold.run_now(org) == {}
    # Then nothing ran and the order is untouched
    assert not RuleRun.objects.exists()
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW
    assert not EngineStatus.objects.filter(organization=org, engine=Engine.HOLD).exists()


def test_the_run_is_recorded_for_the_dashboard(org, new_order):
    process(new_order)
    status = EngineStatus.objects.get(organization=org, engine=Engine.HOLD)
    assert (status.last_outcome, status.last_trigger, status.runs) == (RunOutcome.OK, RunTrigger.EVENT, 1)
    assert status.last_counts == {"orders": 1, "ready": 1}


# --- the sweep ----------------------------------------------------------------------------------------------


def test_sweep_releases_expired_holds_only(org, ingest_new, order_body):
    # Given three held orders: one expired, one not yet, one open-ended
    expired = held(ingest_new(order_body, external_id="a"), minutes=-1)
    later = held(ingest_new(order_body, external_id="b"), minutes=10)
    review = held(ingest_new(order_body, external_id="c"))
    # When the sweep runs
    counts = hold.sweep()
    # Then only the expired one is released
    for order in (expired, later, review):
        order.refresh_from_db()
    assert [o.status for o in (expired, later, review)] == ["ready", "on_hold", "on_hold"]
    assert later.hold_until is not None and review.hold_until is None
    assert counts == {"released": 1, "organizations": 1}


def test_sweep_leaves_an_unmapped_order_held_and_counts_it(ingest_new, order_body):
    order = ingest_new(order_body, lines=[{"sku": "NOPE", "quantity": 1}])
    Order.objects.filter(pk=order.pk).update(hold_until=timezone.now() - timedelta(minutes=1))
    counts = hold.sweep()
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert order.hold_until is not None and order.hold_reason == "unmapped SKU NOPE"
    assert counts["still_unmapped"] == 1
    assert "released" not in counts


def test_sweep_processes_new_orders_whose_message_was_lost(big_order_rule, ingest_new, order_body):
    lost = ingest_new(order_body, external_id="lost", total="900")
    age(lost, minutes=1)
    recent = ingest_new(order_body, external_id="recent")
    counts = hold.sweep()
    lost.refresh_from_db()
    recent.refresh_from_db()
    assert (lost.status, recent.status) == (OrderStatus.ON_HOLD, OrderStatus.NEW)
    assert counts["lost_messages"] == 1


def test_run_now_processes_new_orders_at_once(org, new_order):
    counts = hold.run_now(org)
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.READY
    assert counts["lost_messages"] == 1
    status = EngineStatus.objects.get(organization=org, engine=Engine.HOLD)
    assert status.last_trigger == RunTrigger.COMMAND


def test_sweep_of_one_organization_leaves_the_others(org, other_org, new_order):
    assert hold.run_now(other_org) == {"organizations": 1}
    new_order.refresh_from_db()
    assert new_order.status == OrderStatus.NEW


def test_one_failing_order_does_not_stop_the_sweep(ingest_new, order_body, monkeypatch):
    first = held(ingest_new(order_body, external_id="a"), minutes=-2)
    held(ingest_new(order_body, external_id="b"), minutes=-1)
    release = order_services.release

    def flaky(order):
        if order.pk == first.pk:
            raise RuntimeError("disk full")
        return release(order)

    monkeypatch.setattr(order_services, "release", flaky)
    counts = hold.sweep()
    assert (counts["failed"], counts["released"]) == (1, 1)
    assert dict(Order.objects.values_list("external_id", "status")) == {"a": "on_hold", "b": "ready"}


def test_sweep_batches_are_bounded(ingest_new, order_body, monkeypatch):
    monkeypatch.setattr(hold, "BATCH", 2)
    for n in range(3):
        held(ingest_new(order_body, external_id=str(n)), minutes=-1)
    assert hold.sweep()["released"] == 2
    assert hold.sweep()["released"] == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_overlapping_sweeps_give_the_same_result_as_one(make_rule, ingest_new, order_body):
    # Given expired holds and lost new orders, and a rule that tags (a second application would show)
    make_rule("tag", [], [{"type": ActionType.RAISE_EXCEPTION, "message": "seen"}])
    for n in range(6):
        held(ingest_new(order_body, external_id=f"h{n}"), minutes=-1)
    lost = [ingest_new(order_body, external_id=f"n{n}") for n in range(6)]
    Order.objects.filter(pk__in=[o.pk for o in lost]).update(created_at=timezone.now() - timedelta(minutes=1))
    # When two sweeps run at the same time
    barrier, results, errors = threading.Barrier(2), [], []

    def sweep():
        try:
            barrier.wait()
            results.append(hold.sweep())
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then every order was handled exactly once
    assert errors == []
    assert sum(r.get("released", 0) for r in results) == 6
    assert not Order.objects.filter(status__in=["new"]).exists()
    from automations.models import SyncException

    for order in lost:
        assert RuleRun.objects.filter(order=order, trigger=CREATED).count() == 1
        assert SyncException.objects.get(entity_id=str(order.pk)).occurrences == 1
    assert (
        Order.objects.filter(status="ready").count() == 12 - 6 + 6
    )  # held ones released, lost ones made ready
