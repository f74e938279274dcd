"""The integration lifecycle of docs/architecture.md ("Integration lifecycle"): `lifecycle.transition` and the
moves built on it."""

import itertools

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from integrations import connector_settings, lifecycle
from integrations.choices import ALLOWED_TRANSITIONS, EventKind, IntegrationStatus
from integrations.lifecycle import TransitionRefused
from integrations.models import Integration
from tests.fixtures.integrations import GOOD_SETTINGS
from tests.integrations.statuses import event_mark, new_events, put, row

S = IntegrationStatus

# Typed from docs/architecture.md's diagram and prose, not derived from the code, so drift on either side
# shows.
DOC_TRANSITIONS = {
    (S.NOT_CONFIGURED, S.CONNECTING),  # settings complete & valid
    (S.NOT_CONFIGURED, S.DISABLED),  # any status → disabled
    (S.CONNECTING, S.CONNECTED),  # handshake / health check ok
    (S.CONNECTING, S.ERROR),  # no handshake within the window, health check failed
    (S.CONNECTING, S.NOT_CONFIGURED),  # required setting removed
    (S.CONNECTING, S.DISABLED),
    (S.CONNECTED, S.CONNECTING),  # settings changed: checked again
    (S.CONNECTED, S.ERROR),  # N failed calls, auth failure, unhandled error
    (S.CONNECTED, S.NOT_CONFIGURED),  # required setting removed
    (S.CONNECTED, S.DISABLED),
    (S.ERROR, S.CONNECTING),  # retry / settings fixed
    (S.ERROR, S.NOT_CONFIGURED),  # required setting removed
    (S.ERROR, S.DISABLED),
    (S.DISABLED, S.CONNECTING),  # enable: re-checked, never straight to connected
    (S.DISABLED, S.NOT_CONFIGURED),  # enable while settings are incomplete
}
ALL_PAIRS = list(itertools.product(S, S))
ALLOWED_PAIRS = [pair for pair in ALL_PAIRS if pair in DOC_TRANSITIONS]
REFUSED_PAIRS = [pair for pair in ALL_PAIRS if pair not in DOC_TRANSITIONS]
OTHER_THAN_DISABLED = [s for s in S if s != S.DISABLED]


def _pair_id(pair):
    return f"{pair[0].value}->{pair[1].value}"


# --- the table itself ---------------------------------------------------------------------------------


def test_allowed_transitions_match_design():
    code = {(src, dst) for src, targets in ALLOWED_TRANSITIONS.items() for dst in targets}
    assert code == DOC_TRANSITIONS


def test_every_status_has_a_row_and_none_allows_staying_put():
    assert set(ALLOWED_TRANSITIONS) == set(S)
    assert all(src not in targets for src, targets in ALLOWED_TRANSITIONS.items())


# --- transition: every pair -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_status", "to_status"), ALLOWED_PAIRS, ids=[_pair_id(p) for p in ALLOWED_PAIRS]
)
def test_allowed_transition_stores_status_and_records_one_event(
    integration, org_admin, from_status, to_status
):
    # given an integration sitting in `from_status` for three days
    put(integration, from_status)
    old_changed_at = integration.status_changed_at
    mark = event_mark()
    before = timezone.now()

    # when
    result = lifecycle.transition(integration, to_status, reason="Moved by the test.", actor=org_admin)

    # then the row and the caller's object both carry the new status, reason and time
    assert result is integration
    stored = Integration.objects.get(pk=integration.pk)
    for obj in (stored, integration):
        assert obj.status == to_status
        assert obj.status_reason == "Moved by the test."
        assert obj.status_changed_at >= before
        assert obj.status_changed_at != old_changed_at
    # and exactly one event, of kind status_changed, says who moved it from where to where and why
    events = new_events(integration, mark)
    assert [e.kind for e in events] == [EventKind.STATUS_CHANGED]
    assert events[0].data == {
        "from": from_status.value,
        "to": to_status.value,
        "reason": "Moved by the test.",
    }
    assert events[0].actor == "user:alice"
    assert events[0].actor_user == org_admin
    assert events[0].organization == integration.organization
    assert events[0].integration_name == integration.name


@pytest.mark.parametrize(
    ("from_status", "to_status"), REFUSED_PAIRS, ids=[_pair_id(p) for p in REFUSED_PAIRS]
)
def test_refused_transition_changes_nothing(integration, org_admin, from_status, to_status):
    # given
    put(integration, from_status)
    before = row(integration)
    mark = event_mark()

    # when
    with pytest.raises(TransitionRefused) as refused:
        lifecycle.transition(integration, to_status, reason="Should not happen.", actor=org_admin)

    # then the refusal is a ValidationError with its code and a message naming both statuses
    assert isinstance(refused.value, ValidationError)
    assert refused.value.code == "transition_refused"
    message = refused.value.messages[0]
    assert str(from_status.label) in message
    assert str(to_status.label) in message
    # and neither the database, the caller's object nor the audit trail changed
    assert row(integration) == before
    assert integration.status == from_status
    assert new_events(integration, mark) == []


def test_same_status_refusals_cover_every_status():
    assert {src for src, dst in REFUSED_PAIRS if src == dst} == set(S)


@pytest.mark.parametrize("from_status", [S.CONNECTING, S.CONNECTED])
def test_move_to_error_sets_last_error(integration, from_status):
    put(integration, from_status)
    before = timezone.now()

    lifecycle.transition(integration, S.ERROR, reason="Connector answered 500 ten times.")

    stored = Integration.objects.get(pk=integration.pk)
    assert stored.last_error == "Connector answered 500 ten times."
    assert stored.last_error_at >= before
    assert (integration.last_error, integration.last_error_at) == (stored.last_error, stored.last_error_at)


@pytest.mark.parametrize("to_status", [S.CONNECTING, S.NOT_CONFIGURED, S.DISABLED])
def test_leaving_error_keeps_last_error(integration, to_status):
    # given an integration that went to error
    put(integration, S.CONNECTED)
    lifecycle.transition(integration, S.ERROR, reason="Auth failure.")
    error_at = Integration.objects.get(pk=integration.pk).last_error_at

    # when it moves on
    lifecycle.transition(integration, to_status, reason="Moving on.")

    # then the last error is still there for people to read
    stored = Integration.objects.get(pk=integration.pk)
    assert (stored.last_error, stored.last_error_at) == ("Auth failure.", error_at)


def test_transition_accepts_status_value_strings(integration):
    put(integration, S.CONNECTING)

    lifecycle.transition(integration, "connected", reason="Plain string.")

    assert Integration.objects.get(pk=integration.pk).status == S.CONNECTED


@pytest.mark.parametrize(
    ("actor", "label"), [(None, "system"), ("key:sy_ab12cd", "key:sy_ab12cd")], ids=["none", "key-label"]
)
def test_transition_records_non_user_actors(integration, actor, label):
    put(integration, S.CONNECTING)
    mark = event_mark()

    lifecycle.transition(integration, S.CONNECTED, reason="Handshake.", actor=actor)

    (event,) = new_events(integration, mark)
    assert (event.actor, event.actor_user) == (label, None)


def test_transition_checks_the_stored_status_not_a_stale_object(integration):
    # given the caller holds an object that still says `connecting`, while the row was disabled meanwhile
    put(integration, S.CONNECTING)
    stale = Integration.objects.get(pk=integration.pk)
    lifecycle.disable(integration, reason="Disabled elsewhere.")
    mark = event_mark()

    # when the stale object is moved to connected
    with pytest.raises(TransitionRefused):
        lifecycle.transition(stale, S.CONNECTED, reason="Handshake.")

    # then the disabled row stays disabled
    assert Integration.objects.get(pk=integration.pk).status == S.DISABLED
    assert new_events(integration, mark) == []


def test_long_reason_is_cut_for_the_row_but_kept_whole_in_the_event(integration):
    put(integration, S.CONNECTING)
    reason = "x" * 800
    mark = event_mark()

    lifecycle.transition(integration, S.ERROR, reason=reason)

    stored = Integration.objects.get(pk=integration.pk)
    assert len(stored.status_reason) == 500
    (event,) = new_events(integration, mark)
    assert event.data["reason"] == reason


# --- enable / disable ------------------------------------------------------------------------------------


def test_enable_with_complete_settings_goes_to_connecting(strict_integration, org_admin):
    # given a connected integration that was disabled
    put(strict_integration, S.CONNECTED)
    lifecycle.disable(strict_integration, actor=org_admin)
    mark = event_mark()

    # when
    lifecycle.enable(strict_integration, actor=org_admin)

    # then it is re-checked, never straight back to connected
    assert Integration.objects.get(pk=strict_integration.pk).status == S.CONNECTING
    events = new_events(strict_integration, mark)
    assert [(e.kind, e.data["from"], e.data["to"]) for e in events] == [
        (EventKind.STATUS_CHANGED, S.DISABLED.value, S.CONNECTING.value)
    ]
    assert events[0].actor_user == org_admin
    assert events[0].data["reason"]


def test_enable_without_required_settings_goes_to_not_configured(incomplete_integration):
    put(incomplete_integration, S.DISABLED)
    mark = event_mark()

    lifecycle.enable(incomplete_integration)

    assert Integration.objects.get(pk=incomplete_integration.pk).status == S.NOT_CONFIGURED
    (event,) = new_events(incomplete_integration, mark)
    assert (event.data["from"], event.data["to"]) == (S.DISABLED.value, S.NOT_CONFIGURED.value)


def test_enable_of_connector_without_required_settings_goes_to_connecting(integration):
    put(integration, S.DISABLED)

    lifecycle.enable(integration)

    assert Integration.objects.get(pk=integration.pk).status == S.CONNECTING


def test_enable_stores_the_given_reason(integration):
    put(integration, S.DISABLED)

    lifecycle.enable(integration, reason="Partner fixed their side.")

    assert Integration.objects.get(pk=integration.pk).status_reason == "Partner fixed their side."


@pytest.mark.parametrize("status", OTHER_THAN_DISABLED)
def test_enable_of_an_integration_that_is_not_disabled_is_refused(integration, status):
    put(integration, status)
    before = row(integration)
    mark = event_mark()

    with pytest.raises(TransitionRefused) as refused:
        lifecycle.enable(integration)

    assert refused.value.code == "transition_refused"
    assert row(integration) == before
    assert new_events(integration, mark) == []


@pytest.mark.parametrize("status", OTHER_THAN_DISABLED)
def test_disable_from_every_active_status(integration, org_admin, status):
    put(integration, status)
    mark = event_mark()

    lifecycle.disable(integration, actor=org_admin)

    stored = Integration.objects.get(pk=integration.pk)
    assert stored.status == S.DISABLED
    assert stored.status_reason  # a default reason naming who did it
    (event,) = new_events(integration, mark)
    assert (event.kind, event.data["from"], event.data["to"]) == (
        EventKind.STATUS_CHANGED,
        status.value,
        S.DISABLED.value,
    )
    assert event.actor == "user:alice"


def test_disable_stores_the_given_reason(integration):
    put(integration, S.CONNECTED)

    lifecycle.disable(integration, reason="Contract ended.")

    assert Integration.objects.get(pk=integration.pk).status_reason == "Contract ended."


def test_disable_of_a_disabled_integration_is_refused(integration):
    put(integration, S.DISABLED)
    before = row(integration)
    mark = event_mark()

    with pytest.raises(TransitionRefused):
        lifecycle.disable(integration)

    assert row(integration) == before
    assert new_events(integration, mark) == []


def test_disabling_keeps_configuration(strict_integration):
    put(strict_integration, S.CONNECTED)

    lifecycle.disable(strict_integration)

    stored = Integration.objects.get(pk=strict_integration.pk)
    assert connector_settings.full_settings(stored) == GOOD_SETTINGS


# --- handshake ----------------------------------------------------------------------------------------


def test_handshake_from_connecting_connects(integration):
    put(integration, S.CONNECTING)
    mark = event_mark()

    lifecycle.handshake(integration, actor="key:sy_ab12cd")

    assert Integration.objects.get(pk=integration.pk).status == S.CONNECTED
    (event,) = new_events(integration, mark)
    assert (event.data["from"], event.data["to"], event.actor) == (
        S.CONNECTING.value,
        S.CONNECTED.value,
        "key:sy_ab12cd",
    )


def test_handshake_from_error_passes_through_connecting(integration):
    put(integration, S.ERROR)
    mark = event_mark()

    lifecycle.handshake(integration)

    assert Integration.objects.get(pk=integration.pk).status == S.CONNECTED
    events = new_events(integration, mark)
    assert [(e.kind, e.data["from"], e.data["to"]) for e in events] == [
        (EventKind.STATUS_CHANGED, S.ERROR.value, S.CONNECTING.value),
        (EventKind.STATUS_CHANGED, S.CONNECTING.value, S.CONNECTED.value),
    ]


@pytest.mark.parametrize("status", [S.DISABLED, S.NOT_CONFIGURED])
def test_handshake_is_refused_while_disabled_or_not_configured(integration, status):
    put(integration, status)
    before = row(integration)
    mark = event_mark()

    with pytest.raises(TransitionRefused) as refused:
        lifecycle.handshake(integration)

    assert refused.value.code == "transition_refused"
    assert row(integration) == before
    assert new_events(integration, mark) == []


def test_handshake_when_already_connected_changes_nothing(integration):
    put(integration, S.CONNECTED)
    before = row(integration)
    mark = event_mark()

    lifecycle.handshake(integration)

    assert row(integration) == before
    assert new_events(integration, mark) == []


# --- report_error ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.CONNECTING, S.CONNECTED])
def test_report_error_moves_to_error(integration, status):
    put(integration, status)
    mark = event_mark()
    before = timezone.now()

    lifecycle.report_error(integration, "401 from the shop: token revoked.", actor="system")

    stored = Integration.objects.get(pk=integration.pk)
    assert stored.status == S.ERROR
    assert stored.last_error == "401 from the shop: token revoked."
    assert stored.last_error_at >= before
    (event,) = new_events(integration, mark)
    assert (event.kind, event.data["from"], event.data["to"]) == (
        EventKind.STATUS_CHANGED,
        status.value,
        S.ERROR.value,
    )


def test_report_error_while_in_error_updates_last_error_without_an_event(integration):
    # given an integration already in error
    put(integration, S.CONNECTED)
    lifecycle.report_error(integration, "First failure.")
    first_at = Integration.objects.get(pk=integration.pk).last_error_at
    mark = event_mark()

    # when another error is reported
    result = lifecycle.report_error(integration, "Second failure.")

    # then the last error is the new one, in the row and on the returned object, and no status event is written
    stored = Integration.objects.get(pk=integration.pk)
    assert (stored.status, stored.last_error) == (S.ERROR, "Second failure.")
    assert stored.last_error_at >= first_at
    assert (result.last_error, result.last_error_at) == (stored.last_error, stored.last_error_at)
    assert new_events(integration, mark) == []


@pytest.mark.parametrize("status", [S.NOT_CONFIGURED, S.DISABLED])
def test_report_error_is_refused_while_not_configured_or_disabled(integration, status):
    put(integration, status)
    before = row(integration)

    with pytest.raises(TransitionRefused):
        lifecycle.report_error(integration, "Should not count.")

    assert row(integration) == before
