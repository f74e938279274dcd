"""The beat task that moves integrations stuck in `connecting` past INTEGRATION_CONNECT_WINDOW to `error`."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from integrations import lifecycle
from integrations.choices import EventKind, IntegrationStatus
from integrations.models import Integration, IntegrationEvent
from integrations.tasks import expire_stale_connecting_task

S = IntegrationStatus
WINDOW = 60  # seconds
TASK_NAME = "integrations.tasks.expire_stale_connecting_task"


@pytest.fixture(autouse=True)
def short_window(settings):
    settings.INTEGRATION_CONNECT_WINDOW = WINDOW


def put(integration, status, *, seconds_ago):
    Integration.objects.filter(pk=integration.pk).update(
        status=status, status_changed_at=timezone.now() - timedelta(seconds=seconds_ago)
    )
    integration.refresh_from_db()
    return integration


def status_events(integration):
    return list(IntegrationEvent.objects.filter(integration=integration, kind=EventKind.STATUS_CHANGED))


def run_direct():
    return expire_stale_connecting_task()


def run_apply():
    result = expire_stale_connecting_task.apply()
    assert result.successful()
    return result.get()


RUNNERS = pytest.mark.parametrize("run", [run_direct, run_apply], ids=["direct", "apply"])


@RUNNERS
def test_stale_connecting_moves_to_error_with_an_event(integration, run):
    # given an integration connecting for longer than the window
    put(integration, S.CONNECTING, seconds_ago=WINDOW + 30)
    IntegrationEvent.objects.filter(integration=integration).delete()
    before = timezone.now()

    # when
    moved = run()

    # then it is in error, with the reason as last error, and one status event by the system
    assert moved == 1
    stored = Integration.objects.get(pk=integration.pk)
    assert stored.status == S.ERROR
    assert stored.status_changed_at >= before
    assert stored.last_error
    assert stored.last_error == stored.status_reason
    assert stored.last_error_at >= before
    (event,) = status_events(integration)
    assert (event.data["from"], event.data["to"]) == (S.CONNECTING.value, S.ERROR.value)
    assert (event.actor, event.actor_user) == ("system", None)


@RUNNERS
def test_recent_connecting_stays(integration, run):
    put(integration, S.CONNECTING, seconds_ago=WINDOW - 30)
    before = Integration.objects.filter(pk=integration.pk).values().get()
    events_before = IntegrationEvent.objects.count()

    assert run() == 0

    assert Integration.objects.filter(pk=integration.pk).values().get() == before
    assert IntegrationEvent.objects.count() == events_before


@RUNNERS
@pytest.mark.parametrize("status", [S.NOT_CONFIGURED, S.CONNECTED, S.ERROR, S.DISABLED])
def test_other_statuses_are_untouched_however_old(integration, run, status):
    put(integration, status, seconds_ago=30 * 24 * 3600)
    before = Integration.objects.filter(pk=integration.pk).values().get()
    events_before = IntegrationEvent.objects.count()

    assert run() == 0

    assert Integration.objects.filter(pk=integration.pk).values().get() == before
    assert IntegrationEvent.objects.count() == events_before


def test_only_the_stale_ones_move_across_organizations(org, other_org, channel_connector, make_integration):
    # given stale and fresh integrations in two organizations
    stale = [
        put(make_integration(org, channel_connector, "Acme stale"), S.CONNECTING, seconds_ago=WINDOW * 10),
        put(
            make_integration(other_org, channel_connector, "Globex stale"),
            S.CONNECTING,
            seconds_ago=WINDOW + 5,
        ),
    ]
    fresh = put(make_integration(org, channel_connector, "Acme fresh"), S.CONNECTING, seconds_ago=5)

    # when
    moved = expire_stale_connecting_task()

    # then
    assert moved == 2
    assert {i.status for i in Integration.objects.filter(pk__in=[i.pk for i in stale])} == {S.ERROR}
    assert Integration.objects.get(pk=fresh.pk).status == S.CONNECTING


def test_the_window_setting_is_read_at_run_time(integration, settings):
    put(integration, S.CONNECTING, seconds_ago=WINDOW + 30)
    settings.INTEGRATION_CONNECT_WINDOW = 3600

    assert expire_stale_connecting_task() == 0
    assert Integration.objects.get(pk=integration.pk).status == S.CONNECTING


def test_running_twice_moves_once(integration):
    put(integration, S.CONNECTING, seconds_ago=WINDOW + 30)

    first, second = expire_stale_connecting_task(), expire_stale_connecting_task()

    assert (first, second) == (1, 0)
    assert len([e for e in status_events(integration) if e.data["to"] == S.ERROR.value]) == 1


def test_service_accepts_an_explicit_now(integration):
    put(integration, S.CONNECTING, seconds_ago=5)

    moved = lifecycle.expire_stale_connecting(now=timezone.now() + timedelta(seconds=WINDOW))

    assert moved == 1
    assert Integration.objects.get(pk=integration.pk).status == S.ERROR


@pytest.mark.parametrize(
    ("meanwhile_status", "meanwhile_seconds_ago"),
    [(S.CONNECTED, 0), (S.CONNECTING, 0)],
    ids=["handshake-completed", "connecting-again"],
)
def test_an_integration_moved_meanwhile_is_left_alone(
    org, channel_connector, make_integration, monkeypatch, meanwhile_status, meanwhile_seconds_ago
):
    # given two stale integrations; while the task moves the first, another worker moves the second
    # (a handshake completes, or it left and re-entered `connecting`) — simulated by wrapping the move
    first = put(make_integration(org, channel_connector, "A shop"), S.CONNECTING, seconds_ago=WINDOW * 2)
    second = put(make_integration(org, channel_connector, "B shop"), S.CONNECTING, seconds_ago=WINDOW * 2)
    real_transition = lifecycle.transition
    moved_meanwhile = []

    def transition_while_another_worker_moves(integration, to_status, **kwargs):
        if not moved_meanwhile:
            other = second if integration.pk == first.pk else first
            put(other, meanwhile_status, seconds_ago=meanwhile_seconds_ago)
            moved_meanwhile.append(other.pk)
        return real_transition(integration, to_status, **kwargs)

    monkeypatch.setattr(lifecycle, "transition", transition_while_another_worker_moves)

    # when
    moved = expire_stale_connecting_task()

    # then only the one still stale when its turn came is moved; the other keeps its new status
    assert moved == 1
    (other_pk,) = moved_meanwhile
    assert Integration.objects.get(pk=other_pk).status == meanwhile_status
    assert Integration.objects.exclude(pk=other_pk).get(pk__in=[first.pk, second.pk]).status == S.ERROR


def test_task_is_late_acknowledged():
    assert expire_stale_connecting_task.acks_late is True
    assert expire_stale_connecting_task.name == TASK_NAME


# --- the beat schedule (data migration 0003) ---------------------------------------------------------------


def test_beat_schedule_row_is_installed(db):
    (row,) = PeriodicTask.objects.filter(task=TASK_NAME)

    assert row.enabled is True
    assert row.interval is not None or row.crontab is not None
    assert row.one_off is False
