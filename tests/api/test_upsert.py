"""
The create-or-update POSTs (201 when created, 200 when the object existed) are one piece of code,
api.base.UpsertMixin: each endpoint declares who writes and its service call, nothing else.
"""

import inspect

from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator

from api.base import UpsertMixin
from tests.api.helpers import assert_error
from tokens.choices import KeyKind


def upsert_operations() -> dict[str, type]:
    """{path: viewset} of every POST whose documented answers are both 201 and 200."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        path: resolve(path).func.cls
        for path, operations in schema["paths"].items()
        if {"200", "201"} <= set(operations.get("post", {}).get("responses", {}))
    }


def test_every_create_or_update_post_is_the_upsert_mixin():
    operations = upsert_operations()

    assert set(operations) >= {
        "/api/v1/orders",
        "/api/v1/fulfillments",
        "/api/v1/products",
        "/api/v1/exceptions",
    }
    for path, viewset in operations.items():
        assert issubclass(viewset, UpsertMixin), path
        # The mixin's create, not a copy: the viewset declares the body, the writer and the service call.
        # (drf-spectacular wraps it to document it per endpoint; unwrapped, it is the mixin's own.)
        assert inspect.unwrap(viewset.create) is UpsertMixin.create, path
        assert {"upsert_body", "writer", "upsert"} <= set(vars(viewset)), path


def test_the_writer_is_checked_before_the_body_is_read(api_client, issue_key, org, org_admin):
    # An org key has no integration to record as the sender: refused as such, whatever the body holds.
    key = issue_key(kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=["orders:write"])

    response = api_client(key).post("/api/v1/orders", {"lines": "not a list"}, format="json")

    details = assert_error(response, 403, "missing_grant")
    assert details == {"key_kind": ["integration"]}


def test_201_when_created_then_200_with_the_same_object(api_client, issue_key, org, org_admin):
    key = issue_key(kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=["products:write"])
    client = api_client(key)

    first = client.post("/api/v1/products", {"sku": "MUG-1", "name": "Mug"}, format="json")
    again = client.post("/api/v1/products", {"sku": "MUG-1", "name": "Big mug"}, format="json")

    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["name"] == "Big mug"


def test_the_answer_is_the_object_as_get_answers_it(api_client, issue_key, org, org_admin):
    key = issue_key(
        kind=KeyKind.ORG,
        name="org",
        organization=org,
        user=org_admin,
        grants=["products:write", "products:read"],
    )
    client = api_client(key)

    created = client.post("/api/v1/products", {"sku": "MUG-1", "name": "Mug", "price": "8.5"}, format="json")

    assert created.json() == client.get(f"/api/v1/products/{created.json()['id']}").json()
