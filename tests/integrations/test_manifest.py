"""Manifest calls against a real receiver on 127.0.0.1: signing, auth, failures, the health check and its lifecycle."""

import json
import threading

import pytest
from django.db import connection, transaction
from django_celery_beat.models import PeriodicTask

from automations.choices import ExceptionStatus
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from integrations import configuration, lifecycle, manifest, tasks
from integrations.choices import EventKind, IntegrationStatus, Workflow
from integrations.models import Integration, IntegrationEvent
from tests.fixtures.manifest import AUTH_TOKEN

S = IntegrationStatus
HEALTHY = (200, {"ok": True})


@pytest.fixture(autouse=True)
def _healthy_by_default(receiver):
    receiver.default = HEALTHY


def calls_of(integration):
    return list(IntegrationEvent.objects.filter(integration=integration, kind=EventKind.OUTBOUND_CALL))


def test_a_call_is_signed_carries_the_token_and_is_recorded(storefront, receiver, verify_call):
    receiver.script = [HEALTHY]

    outcome = manifest.call(storefront, "health", {})

    assert outcome.ok and outcome.data == {"ok": True}
    [request] = receiver.requests
    assert request.path == "/hub/health"
    assert verify_call(request, storefront) == {}
    assert request.headers["webhook-id"].startswith("msg_")
    [event] = calls_of(storefront)
    assert event.data["endpoint"] == "health" and event.data["status_code"] == 200
    assert event.data["ok"] is True and event.data["error"] == ""
    assert isinstance(event.data["duration_ms"], int)
    # the token is sent, never recorded
    assert AUTH_TOKEN not in event.message + json.dumps(event.data)


def test_every_call_gets_a_new_message_id(storefront, receiver):
    manifest.call(storefront, "health", {})
    manifest.call(storefront, "health", {})

    first, second = receiver.requests
    assert first.headers["webhook-id"] != second.headers["webhook-id"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((200, {"error": "store is closed"}), "store is closed"),
        ((500, {"detail": "oops"}), "HTTP 500"),
        ((404, "not here"), "HTTP 404"),
        ((302, b"", {"location": "http://127.0.0.1:1/"}), "Redirect"),
        ((200, [1, 2]), "not a JSON object"),
        ((200, "<html>"), "not JSON"),
    ],
    ids=["error-field", "500", "404", "redirect", "json-list", "not-json"],
)
def test_failures_are_failures_and_counted(storefront, receiver, answer, error):
    receiver.script = [answer]

    outcome = manifest.call(storefront, "health", {})

    assert not outcome.ok and error in outcome.summary
    storefront.refresh_from_db()
    assert storefront.consecutive_failures == 1
    [event] = calls_of(storefront)
    assert event.data["ok"] is False and error in event.data["error"] + event.message


def test_a_timeout_is_a_failure(storefront, receiver, settings):
    settings.WEBHOOK_TIMEOUT = 0.3
    receiver.delay = 1.0

    outcome = manifest.call(storefront, "health", {})

    assert not outcome.ok and outcome.error == "Timed out."
    assert calls_of(storefront)[0].data["status_code"] is None


def test_a_check_turns_a_well_formed_answer_into_a_failure(storefront, receiver):
    receiver.script = [(200, {"accepted": 1})]

    outcome = manifest.call(storefront, "dispatch", {"fulfillments": []}, check=manifest.answered_accepted(2))

    assert not outcome.ok and outcome.error == "The connector accepted 1 of 2."


def test_a_success_resets_the_failure_count(storefront, receiver):
    receiver.script = [(500, "no")]
    manifest.call(storefront, "health", {})

    manifest.call(storefront, "health", {})

    storefront.refresh_from_db()
    assert storefront.consecutive_failures == 0


def test_calls_that_cannot_be_made_are_refused_before_sending(storefront, receiver, manifest_connector):
    # no such endpoint in the manifest
    with pytest.raises(manifest.CallRefused) as refused:
        manifest.call(storefront, "prices", {"items": []})
    assert refused.value.code == "no_endpoint"

    # flow switched off
    Integration.objects.filter(pk=storefront.pk).update(flow_inventory_out=False)
    storefront.refresh_from_db()
    with pytest.raises(manifest.CallRefused) as refused:
        manifest.call(storefront, "inventory", {"items": []}, flow=Workflow.INVENTORY_OUT)
    assert refused.value.code == "workflow_disabled"

    # disabled
    lifecycle.disable(storefront)
    with pytest.raises(manifest.CallRefused) as refused:
        manifest.call(storefront, "health", {})
    assert refused.value.code == "disabled"

    # no base URL (a connector whose schema does not require it)
    manifest_connector.settings_schema = {"type": "object"}
    manifest_connector.save()
    Integration.objects.filter(pk=storefront.pk).update(status=S.CONNECTED, settings={})
    storefront.refresh_from_db()
    with pytest.raises(manifest.CallRefused) as refused:
        manifest.call(storefront, "health", {})
    assert refused.value.code == "no_base_url"

    assert receiver.requests == [] and calls_of(storefront) == []
    storefront.refresh_from_db()
    assert storefront.consecutive_failures == 0


# --- health ------------------------------------------------------------------------------------------------


def test_health_passing_connects_a_connecting_integration(make_storefront, org, receiver, org_admin):
    shop = make_storefront(org, status=S.CONNECTING)
    receiver.script = [HEALTHY]

    outcome = manifest.check_health(shop, actor=org_admin)

    assert outcome.ok
    shop.refresh_from_db()
    assert shop.status == S.CONNECTED and shop.status_reason == "Health check passed"
    moved = IntegrationEvent.objects.get(
        integration=shop, kind=EventKind.STATUS_CHANGED, data__to=S.CONNECTED
    )
    assert moved.actor == "user:alice"
    assert calls_of(shop)[0].actor_user == org_admin


@pytest.mark.parametrize(
    "answer",
    [(200, {"ok": False}), (200, {"error": "bad token"}), (401, "no")],
    ids=["ok-false", "error", "401"],
)
def test_health_failing_moves_a_connecting_integration_to_error(make_storefront, org, receiver, answer):
    shop = make_storefront(org, status=S.CONNECTING)
    receiver.script = [answer]

    outcome = manifest.check_health(shop)

    assert not outcome.ok
    shop.refresh_from_db()
    assert shop.status == S.ERROR and shop.status_reason.startswith("Health check failed: ")
    assert shop.last_error == shop.status_reason
    # a person is told
    assert SyncException.objects.get(integration=shop).kind == ExceptionKind.INTEGRATION_ERROR


def test_health_of_a_connected_integration_counts_towards_the_threshold(storefront, receiver, settings):
    settings.INTEGRATION_FAILURE_THRESHOLD = 3
    receiver.default = (503, "down")

    for _ in range(2):
        manifest.check_health(storefront)
    storefront.refresh_from_db()
    assert (storefront.status, storefront.consecutive_failures) == (S.CONNECTED, 2)

    manifest.check_health(storefront)

    storefront.refresh_from_db()
    assert storefront.status == S.ERROR and "3 outbound" in storefront.status_reason


def test_threshold_error_and_recovery_after_re_enabling(storefront, receiver, settings):
    # given an integration that repeated failed calls moved to error
    settings.INTEGRATION_FAILURE_THRESHOLD = 3
    receiver.script = [(200, {"error": "maintenance"})] * 3
    for _ in range(3):
        manifest.call(storefront, "orders", {"cursor": None, "limit": 1})
    storefront.refresh_from_db()
    assert storefront.status == S.ERROR
    assert SyncException.objects.get(integration=storefront).status == ExceptionStatus.OPEN

    # when it is re-enabled and the health check passes
    lifecycle.reenable(storefront)
    receiver.script = [HEALTHY]
    assert manifest.check_health(storefront).ok

    # then it is connected again, the count is reset and the exception resolved
    storefront.refresh_from_db()
    assert (storefront.status, storefront.consecutive_failures) == (S.CONNECTED, 0)
    assert SyncException.objects.get(integration=storefront).status == ExceptionStatus.RESOLVED


def test_a_stale_failed_health_answer_does_not_undo_a_newer_move(make_storefront, org, receiver, monkeypatch):
    shop = make_storefront(org, status=S.CONNECTING)
    receiver.script = [(500, "late")]
    send = manifest._send

    def handshake_meanwhile(*args, **kwargs):
        outcome = send(*args, **kwargs)
        lifecycle.handshake(Integration.objects.get(pk=shop.pk))  # while the call was out
        return outcome

    monkeypatch.setattr(manifest, "_send", handshake_meanwhile)

    assert not manifest.check_health(shop).ok

    shop.refresh_from_db()
    assert shop.status == S.CONNECTED


def test_health_of_a_disabled_integration_sends_nothing(storefront, receiver):
    lifecycle.disable(storefront)

    outcome = manifest.check_health(storefront)

    assert not outcome.ok and "disabled" in outcome.error
    assert receiver.requests == []


def test_a_connector_without_health_endpoint_is_not_checked(storefront, receiver, manifest_connector):
    manifest_connector.manifest = {"orders": "/orders"}
    manifest_connector.save()

    outcome = manifest.check_health(storefront)

    assert not outcome.ok and "no 'health' endpoint" in outcome.error
    storefront.refresh_from_db()
    assert storefront.status == S.CONNECTED and receiver.requests == []


# --- entering connecting, and the beat -------------------------------------------------------------------


@pytest.fixture
def run_tasks_inline(monkeypatch):
    """Enqueued health checks run at once, in this process."""
    ran = []

    def apply_async(args=None, **options):
        ran.append(args)
        return tasks.check_health_task.apply(args=args)

    monkeypatch.setattr(tasks.check_health_task, "apply_async", apply_async)
    return ran


def test_entering_connecting_checks_health_after_the_commit(
    org, manifest_connector, receiver, local_targets, run_tasks_inline, django_capture_on_commit_callbacks
):
    receiver.script = [HEALTHY]

    # when an integration of a manifest connector gets complete settings (not configured → connecting)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        shop = configuration.create_integration(
            org, manifest_connector, "New shop", settings={"base_url": receiver.url, "auth_token": AUTH_TOKEN}
        )
        assert shop.status == S.CONNECTING
    assert receiver.requests == []  # nothing before the commit
    for callback in callbacks:
        callback()

    # then one health check ran and connected it
    assert run_tasks_inline == [[shop.pk]]
    assert [r.path for r in receiver.requests] == ["/health"]
    shop.refresh_from_db()
    assert shop.status == S.CONNECTED


def test_re_enabling_checks_health_again(storefront, run_tasks_inline, django_capture_on_commit_callbacks):
    lifecycle.disable(storefront)

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.enable(storefront)

    assert run_tasks_inline == [[storefront.pk]]
    storefront.refresh_from_db()
    assert storefront.status == S.CONNECTED


def test_connectors_without_manifest_get_no_health_check(
    org, channel_connector, run_tasks_inline, django_capture_on_commit_callbacks
):
    shop = lifecycle.disable(configuration.create_integration(org, channel_connector, "Plain shop"))
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.enable(shop)

    assert run_tasks_inline == []


def test_the_health_round_covers_connected_and_connecting_manifest_integrations(
    org, make_storefront, integration, run_tasks_inline
):
    connected = make_storefront(org, "Connected shop")
    connecting = make_storefront(org, "Connecting shop", status=S.CONNECTING)
    make_storefront(org, "Broken shop", status=S.ERROR)
    make_storefront(org, "Off shop", status=S.DISABLED)
    Integration.objects.filter(pk=integration.pk).update(status=S.CONNECTED)  # no manifest

    assert tasks.check_manifest_health_task() == 2

    assert sorted(args[0] for args in run_tasks_inline) == sorted([connected.pk, connecting.pk])


def test_a_queued_health_check_skips_an_integration_disabled_since(storefront, receiver):
    lifecycle.disable(storefront)

    assert tasks.check_health_task(storefront.pk) is None
    assert receiver.requests == []


def test_the_health_round_is_on_the_beat_every_five_minutes(db):
    task = PeriodicTask.objects.select_related("interval").get(
        task="integrations.tasks.check_manifest_health_task"
    )
    assert (task.interval.every, task.interval.period, task.enabled) == (5, "minutes", True)


# --- claims ---------------------------------------------------------------------------------------------


def test_a_claimed_integration_is_not_claimed_again_until_released(storefront):
    [claimed] = manifest.claim("dispatch", Workflow.FULFILLMENTS_OUT, limit=5)
    assert claimed.pk == storefront.pk

    assert manifest.claim("dispatch", Workflow.FULFILLMENTS_OUT, limit=5) == []

    manifest.release(claimed, "dispatch")
    assert [i.pk for i in manifest.claim("dispatch", Workflow.FULFILLMENTS_OUT, limit=5)] == [storefront.pk]


def test_claims_skip_disabled_unconnected_and_switched_off_integrations(org, make_storefront):
    make_storefront(org, "Off", status=S.DISABLED)
    make_storefront(org, "Broken", status=S.ERROR)
    make_storefront(org, "Connecting", status=S.CONNECTING)
    no_flow = make_storefront(org, "No dispatch")
    Integration.objects.filter(pk=no_flow.pk).update(flow_fulfillments_out=False)

    assert manifest.claim("dispatch", Workflow.FULFILLMENTS_OUT, limit=5) == []


def test_saving_state_keeps_the_other_keys(storefront):
    manifest.save_state(storefront, orders_cursor="c1")
    manifest.save_state(Integration.objects.get(pk=storefront.pk), dispatch_after=7)

    storefront.refresh_from_db()
    assert storefront.manifest_state == {"orders_cursor": "c1", "dispatch_after": 7}


# serialized_rollback, as every transactional test here: a plain flush re-creates content types that the
# next serialized test would insert again (duplicate key at its setup).
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_row_another_worker_is_claiming_is_skipped_not_waited_for(storefront):
    # given another worker in the middle of its claim (the integration's row locked)
    locked, finish = threading.Event(), threading.Event()

    def other_worker():
        try:
            with transaction.atomic():
                Integration.objects.select_for_update().get(pk=storefront.pk)
                locked.set()
                finish.wait(5)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    assert locked.wait(5)
    try:
        # when this worker claims: it skips the row at once
        assert manifest.claim("dispatch", Workflow.FULFILLMENTS_OUT, limit=5) == []
    finally:
        finish.set()
        thread.join(5)

    # then, once free, the row is claimed
    assert [i.pk for i in manifest.claim("dispatch", Workflow.FULFILLMENTS_OUT, limit=5)] == [storefront.pk]
