"""`manage.py replay_deliveries`: which deliveries it queues again, its batches and its errors."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations.choices import DeliveryStatus
from integrations.management.commands import replay_deliveries
from integrations.models import WebhookDelivery
from tests.fixtures.deliveries import make_delivery, make_subscription

D = DeliveryStatus


def run(**options):
    out, err = StringIO(), StringIO()
    call_command("replay_deliveries", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def statuses(*deliveries):
    return [WebhookDelivery.objects.get(pk=d.pk).status for d in deliveries]


@pytest.fixture
def subscription(integration):
    return make_subscription(integration)


@pytest.fixture
def other_subscription(other_integration):
    return make_subscription(other_integration, url="https://hooks.globex.test/in")


def test_default_queues_every_dead_delivery_and_nothing_else(subscription, other_subscription):
    dead = [make_delivery(subscription, D.DEAD), make_delivery(other_subscription, D.DEAD)]
    failed = make_delivery(subscription, D.FAILED)
    succeeded = make_delivery(subscription, D.SUCCEEDED)

    out, _ = run()

    assert out.splitlines() == ["dead: 2 queued again", "Queued 2 deliveries again."]
    assert statuses(*dead, failed, succeeded) == [D.PENDING, D.PENDING, D.FAILED, D.SUCCEEDED]
    replayed = WebhookDelivery.objects.get(pk=dead[0].pk)
    assert replayed.attempts == 0 and replayed.next_attempt_at <= timezone.now()
    assert replayed.event_id == dead[0].event_id and replayed.body == dead[0].body


def test_status_failed_and_both(subscription):
    dead, failed = make_delivery(subscription, D.DEAD), make_delivery(subscription, D.FAILED)

    out, _ = run(status="failed")
    assert out.splitlines()[0] == "failed: 1 queued again"
    assert statuses(dead, failed) == [D.DEAD, D.PENDING]

    make_delivery(subscription, D.FAILED)
    out, _ = run(status="failed,dead")
    assert out.splitlines() == [
        "failed: 1 queued again",
        "dead: 1 queued again",
        "Queued 2 deliveries again.",
    ]


def test_integration_and_org_narrow_it(subscription, other_subscription, org, other_org, integration):
    mine, theirs = make_delivery(subscription), make_delivery(other_subscription)

    run(integration=integration.pk)
    assert statuses(mine, theirs) == [D.PENDING, D.DEAD]

    run(org=other_org.slug)
    assert statuses(theirs) == [D.PENDING]

    again = make_delivery(subscription)
    out, _ = run(org=org.slug, integration=integration.pk)
    assert out.splitlines()[-1] == "Queued 1 delivery again." and statuses(again) == [D.PENDING]


@pytest.mark.parametrize("since", ["2h", "120m", "2 h", "ISO"])
def test_since_takes_a_duration_or_a_datetime(subscription, since):
    recent = make_delivery(subscription, ago=timedelta(minutes=30))
    old = make_delivery(subscription, ago=timedelta(hours=5))
    if since == "ISO":
        since = (timezone.now() - timedelta(hours=2)).replace(tzinfo=None).isoformat()  # naive: UTC

    run(since=since)

    assert statuses(recent, old) == [D.PENDING, D.DEAD]


def test_since_with_an_offset_and_a_bare_date(subscription):
    recent = make_delivery(subscription, ago=timedelta(minutes=30))
    an_hour_ago = timezone.now() - timedelta(hours=1)

    out, _ = run(since=an_hour_ago.astimezone(timezone.get_fixed_timezone(120)).isoformat(), dry_run=True)
    assert out.splitlines()[0] == "dead: 1 would be queued again"
    out, _ = run(since="2000-01-01", dry_run=True)
    assert out.splitlines()[0] == "dead: 1 would be queued again"
    assert statuses(recent) == [D.DEAD]


def test_dry_run_counts_and_changes_nothing(subscription):
    dead = [make_delivery(subscription) for _ in range(3)]

    out, _ = run(dry_run=True)

    assert out.splitlines() == [
        "dead: 3 would be queued again",
        "Dry run: 3 deliveries would be queued again; nothing changed.",
    ]
    assert statuses(*dead) == [D.DEAD] * 3


def test_works_in_bounded_batches_with_progress(subscription, monkeypatch):
    monkeypatch.setattr(replay_deliveries, "BATCH", 4)
    dead = [make_delivery(subscription) for _ in range(10)]
    calls = []
    real = replay_deliveries.replay.replay
    monkeypatch.setattr(
        replay_deliveries.replay, "replay", lambda qs, **kw: calls.append(1) or real(qs, **kw)
    )

    out, err = run()

    assert len(calls) == 3  # 4 + 4 + 2
    assert out.splitlines()[-1] == "Queued 10 deliveries again."
    assert err.splitlines() == ["dead: 4 of 10 queued…", "dead: 8 of 10 queued…", "dead: 10 of 10 queued…"]
    assert statuses(*dead) == [D.PENDING] * 10


def test_a_delivery_being_sent_is_left_to_its_worker(subscription):
    leased = make_delivery(subscription, D.FAILED, locked_until=timezone.now() + timedelta(minutes=2))
    lapsed = make_delivery(subscription, D.FAILED, locked_until=timezone.now() - timedelta(minutes=2))

    out, _ = run(status="failed")

    assert out.splitlines()[0] == "failed: 1 queued again"
    assert statuses(leased, lapsed) == [D.FAILED, D.PENDING]


def test_nothing_to_replay_says_zero(db):
    out, _ = run()

    assert out.splitlines() == ["dead: 0 queued again", "Queued 0 deliveries again."]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"status": "pending"}, "--status must be failed, dead or failed,dead, not 'pending'."),
        ({"status": "succeeded"}, "--status must be failed, dead or failed,dead"),
        ({"status": ""}, "--status must be failed, dead or failed,dead"),
        ({"since": "yesterday"}, "--since must be an ISO 8601 date-time"),
        ({"since": "2h ago"}, "--since must be an ISO 8601 date-time"),
        ({"since": "2025-02-30T10:00"}, "--since must be an ISO 8601 date-time"),
        ({"since": "2999-01-01T00:00Z"}, "is in the future"),
        ({"since": "99999999999d"}, "is too far back"),
        ({"org": "nope"}, "Unknown organization 'nope'."),
        ({"integration": 999999}, "No integration with id 999999."),
    ],
)
def test_bad_input_is_a_clear_error(db, subscription, options, message):
    dead = make_delivery(subscription)

    with pytest.raises(CommandError, match=re.escape(message)):
        run(**options)

    assert statuses(dead) == [D.DEAD]


def test_an_integration_outside_the_org_is_an_error(integration, other_org):
    with pytest.raises(CommandError, match="belongs to 'acme', not 'globex'"):
        run(integration=integration.pk, org=other_org.slug)


def test_bad_input_exits_non_zero_from_the_shell(db):
    from django.core.management import ManagementUtility

    utility = ManagementUtility(["manage.py", "replay_deliveries", "--status", "gone"])
    with pytest.raises(SystemExit) as exit_info:
        utility.execute()

    assert exit_info.value.code != 0


def test_a_replay_is_on_the_integrations_trail(subscription, integration):
    from integrations.models import IntegrationEvent

    for _ in range(2):
        make_delivery(subscription, D.DEAD)

    run()

    event = IntegrationEvent.objects.get(integration=integration, message__contains="replay")
    assert event.actor == "support:replay_deliveries" and event.data == {"replayed": 2}
