"""The exceptions admin: scoped, read-only records with resolve / dismiss actions."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from guardian.shortcuts import assign_perm

from automations import exceptions
from automations.choices import ExceptionStatus
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind

CHANGELIST = reverse("admin:automations_syncexception_changelist")


def change_url(exc):
    return reverse("admin:automations_syncexception_change", args=[exc.pk])


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def act(client, name, rows):
    return client.post(CHANGELIST, {"action": name, "_selected_action": [r.pk for r in rows]})


@pytest.fixture
def acme_client(admin_client_for, org_admin):
    return admin_client_for(org_admin)


@pytest.fixture
def unmapped(org, integration):
    return exceptions.raise_exception(
        org,
        ExceptionKind.UNMAPPED_SKU,
        "Order #1001: unmapped SKU SHOP-42.",
        integration=integration,
        entity_type="order",
        entity_id=7,
    )


@pytest.fixture
def unknown(org):
    return exceptions.raise_exception(
        org, ExceptionKind.UNKNOWN_SKU, "Stock push named 1 unknown SKU(s): NOPE"
    )


@pytest.fixture
def globex_exception(other_org, other_integration):
    return exceptions.raise_exception(
        other_org, ExceptionKind.INTEGRATION_ERROR, "Globex shop answered 500", integration=other_integration
    )


def test_changelist_is_scoped_and_other_orgs_exception_is_404(
    acme_client, unmapped, unknown, globex_exception
):
    page = acme_client.get(CHANGELIST)

    assert page.status_code == 200
    assert {e.pk for e in page.context["cl"].result_list} == {unmapped.pk, unknown.pk}
    assert b"Globex" not in page.content
    assert acme_client.get(change_url(globex_exception)).status_code == 404


def test_changelist_shows_badge_entity_link_and_excerpt(acme_client, unmapped):
    html = acme_client.get(CHANGELIST).content.decode()

    assert 'class="sy-badge sy-badge-red" data-status="open"' in html
    assert f'href="{reverse("admin:orders_order_change", args=[7])}"' in html
    assert "unmapped SKU SHOP-42" in html


def test_filter_by_integration(acme_client, unmapped, unknown, integration):
    page = acme_client.get(CHANGELIST, {"integration__id__exact": integration.pk})

    assert [e.pk for e in page.context["cl"].result_list] == [unmapped.pk]


def test_detail_is_read_only(acme_client, unmapped):
    page = acme_client.get(change_url(unmapped))

    assert page.status_code == 200 and "SHOP-42" in page.content.decode()
    assert acme_client.post(change_url(unmapped), {"status": "resolved"}).status_code == 403
    assert acme_client.get(reverse("admin:automations_syncexception_add")).status_code == 403
    assert SyncException.objects.get(pk=unmapped.pk).status == ExceptionStatus.OPEN


def test_resolve_selected_ignores_other_orgs_rows(acme_client, unmapped, unknown, globex_exception):
    response = act(acme_client, "resolve_selected", [unmapped, unknown, globex_exception])

    assert ("success", "Resolved 2 exceptions.") in messages_of(response)
    statuses = dict(SyncException.objects.values_list("pk", "status"))
    assert statuses == {
        unmapped.pk: ExceptionStatus.RESOLVED,
        unknown.pk: ExceptionStatus.RESOLVED,
        globex_exception.pk: ExceptionStatus.OPEN,
    }
    assert SyncException.objects.get(pk=unmapped.pk).resolved_at is not None


def test_dismiss_leaves_closed_ones_alone(acme_client, unmapped, unknown):
    exceptions.resolve(unknown.organization, unknown.kind)  # closed by the engine

    response = act(acme_client, "dismiss_selected", [unmapped, unknown])

    assert messages_of(response) == [
        ("success", "Dismissed 1 exception."),
        ("warning", "1 not open (or not yours to change): left as they were."),
    ]
    assert SyncException.objects.get(pk=unmapped.pk).status == ExceptionStatus.DISMISSED
    assert SyncException.objects.get(pk=unknown.pk).status == ExceptionStatus.RESOLVED


def test_member_sees_and_resolves_exceptions_of_their_integration(
    admin_client_for, member, integration, unmapped, unknown
):
    assign_perm("integrations.view_integration", member, integration)
    client = admin_client_for(member)

    page = client.get(CHANGELIST)
    refused = act(client, "resolve_selected", [unmapped])

    assert [e.pk for e in page.context["cl"].result_list] == [unmapped.pk]
    assert SyncException.objects.get(pk=unmapped.pk).status == ExceptionStatus.OPEN  # view only
    assert messages_of(refused) == [("warning", "1 not open (or not yours to change): left as they were.")]

    assign_perm("integrations.change_integration", member, integration)
    act(admin_client_for(member), "resolve_selected", [unmapped])

    assert SyncException.objects.get(pk=unmapped.pk).status == ExceptionStatus.RESOLVED


@pytest.mark.parametrize("count", [3, 30])
def test_changelist_query_count_is_bounded(
    acme_client, org, integration, count, django_assert_max_num_queries
):
    for i in range(count):
        exceptions.raise_exception(
            org,
            ExceptionKind.UNMAPPED_SKU,
            f"unmapped SKU S{i}",
            integration=integration,
            entity_type="order",
            entity_id=i,
        )

    with django_assert_max_num_queries(9):
        page = acme_client.get(CHANGELIST)

    assert page.context["cl"].result_count == count


# --- category and integration filters, the e-mailed column ----------------------------------------------


def test_filter_by_category_takes_all_its_kinds(acme_client, org, integration, unmapped, unknown):
    method = exceptions.raise_exception(
        org, ExceptionKind.UNMAPPED_SHIPPING_METHOD, "unmapped method", integration=integration, entity_id=8
    )
    dead = exceptions.raise_exception(org, ExceptionKind.DELIVERY_DEAD, "dead", integration=integration)

    mapping = acme_client.get(CHANGELIST, {"category": "mapping"})
    delivery = acme_client.get(CHANGELIST, {"category": "delivery"})

    assert {e.pk for e in mapping.context["cl"].result_list} == {unmapped.pk, unknown.pk, method.pk}
    assert [e.pk for e in delivery.context["cl"].result_list] == [dead.pk]
    assert "Unmapped SKU or shipping method" in mapping.content.decode()


def test_integration_filter_lists_only_own_integrations_with_open_counts(
    acme_client, org, integration, warehouse_integration, unmapped, globex_exception
):
    exceptions.raise_exception(org, ExceptionKind.DELIVERY_DEAD, "dead", integration=integration)
    closed = exceptions.raise_exception(
        org, ExceptionKind.DELIVERY_DEAD, "x", integration=warehouse_integration
    )
    exceptions.close_exceptions(SyncException.objects.filter(pk=closed.pk), ExceptionStatus.DISMISSED)

    page = acme_client.get(CHANGELIST)

    (spec,) = [s for s in page.context["cl"].filter_specs if s.title == "integration"]
    assert [label for _, label in spec.lookup_choices] == ["Acme 3PL (0 open)", "Acme web shop (2 open)"]
    assert "Globex web shop" not in page.content.decode()


def test_another_orgs_integration_in_the_filter_url_shows_nothing_of_theirs(
    acme_client, unmapped, globex_exception, other_integration
):
    page = acme_client.get(CHANGELIST, {"integration__id__exact": other_integration.pk})

    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == []
    assert b"Globex" not in page.content


def test_e_mailed_column(acme_client, unmapped, unknown):
    SyncException.objects.filter(pk=unmapped.pk).update(notified_at=unmapped.last_seen)

    html = acme_client.get(CHANGELIST).content.decode()

    assert 'data-status="notified">e-mailed</span>' in html
    assert 'data-status="not_notified">not yet</span>' in html


def test_bulk_action_by_another_org_admin_leaves_our_rows_alone(
    admin_client_for, other_admin, unmapped, globex_exception
):
    response = act(admin_client_for(other_admin), "dismiss_selected", [unmapped, globex_exception])

    assert ("success", "Dismissed 1 exception.") in messages_of(response)
    assert SyncException.objects.get(pk=unmapped.pk).status == ExceptionStatus.OPEN
    assert SyncException.objects.get(pk=globex_exception.pk).status == ExceptionStatus.DISMISSED
