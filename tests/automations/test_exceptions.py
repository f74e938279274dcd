"""
The exceptions engine's records: automations.exceptions (the keeper core.sync_exceptions calls) deduplicates by
cause, resolve clears.
"""

import pytest

from automations import exceptions
from automations.choices import ExceptionStatus
from automations.models import SyncException
from core import sync_exceptions
from core.sync_exceptions import ExceptionKind

KIND = ExceptionKind.UNMAPPED_SKU


@pytest.fixture
def raise_for(org, integration):
    """`raise_for(entity_id, message=…, **overrides)` → raise_exception for an order of `integration`."""

    def go(entity_id="1", message="Order 1: unmapped SKU X.", **overrides):
        kwargs = {"integration": integration, "entity_type": "order", "entity_id": entity_id, **overrides}
        return exceptions.raise_exception(org, KIND, message, **kwargs)

    return go


def test_first_occurrence_opens_an_exception(raise_for, org, integration):
    exc = raise_for(data={"sku": "X"})

    assert (exc.organization, exc.integration, exc.kind, exc.entity_type, exc.entity_id) == (
        org,
        integration,
        KIND,
        "order",
        "1",
    )
    assert (exc.status, exc.occurrences, exc.data) == (ExceptionStatus.OPEN, 1, {"sku": "X"})


def test_recurrence_counts_on_the_open_row(raise_for):
    first = raise_for()

    again = raise_for(message="Order 1: unmapped SKU X, Y.")
    raise_for()

    again.refresh_from_db()
    assert again.pk == first.pk
    assert SyncException.objects.count() == 1
    assert again.occurrences == 3
    assert again.last_seen > first.last_seen and again.first_seen == first.first_seen
    assert again.updated_at > first.updated_at  # `updated_since` lists must see the recurrence


def test_each_cause_has_its_own_row(raise_for, org, other_org, warehouse_integration):
    raise_for("1")
    raise_for("2")
    raise_for("1", integration=warehouse_integration)
    raise_for("1", integration=None)
    raise_for("1", entity_type="product")
    exceptions.raise_exception(
        org, ExceptionKind.UNMAPPED_SHIPPING_METHOD, "m", entity_type="order", entity_id=1
    )
    exceptions.raise_exception(other_org.pk, KIND, "m", entity_type="order", entity_id=1)

    assert SyncException.objects.filter(status=ExceptionStatus.OPEN).count() == 7
    assert set(SyncException.objects.values_list("occurrences", flat=True)) == {1}


def test_an_exception_without_integration_deduplicates_too(org):
    for _ in range(2):
        exceptions.raise_exception(
            org.pk, ExceptionKind.STUCK_ORDER, "stuck", entity_type="order", entity_id=7
        )

    assert SyncException.objects.get().occurrences == 2


def test_resolve_closes_the_open_row(raise_for, org, integration):
    exc = raise_for()

    count = exceptions.resolve(org, KIND, integration=integration, entity_type="order", entity_id=1)

    assert count == 1
    resolved = SyncException.objects.get(pk=exc.pk)
    assert resolved.status == ExceptionStatus.RESOLVED and resolved.resolved_at is not None
    assert resolved.updated_at > exc.updated_at


def test_resolve_only_touches_its_cause(raise_for, org, integration):
    raise_for("1")
    raise_for("2")

    assert exceptions.resolve(org.pk, KIND, integration=integration, entity_type="order", entity_id="2") == 1
    assert exceptions.resolve(org.pk, KIND, integration=integration, entity_type="order", entity_id="3") == 0

    statuses = dict(SyncException.objects.values_list("entity_id", "status"))
    assert statuses == {"1": ExceptionStatus.OPEN, "2": ExceptionStatus.RESOLVED}


def test_a_resolved_cause_that_recurs_opens_a_new_row(raise_for, org, integration):
    first = raise_for()
    raise_for()
    exceptions.resolve(org, KIND, integration=integration, entity_type="order", entity_id="1")

    second = raise_for()

    assert second.pk != first.pk
    assert (second.status, second.occurrences) == (ExceptionStatus.OPEN, 1)
    first.refresh_from_db()
    assert (first.status, first.occurrences) == (ExceptionStatus.RESOLVED, 2)


def test_a_dismissed_exception_is_not_counted_again(raise_for):
    first = raise_for()
    SyncException.objects.filter(pk=first.pk).update(status=ExceptionStatus.DISMISSED)

    second = raise_for()

    assert second.pk != first.pk
    assert SyncException.objects.get(pk=first.pk).occurrences == 1


def test_every_app_raises_and_resolves_through_core_sync_exceptions(org, integration):
    raised = sync_exceptions.raise_exception(
        org, KIND, "SKU X", integration=integration, entity_type="order", entity_id=1
    )
    again = sync_exceptions.raise_exception(
        org.pk, KIND, "SKU X", integration=integration, entity_type="order", entity_id="1"
    )

    assert (raised.pk, SyncException.objects.get(pk=raised.pk).occurrences) == (again.pk, 2)
    assert (
        sync_exceptions.resolve_exception(
            org, KIND, integration=integration, entity_type="order", entity_id=1
        )
        == 1
    )
    assert SyncException.objects.get(pk=raised.pk).status == ExceptionStatus.RESOLVED
