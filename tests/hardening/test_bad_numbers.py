"""
Ids and numbers from clients are read strictly (#14, finding 4): Unicode digits ("²", "①", "٣"), signs,
spaces, exponents, hex, zero and numbers past bigint answer 404 `not_found` in a path and 400
`validation_error` in a query or a body — never a 500, and never another object ("٣" used to read id 3).

The routes and fields come from the URL resolver and the OpenAPI document: a new id or number in a path, a
query or a body fails `test_every_id_and_number_of_the_schema_is_covered` until it is listed here.
"""

import json
import re
import sqlite3
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.db import models
from drf_spectacular.generators import SchemaGenerator

from core.ids import MAX_ID, parse_count, parse_id
from integrations.models import Integration
from orders import services as order_services
from tests.api.helpers import api_routes, assert_error
from tokens import grants
from tokens import issuing as key_services
from tokens.choices import KeyKind

BAD = ["²", "①", "٣", "9223372036854775808", "-1", "0", "1e3", " 1", "0x10"]
# As JSON numbers, where a body takes one: out of range for any id or count (0 is a count, not an id).
BAD_NUMBERS = [2**63, 10**30, -1, 1.5, True]


# --- the parser -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        *BAD,
        *BAD_NUMBERS,
        0,
        "",
        "1 ",
        "1\n",
        "+1",
        "01",
        "1.0",
        "１",
        "1_000",
        "9" * 5000,
        None,
        [1],
        "1" * 20,
    ],
)
def test_parse_id_refuses_anything_but_a_canonical_ascii_id(value):
    assert parse_id(value) is None


@pytest.mark.parametrize(
    ("value", "expected"), [("1", 1), ("42", 42), (str(MAX_ID), MAX_ID), (7, 7), (MAX_ID, MAX_ID)]
)
def test_parse_id_reads_ids(value, expected):
    assert parse_id(value) == expected


def test_parse_count_caps_big_counts_and_refuses_the_rest():
    assert [parse_count(v, 500) for v in ["1", "500", "501", str(10**30), "9" * 5000]] == [
        1,
        500,
        500,
        500,
        500,
    ]
    assert [parse_count(v, 500) for v in [*BAD[:3], "-1", "0", "00", "07", " 5", "5 ", "1e3"]] == [None] * 10


def test_every_id_parse_id_accepts_fits_sqlite_and_the_next_one_would_not():
    """The overflow was seen on SQLite (the suite runs on PostgreSQL): its integer is the bound."""
    database = sqlite3.connect(":memory:")
    database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    database.execute("INSERT INTO t VALUES (?)", (parse_id(str(MAX_ID)),))
    with pytest.raises(OverflowError):
        database.execute("SELECT * FROM t WHERE id = ?", (MAX_ID + 1,))
    assert parse_id(str(MAX_ID + 1)) is None


# --- the API ----------------------------------------------------------------------------------------------


@dataclass
class Scene:
    channel: object  # API clients
    tpl: object
    shipping_request: object
    warehouse: object
    webhook: str  # the id of one of the channel's webhook subscriptions


@pytest.fixture
def scene(
    integration, warehouse_integration, warehouse, stock, products, standard_method, order_body, api_client
):
    flows = {f.name: True for f in Integration._meta.fields if f.name.startswith("flow_")}
    Integration.objects.filter(pk__in=[integration.pk, warehouse_integration.pk]).update(**flows)
    order, _ = order_services.ingest_order(integration, order_body)
    shipping_request = order_services.create_shipping_request(order_services.make_ready(order), warehouse)

    def client(target):
        issued = key_services.issue_key(
            kind=KeyKind.INTEGRATION, name=f"{target.name} key", integration=target, grants=grants.GRANTS
        )
        return api_client(issued)

    channel = client(integration)
    hook = channel.post(
        "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["order.created"]}, format="json"
    )
    assert hook.status_code == 201, hook.content
    return Scene(channel, client(warehouse_integration), shipping_request, warehouse, hook.json()["id"])


PATH_ROUTES = [route for route in api_routes() if route.params]


def test_the_routes_with_an_id_in_the_path_are_found():
    assert {"api:order-detail", "api:product-detail", "api:webhook-detail"} <= {r.name for r in PATH_ROUTES}


@pytest.mark.parametrize("route", PATH_ROUTES, ids=lambda r: r.name)
def test_a_bad_id_in_the_path_is_404(scene, route):
    for value in BAD:
        url = route.url().replace("/1", "/" + quote(value), 1)
        assert url != route.url(), url
        for method in route.methods:
            response = scene.channel.generic(method, url, b"{}", content_type="application/json")
            assert_error(response, 404, "not_found")


def test_a_unicode_digit_in_the_path_no_longer_names_another_object(scene, products):
    # int("٣") == 3: the product with id 3 was served under /products/٣.
    assert scene.channel.get(f"/api/v1/products/{products['MUG'].pk}").status_code == 200
    arabic = str(products["MUG"].pk).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert_error(scene.channel.get(f"/api/v1/products/{quote(arabic)}"), 404, "not_found")


# Query parameters and body fields that are ids or numbers, as the OpenAPI document describes them: an
# integer, or a string whose description names an id. (method, path, "query" | "body", dotted name).
ID_WORD = re.compile(r"\bid\b", re.IGNORECASE)
# Ids that belong to the client (any text it likes), not to the hub.
FREE_FORM = {
    ("GET", "/api/v1/orders", "query", "external_id"),
    ("POST", "/api/v1/orders", "body", "external_id"),
    ("POST", "/api/v1/fulfillments", "body", "external_id"),
    ("POST", "/api/v1/exceptions", "body", "entity_id"),
}


def _schema_fields():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]

    def properties(node, prefix=""):
        if "$ref" in node:
            node = components[node["$ref"].rsplit("/", 1)[-1]]
        for name, prop in node.get("properties", {}).items():
            yield prefix + name, prop
            inner = prop.get("items", prop) if prop.get("type") == "array" else prop
            if "$ref" in inner or "properties" in inner:
                yield from properties(inner, f"{prefix}{name}.")

    def kind(name, prop) -> str | None:
        prop = components[prop["$ref"].rsplit("/", 1)[-1]] if "$ref" in prop else prop
        if prop.get("type") == "integer":
            return "number"
        if prop.get("type") == "string" and ID_WORD.search(f"{name} {prop.get('description', '')}"):
            return "id"
        return None

    found = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                described = {**parameter["schema"], "description": parameter.get("description", "")}
                if parameter["in"] == "query" and (what := kind(parameter["name"], described)):
                    found.add((method.upper(), path, "query", parameter["name"], what))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for name, prop in properties(body["schema"]) if body else ():
                if not prop.get("readOnly") and (what := kind(name.rsplit(".", 1)[-1], prop)):
                    found.add((method.upper(), path, "body", name, what))
    return {field for field in found if field[:4] not in FREE_FORM}


def _order(s):
    return {
        "external_id": "N-1",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "X", "country": "US"},
        "lines": [{"sku": "MUG", "quantity": 1, "unit_price": "1.00"}],
    }


def _fulfillment(s):
    return {"shipping_request": str(s.shipping_request.pk), "lines": [{"sku": "MUG", "quantity": 1}]}


def _stock(s):
    return {"location": str(s.warehouse.pk), "items": [{"sku": "MUG", "on_hand": 3}]}


def _location(s):
    return {"name": "North", "kind": "3pl", "priority": 5}


# (who sends it, a valid body whose field is replaced): the valid body alone goes through.
BODIES = {
    "/api/v1/orders": ("channel", _order),
    "/api/v1/fulfillments": ("tpl", _fulfillment),
    "/api/v1/inventory": ("tpl", _stock),
    "/api/v1/locations": ("tpl", _location),
    "/api/v1/webhooks/{id}/rotate-secret": ("channel", lambda s: {"overlap_hours": 1}),
}
# The object each path's {id} names in these tests.
PATH_IDS = {
    "/api/v1/webhooks/{id}/deliveries": lambda s: s.webhook,
    "/api/v1/webhooks/{id}/rotate-secret": lambda s: s.webhook,
}
# Lists only one kind of key reads.
QUERY_KEY = {"/api/v1/shipping-requests": "tpl", "/api/v1/inventory": "tpl"}
# Query parameters a number is read with (the feed's after_sequence counts within one object).
QUERY_CONTEXT = {"/api/v1/webhook-events": {"object_type": "order", "object_id": "1"}}
FIELDS = sorted(_schema_fields())


def test_every_id_and_number_of_the_schema_is_covered():
    assert ("GET", "/api/v1/inventory", "query", "location", "id") in FIELDS
    assert ("POST", "/api/v1/fulfillments", "body", "shipping_request", "id") in FIELDS
    assert ("POST", "/api/v1/inventory", "body", "location", "id") in FIELDS
    assert ("POST", "/api/v1/orders", "body", "lines.quantity", "number") in FIELDS
    for method, path, where, *_ in FIELDS:
        assert (where == "query" and method == "GET") or (method == "POST" and path in BODIES), path
        assert "{id}" not in path or path in PATH_IDS, path


def _put(body, dotted, value):
    *parents, last = dotted.split(".")
    target = body
    for part in parents:
        target = target[part][0] if isinstance(target[part], list) else target[part]
    target[last] = value


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: " ".join(f))
def test_a_bad_id_or_number_in_a_query_or_body_is_400_naming_it(scene, field):
    _, template, where, name, what = field
    path = template.replace("{id}", str(PATH_IDS[template](scene))) if "{id}" in template else template
    if where == "query":
        client = getattr(scene, QUERY_KEY.get(template, "channel"))
        context = QUERY_CONTEXT.get(template, {})
        assert client.get(path, context).status_code == 200
        for value in BAD:
            response = client.get(path, {**context, name: value})
            if what == "number" and name != "limit" and value == "9223372036854775808":
                assert response.status_code == 200  # a sequence past the largest is the largest
                continue  # (a limit over its maximum is a 400 since issue 17: not a silent cap)
            assert name in assert_error(response, 400, "validation_error"), value
        return
    who, make = BODIES[template]
    client = getattr(scene, who)
    for value in [*BAD, *BAD_NUMBERS, *([0] if what == "id" else [])]:
        body = make(scene)
        _put(body, name, value)
        response = client.post(path, json.dumps(body), content_type="application/json")
        details = assert_error(response, 400, "validation_error")
        assert name.replace(".", ".0.") in details or name in details, (value, details)
    response = client.post(path, json.dumps(make(scene)), content_type="application/json")
    assert response.status_code in (200, 201), response.content


def test_a_huge_id_in_a_cursor_is_400(scene):
    import base64

    cursor = base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00Z", 2**63]).encode()).decode()
    details = assert_error(scene.channel.get("/api/v1/orders", {"cursor": cursor}), 400, "validation_error")
    assert "cursor" in details


# --- the admin --------------------------------------------------------------------------------------------


def test_a_dry_run_with_a_unicode_digit_is_a_form_error(admin_client_for, org_admin, make_rule, new_order):
    rule = make_rule("Any")
    client = admin_client_for(org_admin)
    url = f"/admin/automations/automationrule/{rule.pk}/dry-run/"
    for value in ["²", "①", "9223372036854775808"]:
        response = client.post(url, {"order": value})
        assert response.status_code == 200, value
        assert "order" in response.context["form"].errors, value
    # An ASCII id still finds the order.
    response = client.post(url, {"order": str(new_order.pk)})
    assert response.status_code == 200
    assert not response.context["form"].errors


def _changelist_filters():
    """(changelist url, parameter) for each model's own id and each of its foreign keys' ids."""
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_module_permission or model._meta.app_label not in {
            "integrations",
            "orders",
            "tokens",
            "inventory",
            "automations",
        }:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        yield url, "id__exact"
        for field in model._meta.fields:
            if isinstance(field, models.ForeignKey):
                yield url, f"{field.name}__id__exact"


CHANGELIST_FILTERS = sorted(set(_changelist_filters()))


def test_the_admin_changelists_are_found():
    names = {url for url, _ in CHANGELIST_FILTERS}
    assert {
        "/admin/integrations/integration/",
        "/admin/orders/order/",
        "/admin/integrations/webhookdelivery/",
        "/admin/tokens/apikey/",
    } <= names


@pytest.mark.parametrize("user", ["superuser", "org_admin"])
def test_a_bad_number_in_an_admin_filter_is_not_a_500(request, admin_client_for, user, integration):
    client = admin_client_for(request.getfixturevalue(user))
    for url, parameter in CHANGELIST_FILTERS:
        # One of each kind that reached the database or int() (a superscript, another script's digit, past
        # bigint): every filter of every changelist times each value is ~100 requests a value.
        for value in ["²", "٣", "9223372036854775808"]:
            response = client.get(url, {parameter: value})
            assert response.status_code in (200, 302, 403), (url, parameter, value, response.status_code)
