"""
The OpenAPI document the hub serves (issue 17, item 2): OpenAPI 3.1, valid by openapi-spec-validator; every
webhook event type the code knows under `webhooks` and nothing else, each with its envelope (`data` the very
schema the API documents for the object), the grant its subscription needs and the Standard Webhooks headers;
real event bodies match their schema; `Idempotency-Key` is declared on every write and `X-Request-Id` on
every answer.
"""

import json

import pytest
from django.test import Client
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from integrations.choices import EventType, IntegrationStatus
from integrations.models import WebhookEvent
from integrations.webhooks.subscriptions import EVENT_GRANTS
from tests.integrations.delivery_path import GRANTS
from tokens import issuing as key_services
from tokens.choices import KeyKind

SCHEMA_URL = "/api/v1/schema/"
UNSAFE = {"post", "put", "patch", "delete"}
METHODS = UNSAFE | {"get"}
WEBHOOK_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature"}
# Where the API answers each kind of object by itself: a webhook's `data` is that answer's schema.
OBJECT_PATHS = {
    "order": "/api/v1/orders/{id}",
    "shipping_request": "/api/v1/shipping-requests/{id}",
    "fulfillment": "/api/v1/fulfillments/{id}",
    "product": "/api/v1/products/{id}",
}
# ... and where it lists what inventory.updated carries (one item of the page's results).
INVENTORY_LISTS = ("/api/v1/inventory", "/api/v1/availability")


@pytest.fixture(scope="module")
def document(django_db_blocker):
    with django_db_blocker.unblock():
        response = Client().get(SCHEMA_URL, {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


def resolve(document, schema):
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def ref_name(schema) -> str:
    (part,) = schema.get("allOf", [schema])
    return part["$ref"].rsplit("/", 1)[-1]


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if method in METHODS:
                yield path, method, operation


def body_schema(webhook) -> dict:
    return webhook["post"]["requestBody"]["content"]["application/json"]["schema"]


# --- the document ----------------------------------------------------------------------------------------


def test_the_served_document_is_openapi_3_1_and_valid(document):
    assert document["openapi"] == "3.1.0"

    validate(document)  # openapi-spec-validator picks the 3.1 specification from `openapi`


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["webhooks"]["order.created"]["post"]["parameters"][0].update({"in": "body"}),
        lambda d: d["webhooks"]["order.created"]["post"]["responses"]["200"].pop("description"),
        lambda d: d["paths"]["/api/v1/orders"]["post"]["parameters"].append({"name": "Idempotency-Key"}),
    ],
    ids=["webhook header nowhere", "webhook answer undescribed", "parameter without a place"],
)
def test_the_validator_refuses_a_broken_document(document, breakage):
    """The validation above can fail."""
    broken = json.loads(json.dumps(document))
    breakage(broken)

    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_event_type_has_a_webhook_and_every_webhook_is_an_event_type(document):
    webhooks = set(document["webhooks"])

    assert webhooks == set(EventType.values)
    assert webhooks == set(EVENT_GRANTS)


def test_each_webhook_names_its_grant_and_its_signature_headers(document):
    for event_type, webhook in document["webhooks"].items():
        operation = webhook["post"]
        assert operation["x-required-grant"] == EVENT_GRANTS[event_type], event_type
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert set(headers) == WEBHOOK_HEADERS, event_type
        assert all(header["required"] for header in headers.values()), event_type
        assert operation["requestBody"]["required"] is True


def test_each_webhook_body_is_the_envelope_of_its_type(document):
    for event_type, webhook in document["webhooks"].items():
        envelope = resolve(document, body_schema(webhook))
        properties = envelope["properties"]
        assert {"id", "type", "created_at", "sequence", "data"} <= set(properties), event_type
        assert {"id", "type", "created_at", "sequence", "data"} <= set(envelope["required"]), event_type
        assert properties["type"]["const"] == event_type
        assert properties["created_at"]["format"] == "date-time"
        assert properties["sequence"]["type"] == "integer"
        if "changes" in properties:
            assert properties["changes"]["items"]["type"] == "string"
            assert "changes" not in envelope["required"]
    with_changes = {
        t
        for t, w in document["webhooks"].items()
        if "changes" in resolve(document, body_schema(w))["properties"]
    }
    assert with_changes == {"order.updated", "shipping_request.updated", "fulfillment.updated"}


def test_each_webhook_data_is_the_object_as_the_api_documents_it(document):
    for event_type, webhook in document["webhooks"].items():
        data = resolve(document, body_schema(webhook))["properties"]["data"]
        kind = event_type.split(".")[0]
        if kind in OBJECT_PATHS:
            answer = document["paths"][OBJECT_PATHS[kind]]["get"]["responses"]["200"]
            expected = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            assert ref_name(data) == expected, event_type
        elif kind == "inventory":
            listed = set()
            for path in INVENTORY_LISTS:
                page = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
                items = resolve(document, page["schema"])["properties"]["results"]["items"]
                listed.add(items["$ref"].rsplit("/", 1)[-1])
            alternatives = resolve(document, {"$ref": "#/components/schemas/" + ref_name(data)})["oneOf"]
            assert {a["$ref"].rsplit("/", 1)[-1] for a in alternatives} == listed
        else:
            assert event_type == "integration.status_changed"
            status = resolve(document, {"$ref": "#/components/schemas/" + ref_name(data)})["properties"]
            assert set(status) == {"id", "name", "status", "previous", "reason"}
            assert status["status"]["enum"] == status["previous"]["enum"] == IntegrationStatus.values


def test_a_subscriptions_events_are_the_event_types(document):
    schemas = document["components"]["schemas"]
    assert schemas["EventTypeEnum"]["enum"] == EventType.values
    for name in ("WebhookInputRequest", "Webhook", "WebhookCreated"):
        assert ref_name(schemas[name]["properties"]["events"]["items"]) == "EventTypeEnum", name


def test_every_write_declares_an_idempotency_key_and_no_read_does(document):
    writes = 0
    for path, method, operation in operations(document):
        keys = [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
        if method in UNSAFE:
            writes += 1
            (key,) = keys
            assert (key["in"], key.get("required", False)) == ("header", False), (method, path)
            assert key["schema"]["type"] == "string"
        else:
            assert keys == [], (method, path)
    assert writes >= 15


def test_a_posts_idempotency_key_says_how_long_it_may_be(document):
    """api/idempotency.py refuses a key over 255 characters (400): the document says so, so the fuzz tries it."""
    key = next(
        p for p in document["paths"]["/api/v1/orders"]["post"]["parameters"] if p["name"] == "Idempotency-Key"
    )
    assert key["schema"]["maxLength"] == 255


def test_every_answer_of_every_operation_declares_x_request_id(document):
    header = document["components"]["headers"]["X-Request-Id"]
    assert header["required"] is True and header["schema"]["type"] == "string"
    answers = 0
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            answers += 1
            assert response["headers"]["X-Request-Id"] == {"$ref": "#/components/headers/X-Request-Id"}, (
                method,
                path,
                status,
            )
    assert answers >= 200


# --- real bodies match -----------------------------------------------------------------------------------


@pytest.fixture
def shop_key(integration):
    return key_services.issue_key(
        kind=KeyKind.INTEGRATION, name="feed", integration=integration, grants=GRANTS
    )


def test_the_bodies_the_hub_records_match_their_webhooks_schema(
    document, shop_key, ingest, order_body, products, standard_method
):
    # an order created, then let through (order.created, order.updated), then re-posted with a new note
    # (order.updated with `changes`)
    ingest(order_body)
    ingest({**order_body, "notes": "Leave at the door"})

    bodies = [json.loads(body) for body in WebhookEvent.objects.order_by("pk").values_list("body", flat=True)]

    assert {"order.created", "order.updated"} <= {body["type"] for body in bodies}
    assert any("changes" in body for body in bodies)
    for body in bodies:
        schema = {**body_schema(document["webhooks"][body["type"]]), "components": document["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
        assert errors == [], (body["type"], [e.message for e in errors])


def test_a_body_that_breaks_its_schema_is_caught(document):
    """The check above can fail: an order.created whose `data` is not an order."""
    schema = {**body_schema(document["webhooks"]["order.created"]), "components": document["components"]}
    body = {
        "id": "evt_0",
        "type": "order.created",
        "created_at": "2026-01-01T00:00:00Z",
        "sequence": 1,
        "data": {},
    }

    assert list(Draft202012Validator(schema).iter_errors(body))
