"""GET|POST /api/v1/exceptions (docs/connectors/contract.md, "Events, exceptions, webhooks"): scoped reads, a
connector's own reports."""

from datetime import timedelta

import pytest
from django.utils import timezone

from automations import exceptions
from automations.choices import ExceptionStatus
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from tests.api.helpers import assert_error
from tokens import issuing as key_services
from tokens.choices import KeyKind

EXCEPTIONS = "/api/v1/exceptions"
FIELDS = {
    "id",
    "kind",
    "message",
    "entity_type",
    "entity_id",
    "status",
    "occurrences",
    "first_seen",
    "last_seen",
}
ALL = ["exceptions:read", "exceptions:write"]


@pytest.fixture
def channel_client(api_client, integration):
    return api_client(
        key_services.issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=ALL)
    )


@pytest.fixture
def org_client(api_client, org, org_admin):
    issued = key_services.issue_key(kind=KeyKind.ORG, name="k", organization=org, user=org_admin, grants=ALL)
    return api_client(issued)


@pytest.fixture
def rows(org, other_org, integration, other_integration, make_integration, channel_connector):
    """One exception each: the channel's, a sibling integration's, the org's own, and Globex's channel's."""
    sibling = make_integration(org, channel_connector, "Sibling shop")
    raise_ = exceptions.raise_exception
    return {
        "own": raise_(
            org, ExceptionKind.UNMAPPED_SKU, "own", integration=integration, entity_type="order", entity_id=1
        ),
        "sibling": raise_(org, ExceptionKind.UNMAPPED_SKU, "sibling", integration=sibling),
        "org": raise_(org, ExceptionKind.STUCK_ORDER, "org-level", entity_type="order", entity_id=2),
        "other_org": raise_(other_org, ExceptionKind.UNMAPPED_SKU, "globex", integration=other_integration),
    }


def ids(response):
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


# --- reading ------------------------------------------------------------------------------------------


def test_integration_key_lists_only_its_own(channel_client, rows):
    response = channel_client.get(EXCEPTIONS)

    assert ids(response) == {str(rows["own"].pk)}
    row = response.json()["results"][0]
    assert set(row) == FIELDS
    assert row == row | {"kind": "unmapped_sku", "message": "own", "entity_type": "order", "entity_id": "1"}
    assert (row["status"], row["occurrences"]) == ("open", 1)
    assert response.json()["next"] is None


def test_org_key_lists_the_organizations(org_client, rows):
    assert ids(org_client.get(EXCEPTIONS)) == {str(rows[k].pk) for k in ("own", "sibling", "org")}


@pytest.mark.parametrize("which", ["sibling", "org", "other_org"])
def test_integration_key_gets_404_for_others(channel_client, rows, which):
    assert_error(channel_client.get(f"{EXCEPTIONS}/{rows[which].pk}"), 404, "not_found")


def test_org_key_gets_404_for_another_organizations(org_client, rows):
    assert_error(org_client.get(f"{EXCEPTIONS}/{rows['other_org'].pk}"), 404, "not_found")
    assert org_client.get(f"{EXCEPTIONS}/{rows['org'].pk}").json()["message"] == "org-level"


def test_retrieve_own(channel_client, rows):
    response = channel_client.get(f"{EXCEPTIONS}/{rows['own'].pk}")

    assert response.status_code == 200
    assert response.json()["id"] == str(rows["own"].pk)


def test_filters_status_kind_updated_since(org_client, rows):
    exceptions.close_exceptions(
        SyncException.objects.filter(pk=rows["sibling"].pk), ExceptionStatus.DISMISSED
    )
    SyncException.objects.filter(pk=rows["own"].pk).update(updated_at=timezone.now() - timedelta(days=2))
    since = (timezone.now() - timedelta(days=1)).isoformat()

    assert ids(org_client.get(EXCEPTIONS, {"status": "dismissed"})) == {str(rows["sibling"].pk)}
    assert ids(org_client.get(EXCEPTIONS, {"status": "open"})) == {str(rows["own"].pk), str(rows["org"].pk)}
    assert ids(org_client.get(EXCEPTIONS, {"kind": "stuck_order"})) == {str(rows["org"].pk)}
    assert ids(org_client.get(EXCEPTIONS, {"updated_since": since})) == {
        str(rows["sibling"].pk),
        str(rows["org"].pk),
    }


@pytest.mark.parametrize("query", [{"status": "gone"}, {"kind": "nope"}, {"updated_since": "yesterday"}])
def test_bad_filters_are_400(org_client, rows, query):
    details = assert_error(org_client.get(EXCEPTIONS, query), 400, "validation_error")

    assert set(details) == set(query)


def test_list_is_newest_change_first_and_paginates(channel_client, org, integration):
    made = [
        exceptions.raise_exception(
            org, ExceptionKind.UNMAPPED_SKU, f"m{i}", integration=integration, entity_id=i
        )
        for i in range(3)
    ]
    exceptions.raise_exception(org, ExceptionKind.UNMAPPED_SKU, "again", integration=integration, entity_id=0)

    first = channel_client.get(EXCEPTIONS, {"limit": 2}).json()
    second = channel_client.get(first["next"]).json()

    order = [row["id"] for row in first["results"] + second["results"]]
    assert order == [str(made[0].pk), str(made[2].pk), str(made[1].pk)]
    assert second["next"] is None


def test_reading_needs_the_grant(api_client, integration, rows):
    client = api_client(
        key_services.issue_key(
            kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=["orders:read"]
        )
    )

    assert assert_error(client.get(EXCEPTIONS), 403, "missing_grant") == {"required": ["exceptions:read"]}
    assert_error(client.get(f"{EXCEPTIONS}/{rows['own'].pk}"), 403, "missing_grant")


def test_list_of_30_runs_a_bounded_number_of_queries(
    channel_client, org, integration, django_assert_max_num_queries
):
    for i in range(30):
        exceptions.raise_exception(
            org, ExceptionKind.UNMAPPED_SKU, f"m{i}", integration=integration, entity_id=i
        )
    channel_client.get(EXCEPTIONS)  # the key's first use writes its last-used time; not the list's cost

    with django_assert_max_num_queries(3):  # the key, the page, the request log row
        response = channel_client.get(EXCEPTIONS)

    assert len(response.json()["results"]) == 30


# --- reporting ----------------------------------------------------------------------------------------


def test_connector_reports_an_exception(channel_client, org, integration):
    body = {"message": "Label printer offline", "entity_type": "order", "entity_id": "1001", "data": {"p": 1}}

    response = channel_client.post(EXCEPTIONS, body, format="json")

    assert response.status_code == 201, response.content
    row = SyncException.objects.get()
    assert response.json() == {
        "id": str(row.pk),
        "kind": "connector_reported",
        "message": "Label printer offline",
        "entity_type": "order",
        "entity_id": "1001",
        "status": "open",
        "occurrences": 1,
        "first_seen": response.json()["first_seen"],
        "last_seen": response.json()["last_seen"],
    }
    assert (row.organization, row.integration, row.data) == (org, integration, {"p": 1})


def test_a_repeated_report_counts_an_occurrence(channel_client):
    first = channel_client.post(
        EXCEPTIONS, {"message": "a", "entity_type": "order", "entity_id": "7"}, format="json"
    )
    again = channel_client.post(
        EXCEPTIONS, {"message": "b", "entity_type": "order", "entity_id": "7"}, format="json"
    )
    other = channel_client.post(
        EXCEPTIONS, {"message": "c", "entity_type": "order", "entity_id": "8"}, format="json"
    )

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"]
    assert (again.json()["occurrences"], again.json()["message"]) == (2, "b")
    assert SyncException.objects.count() == 2


def test_a_report_after_resolution_opens_a_new_one(channel_client):
    first = channel_client.post(EXCEPTIONS, {"message": "a"}, format="json")
    exceptions.close_exceptions(SyncException.objects.all(), ExceptionStatus.RESOLVED)

    again = channel_client.post(EXCEPTIONS, {"message": "a"}, format="json")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] != first.json()["id"]


def test_idempotency_key_replays_the_report(channel_client):
    body = {"message": "once", "entity_id": "1"}

    first = channel_client.post(EXCEPTIONS, body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    replay = channel_client.post(EXCEPTIONS, body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")

    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()
    assert SyncException.objects.get().occurrences == 1


def test_reporting_needs_the_write_grant(api_client, integration):
    client = api_client(
        key_services.issue_key(
            kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=["exceptions:read"]
        )
    )

    response = client.post(EXCEPTIONS, {"message": "x"}, format="json")

    assert assert_error(response, 403, "missing_grant") == {"required": ["exceptions:write"]}
    assert not SyncException.objects.exists()


@pytest.mark.parametrize("kind", [KeyKind.ORG, KeyKind.GLOBAL])
def test_org_and_global_keys_cannot_report(api_client, org, org_admin, superuser, kind):
    # An exception is reported by the integration it belongs to; a key of no integration has none.
    owner = {"organization": org, "user": org_admin} if kind == KeyKind.ORG else {"user": superuser}
    issued = key_services.issue_key(kind=kind, name="k", grants=ALL, **owner)

    response = api_client(issued).post(EXCEPTIONS, {"message": "x"}, format="json")

    assert assert_error(response, 403, "missing_grant") == {"key_kind": ["integration"]}
    assert not SyncException.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": "   "}, "message"),
        ({"message": "x" * 1001}, "message"),
        ({"message": None}, "message"),
        ({"message": "x", "entity_type": "t" * 41}, "entity_type"),
        ({"message": "x", "entity_id": "i" * 101}, "entity_id"),
        ({"message": "x", "data": [1, 2]}, "data"),
        ({"message": "x", "data": "text"}, "data"),
        ({"message": {"nested": 1}}, "message"),
    ],
)
def test_bad_reports_are_400_and_write_nothing(channel_client, body, field):
    response = channel_client.post(EXCEPTIONS, body, format="json")

    assert field in assert_error(response, 400, "validation_error")
    assert not SyncException.objects.exists()


def test_a_report_that_is_not_an_object_is_400(channel_client):
    response = channel_client.post(EXCEPTIONS, ["message"], format="json")

    assert_error(response, 400, "validation_error")
    assert not SyncException.objects.exists()


def test_message_of_1000_characters_is_accepted(channel_client):
    response = channel_client.post(EXCEPTIONS, {"message": "x" * 1000}, format="json")

    assert response.status_code == 201, response.content
