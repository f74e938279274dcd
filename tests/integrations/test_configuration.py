"""
Settings drive the lifecycle (docs/architecture.md, "Integration lifecycle"): creating and saving an
integration through `configuration` moves it between not_configured and connecting, and re-checks a connected
one whose settings changed.
"""

import pytest
from django.core.exceptions import ValidationError

from integrations import configuration, connector_settings, lifecycle
from integrations.choices import EventKind, IntegrationStatus
from integrations.models import Integration
from tests.fixtures.integrations import GOOD_SETTINGS
from tests.integrations.statuses import event_mark, new_events, put, row

S = IntegrationStatus


# --- settings drive the lifecycle -------------------------------------------------------------------------------


def test_sync_configuration_status_moves_complete_not_configured_to_connecting(incomplete_integration):
    # given required settings that arrived without going through save_integration
    Integration.objects.filter(pk=incomplete_integration.pk).update(settings=dict(GOOD_SETTINGS))
    incomplete_integration.refresh_from_db()
    mark = event_mark()

    # when
    lifecycle.sync_configuration_status(incomplete_integration)

    # then
    assert Integration.objects.get(pk=incomplete_integration.pk).status == S.CONNECTING
    (event,) = new_events(incomplete_integration, mark)
    assert (event.data["from"], event.data["to"]) == (S.NOT_CONFIGURED.value, S.CONNECTING.value)


@pytest.mark.parametrize("status", [S.CONNECTING, S.CONNECTED, S.ERROR])
def test_sync_configuration_status_moves_incomplete_to_not_configured(strict_integration, status):
    # given a required setting that disappeared
    put(strict_integration, status)
    Integration.objects.filter(pk=strict_integration.pk).update(settings={"api_token": "tok-12345678"})
    strict_integration.refresh_from_db()
    mark = event_mark()

    # when
    lifecycle.sync_configuration_status(strict_integration)

    # then
    stored = Integration.objects.get(pk=strict_integration.pk)
    assert stored.status == S.NOT_CONFIGURED
    assert "base_url" in stored.status_reason  # the reason names the missing setting
    (event,) = new_events(strict_integration, mark)
    assert (event.data["from"], event.data["to"]) == (status.value, S.NOT_CONFIGURED.value)


@pytest.mark.parametrize(
    ("status", "settings"),
    [
        (S.DISABLED, {}),
        (S.DISABLED, GOOD_SETTINGS),
        (S.NOT_CONFIGURED, {}),
        (S.CONNECTING, GOOD_SETTINGS),
        (S.CONNECTED, GOOD_SETTINGS),
        (S.ERROR, GOOD_SETTINGS),
    ],
    ids=["disabled-empty", "disabled-complete", "not_configured-empty", "connecting", "connected", "error"],
)
def test_sync_configuration_status_leaves_consistent_states_alone(strict_integration, status, settings):
    put(strict_integration, status)
    Integration.objects.filter(pk=strict_integration.pk).update(settings=dict(settings))
    strict_integration.refresh_from_db()
    before = row(strict_integration)
    mark = event_mark()

    lifecycle.sync_configuration_status(strict_integration)

    assert row(strict_integration) == before
    assert new_events(strict_integration, mark) == []


def test_create_with_complete_settings_goes_to_connecting(org, strict_connector, org_admin):
    integration = configuration.create_integration(
        org, strict_connector, "Fresh shop", settings=dict(GOOD_SETTINGS), actor=org_admin
    )

    assert Integration.objects.get(pk=integration.pk).status == S.CONNECTING
    events = list(integration.events.order_by("pk"))
    assert [e.kind for e in events] == [EventKind.CREATED, EventKind.STATUS_CHANGED]
    assert (events[1].data["from"], events[1].data["to"]) == (S.NOT_CONFIGURED.value, S.CONNECTING.value)
    assert all(e.actor_user == org_admin for e in events)


def test_create_without_required_settings_stays_not_configured(org, strict_connector):
    integration = configuration.create_integration(org, strict_connector, "Fresh shop")

    assert Integration.objects.get(pk=integration.pk).status == S.NOT_CONFIGURED
    assert [e.kind for e in integration.events.all()] == [EventKind.CREATED]


def test_create_of_connector_without_required_settings_goes_to_connecting(org, channel_connector):
    integration = configuration.create_integration(org, channel_connector, "Custom shop")

    assert Integration.objects.get(pk=integration.pk).status == S.CONNECTING


def test_saving_complete_settings_on_not_configured_moves_to_connecting(incomplete_integration, org_admin):
    mark = event_mark()

    configuration.save_integration(incomplete_integration, settings=dict(GOOD_SETTINGS), actor=org_admin)

    stored = Integration.objects.get(pk=incomplete_integration.pk)
    assert (stored.status, connector_settings.full_settings(stored)) == (S.CONNECTING, GOOD_SETTINGS)
    events = new_events(incomplete_integration, mark)
    assert [e.kind for e in events] == [EventKind.CONFIG_CHANGED, EventKind.STATUS_CHANGED]
    assert (events[1].data["from"], events[1].data["to"]) == (S.NOT_CONFIGURED.value, S.CONNECTING.value)


def test_removing_a_required_setting_on_connected_moves_to_not_configured(strict_integration):
    # given a connected integration
    put(strict_integration, S.CONNECTED)
    mark = event_mark()

    # when base_url is left out (the blank secret keeps the stored token)
    configuration.save_integration(
        strict_integration, settings={"api_token": "", "page_size": 50}, require_complete=False
    )

    # then it is not configured any more, and the event says which setting changed
    stored = Integration.objects.get(pk=strict_integration.pk)
    assert stored.status == S.NOT_CONFIGURED
    assert connector_settings.full_settings(stored) == {"api_token": "tok-12345678", "page_size": 50}
    events = new_events(strict_integration, mark)
    assert [e.kind for e in events] == [EventKind.CONFIG_CHANGED, EventKind.STATUS_CHANGED]
    assert events[0].data["settings"] == ["base_url"]
    assert (events[1].data["from"], events[1].data["to"]) == (S.CONNECTED.value, S.NOT_CONFIGURED.value)


def test_removing_a_required_setting_is_refused_when_completeness_is_required(strict_integration):
    put(strict_integration, S.CONNECTED)
    before = row(strict_integration)
    mark = event_mark()

    with pytest.raises(ValidationError) as invalid:
        configuration.save_integration(strict_integration, settings={"api_token": "", "page_size": 50})

    assert set(invalid.value.message_dict) == {"base_url"}
    assert row(strict_integration) == before
    assert new_events(strict_integration, mark) == []


@pytest.mark.parametrize("status", [S.CONNECTED, S.ERROR])
def test_changing_settings_on_connected_or_error_rechecks_the_connection(strict_integration, status):
    put(strict_integration, status)
    mark = event_mark()

    configuration.save_integration(strict_integration, settings={**GOOD_SETTINGS, "page_size": 100})

    stored = Integration.objects.get(pk=strict_integration.pk)
    assert (stored.status, stored.settings["page_size"]) == (S.CONNECTING, 100)
    events = new_events(strict_integration, mark)
    assert [e.kind for e in events] == [EventKind.CONFIG_CHANGED, EventKind.STATUS_CHANGED]
    assert events[0].data["settings"] == ["page_size"]
    assert (events[1].data["from"], events[1].data["to"]) == (status.value, S.CONNECTING.value)


def test_saving_unchanged_settings_on_connected_keeps_it_connected(strict_integration):
    put(strict_integration, S.CONNECTED)
    mark = event_mark()

    # a blank secret means "keep the stored one": nothing changed
    configuration.save_integration(strict_integration, settings={**GOOD_SETTINGS, "api_token": ""})

    assert Integration.objects.get(pk=strict_integration.pk).status == S.CONNECTED
    assert new_events(strict_integration, mark) == []


def test_saving_an_unticked_box_where_nothing_was_stored_keeps_it_connected(strict_integration):
    # given a connected integration whose settings never named the boolean `dry_run` (unset: false)
    put(strict_integration, S.CONNECTED)
    assert "dry_run" not in strict_integration.settings
    mark = event_mark()

    # when the admin's form saves it unchanged: an unticked box arrives as false
    configuration.save_integration(strict_integration, settings={**GOOD_SETTINGS, "dry_run": False})

    # then nothing changed: still connected, no event; ticking it is a change, and re-checks the connection
    assert Integration.objects.get(pk=strict_integration.pk).status == S.CONNECTED
    assert new_events(strict_integration, mark) == []
    configuration.save_integration(strict_integration, settings={**GOOD_SETTINGS, "dry_run": True})
    assert Integration.objects.get(pk=strict_integration.pk).status == S.CONNECTING
    assert new_events(strict_integration, mark)[0].data["settings"] == ["dry_run"]


def test_changing_settings_while_disabled_keeps_it_disabled(strict_integration):
    put(strict_integration, S.DISABLED)
    mark = event_mark()

    configuration.save_integration(strict_integration, settings={**GOOD_SETTINGS, "page_size": 100})

    assert Integration.objects.get(pk=strict_integration.pk).status == S.DISABLED
    assert [e.kind for e in new_events(strict_integration, mark)] == [EventKind.CONFIG_CHANGED]


@pytest.mark.parametrize("moved_to", [S.DISABLED, S.ERROR])
def test_saving_a_stale_object_does_not_undo_a_status_move(strict_integration, moved_to):
    # given an edit form holding the integration while it was connected, and a move made meanwhile elsewhere
    put(strict_integration, S.CONNECTED)
    stale = Integration.objects.get(pk=strict_integration.pk)
    lifecycle.transition(strict_integration, moved_to, reason="Moved while the form was open.")
    mark = event_mark()

    # when the form saves unrelated fields (mappings only)
    configuration.save_integration(stale, mappings={"locations": {"A": "B"}})

    # then the move made meanwhile stands, and the trail records no move it did not make
    stored = Integration.objects.get(pk=strict_integration.pk)
    assert (stored.status, stored.status_reason) == (moved_to, "Moved while the form was open.")
    assert stored.mappings == {"locations": {"A": "B"}}
    assert new_events(strict_integration, mark) == []


def test_settings_saved_from_a_stale_object_do_not_re_enable_a_disabled_integration(strict_integration):
    # given an edit form opened while connected, and the integration disabled meanwhile
    put(strict_integration, S.CONNECTED)
    stale = Integration.objects.get(pk=strict_integration.pk)
    lifecycle.disable(strict_integration, reason="Disabled while the form was open.")
    mark = event_mark()

    # when the form saves changed settings
    configuration.save_integration(stale, settings={**GOOD_SETTINGS, "page_size": 7})

    # then the settings are stored but the integration stays disabled, with no status event
    stored = Integration.objects.get(pk=strict_integration.pk)
    assert (stored.status, stored.settings["page_size"]) == (S.DISABLED, 7)
    assert [e.kind for e in new_events(strict_integration, mark)] == [EventKind.CONFIG_CHANGED]
