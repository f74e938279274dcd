"""Engine settings in the admin: the form round trip, the org-wide buffer, scoping, statuses and Run now."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from automations.choices import EXCEPTION_CATEGORIES, Engine, RunOutcome, RunTrigger
from automations.engine_settings import engine_settings
from automations.models import EngineSettings, EngineStatus
from console.admin.automations import engines as engines_admin
from inventory import services as inventory_services
from inventory.models import AvailabilityChange, InventoryBuffer
from organizations.models import Organization

CHANGELIST = reverse("admin:automations_enginesettings_changelist")
BOOLEANS = ("hold_enabled", "routing_enabled", "inventory_enabled", "exceptions_enabled", "allow_split")


def change_url(settings):
    return reverse("admin:automations_enginesettings_change", args=[settings.pk])


def run_url(settings, engine):
    return reverse("admin:automations_enginesettings_run", args=[settings.pk, engine])


def form_data(settings, **changes):
    """The change form as a browser posts it: unchecked boxes are absent, empty inputs are ""."""
    values = {
        **{name: getattr(settings, name) for name in BOOLEANS},
        "default_hold_minutes": settings.default_hold_minutes,
        "routing_strategy": settings.routing_strategy,
        "unroutable_retry_minutes": settings.unroutable_retry_minutes,
        "stuck_after_hours": settings.stuck_after_hours,
        "stale_after_days": settings.stale_after_days or "",
        "notify_categories": list(settings.notify_categories),
        "digest_minutes": settings.digest_minutes,
        "buffer_quantity": "",
        "buffer_percent": "",
        **changes,
    }
    return {
        name: ("on" if value is True else value)
        for name, value in values.items()
        if not (name in BOOLEANS and value is False)
    }


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def default_buffer(org):
    return InventoryBuffer.objects.filter(organization=org, location=None, product=None, channel=None).first()


def org_wide_marks(org):
    return AvailabilityChange.objects.filter(organization=org, product=None).count()


@pytest.fixture
def acme_client(admin_client_for, org_admin):
    return admin_client_for(org_admin)


@pytest.fixture
def acme_settings(org):
    return engine_settings(org)


@pytest.fixture
def globex_settings(other_org):
    return engine_settings(other_org)


# --- the form round trip -------------------------------------------------------------------------------


def test_org_admin_switches_an_engine_off_and_changes_parameters(acme_client, acme_settings):
    response = acme_client.post(
        change_url(acme_settings),
        form_data(
            acme_settings,
            routing_enabled=False,
            default_hold_minutes=30,
            routing_strategy="most_stock",
            stale_after_days=7,
            notify_categories=["routing", "mapping"],
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    acme_settings.refresh_from_db()
    assert (acme_settings.routing_enabled, acme_settings.hold_enabled) == (False, True)
    assert (acme_settings.default_hold_minutes, acme_settings.routing_strategy) == (30, "most_stock")
    assert acme_settings.stale_after_days == 7
    assert acme_settings.notify_categories == ["mapping", "routing"]  # kept in the catalogue's order


def test_form_shows_every_notification_category_as_a_checkbox(acme_client, acme_settings):
    html = acme_client.get(change_url(acme_settings)).content.decode()

    for key, (label, _) in EXCEPTION_CATEGORIES.items():
        assert f'type="checkbox" name="notify_categories" value="{key}"' in html
        assert label in html


def test_default_buffer_is_set_changed_and_cleared_through_inventory(acme_client, org, acme_settings):
    # given: no org-wide buffer yet
    marks = org_wide_marks(org)

    # when: a quantity is set, then a percent instead, then neither
    acme_client.post(change_url(acme_settings), form_data(acme_settings, buffer_quantity=5))
    first = default_buffer(org)
    acme_client.post(change_url(acme_settings), form_data(acme_settings, buffer_percent="12.5"))
    second = default_buffer(org)
    acme_client.post(change_url(acme_settings), form_data(acme_settings))

    # then: each change stored on the one org-wide row and the whole organization marked for recompute
    assert (first.quantity, first.percent) == (5, None)
    assert (second.pk, second.quantity, second.percent) == (first.pk, None, Decimal("12.5"))
    assert default_buffer(org) is None
    assert org_wide_marks(org) == marks + 3


def test_saving_without_a_buffer_change_marks_nothing(acme_client, org, acme_settings):
    inventory_services.set_default_buffer(org, quantity=2)
    marks = org_wide_marks(org)

    page = acme_client.get(change_url(acme_settings))
    acme_client.post(change_url(acme_settings), form_data(acme_settings, buffer_quantity=2, digest_minutes=5))

    assert page.context["adminform"].form.initial["buffer_quantity"] == 2
    assert org_wide_marks(org) == marks
    assert EngineSettings.objects.get(pk=acme_settings.pk).digest_minutes == 5


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"buffer_quantity": 3, "buffer_percent": "10"}, "units or a percent, not both"),
        ({"buffer_percent": "100.5"}, "less than or equal to 100"),
        ({"buffer_quantity": -1}, "greater than or equal to 0"),
        ({"unroutable_retry_minutes": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_settings_are_refused_and_nothing_changes(acme_client, org, acme_settings, changes, error):
    response = acme_client.post(change_url(acme_settings), form_data(acme_settings, **changes))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert default_buffer(org) is None
    assert EngineSettings.objects.get(pk=acme_settings.pk).unroutable_retry_minutes == 15


def test_set_default_buffer_refuses_bad_values_and_reports_no_change(org):
    with pytest.raises(ValueError):
        inventory_services.set_default_buffer(org, quantity=1, percent=Decimal("5"))
    with pytest.raises(ValueError):
        inventory_services.set_default_buffer(org, percent=Decimal("101"))

    assert inventory_services.set_default_buffer(org) is False  # nothing to remove
    assert inventory_services.set_default_buffer(org, percent=Decimal("10")) is True
    assert inventory_services.set_default_buffer(org, percent=Decimal("10.00")) is False
    assert org_wide_marks(org) == 1


# --- scoping ----------------------------------------------------------------------------------------------


def test_one_org_admin_goes_straight_to_their_settings_made_on_first_visit(acme_client, org):
    assert not EngineSettings.objects.filter(organization=org).exists()

    response = acme_client.get(CHANGELIST)

    settings = EngineSettings.objects.get(organization=org)
    assert response.status_code == 302 and response["Location"] == change_url(settings)
    assert (settings.hold_enabled, settings.routing_enabled) == (True, True)


def test_other_organizations_settings_are_404(acme_client, acme_settings, globex_settings):
    assert acme_client.get(change_url(globex_settings)).status_code == 404
    assert (
        acme_client.post(
            change_url(globex_settings), form_data(globex_settings, hold_enabled=False)
        ).status_code
        == 404
    )
    assert acme_client.post(run_url(globex_settings, Engine.HOLD)).status_code == 404
    assert EngineSettings.objects.get(pk=globex_settings.pk).hold_enabled is True


def test_member_views_but_cannot_change(admin_client_for, member, org, acme_settings):
    inventory_services.set_default_buffer(org, quantity=4)
    client = admin_client_for(member)

    page = client.get(change_url(acme_settings))
    refused = client.post(change_url(acme_settings), form_data(acme_settings, hold_enabled=False))
    run = client.post(run_url(acme_settings, Engine.HOLD))

    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="_save"' not in html and "sy-run-hold" not in html
    assert "4 units" in html and "Unroutable orders" in html  # the buffer and categories, as words
    assert (refused.status_code, run.status_code) == (403, 403)
    assert EngineSettings.objects.get(pk=acme_settings.pk).hold_enabled is True
    assert not EngineStatus.objects.exists()


def test_superuser_lists_every_organization_and_adds_or_deletes_nothing(
    admin_client_for, superuser, org, other_org, django_assert_max_num_queries
):
    client = admin_client_for(superuser)
    Organization.objects.bulk_create([Organization(name=f"Org {i}", slug=f"org-{i}") for i in range(20)])

    with django_assert_max_num_queries(12):
        page = client.get(CHANGELIST)

    assert page.context["cl"].result_count == 22
    assert EngineSettings.objects.count() == 22
    settings = EngineSettings.objects.get(organization=other_org)
    assert client.get(reverse("admin:automations_enginesettings_add")).status_code == 403
    assert (
        client.post(reverse("admin:automations_enginesettings_delete", args=[settings.pk])).status_code == 403
    )


# --- statuses and Run now --------------------------------------------------------------------------------


def test_each_engine_status_is_shown_beside_its_switch(acme_client, org, acme_settings):
    now = timezone.now()
    EngineStatus.objects.create(
        organization=org,
        engine=Engine.ROUTING,
        last_run_at=now,
        last_trigger=RunTrigger.SCHEDULE,
        last_outcome=RunOutcome.FAILED,
        last_duration_ms=42,
        last_counts={"routed": 3},
        last_error="OperationalError: deadlock detected",
        last_error_at=now,
    )

    html = acme_client.get(change_url(acme_settings)).content.decode()

    assert 'class="sy-badge sy-badge-red" data-status="failed"' in html
    assert "3 routed" in html and "42 ms" in html
    assert "Last error" in html and "deadlock detected" in html
    assert html.count("Not run yet.") == 3  # hold, inventory, exceptions


def test_run_now_queues_the_engine_and_the_worker_records_its_run(
    acme_client, org, acme_settings, monkeypatch
):
    queued = []
    monkeypatch.setattr(
        engines_admin, "enqueue", lambda task, **options: queued.append((task, options)) or True
    )

    response = acme_client.post(run_url(acme_settings, Engine.HOLD))

    assert response.status_code == 302 and response["Location"] == change_url(acme_settings)
    [(level, text)] = messages_of(response)
    assert level == "success" and text.startswith("Queued the Hold engine for Acme Outfitters")
    [(task, options)] = queued
    assert not EngineStatus.objects.exists()  # nothing ran in the request
    # when a worker runs the task
    task.apply(**options)
    status = EngineStatus.objects.get(organization=org, engine=Engine.HOLD)
    assert (status.last_outcome, status.last_trigger, status.runs) == (RunOutcome.OK, RunTrigger.ADMIN, 1)


def test_run_now_with_the_broker_down_says_how_to_run_it(acme_client, acme_settings, monkeypatch):
    monkeypatch.setattr(engines_admin, "enqueue", lambda task, **options: False)

    [(level, text)] = messages_of(acme_client.post(run_url(acme_settings, Engine.ROUTING)))

    assert level == "error" and "manage.py run_engine routing --org acme" in text


def test_run_now_of_a_switched_off_engine_runs_nothing(acme_client, org, acme_settings):
    EngineSettings.objects.filter(pk=acme_settings.pk).update(exceptions_enabled=False)

    response = acme_client.post(run_url(acme_settings, Engine.EXCEPTIONS))

    assert messages_of(response) == [
        ("warning", "The Exceptions engine is switched off for Acme Outfitters: nothing ran.")
    ]
    assert not EngineStatus.objects.exists()


def test_run_now_needs_post_and_a_known_engine(acme_client, acme_settings):
    assert acme_client.get(run_url(acme_settings, Engine.HOLD)).status_code == 405
    assert acme_client.post(run_url(acme_settings, "teleport")).status_code == 404
    assert not EngineStatus.objects.exists()


def test_run_now_buttons_post_with_csrf(acme_client, acme_settings):
    html = acme_client.get(change_url(acme_settings)).content.decode()

    for engine in Engine.values:
        assert f'action="{run_url(acme_settings, engine)}"' in html
        assert f'id="sy-run-{engine}"' in html
    assert html.count("csrfmiddlewaretoken") >= 5
