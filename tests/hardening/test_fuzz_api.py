"""
Fuzz every operation of the OpenAPI document as the API serves it (schemathesis over the WSGI app): with
schema-valid and schema-violating data, and keys of every kind holding every grant, no answer is a 5xx, every
status is one the operation documents, and every body matches the documented schema for its status.

Known ids are mixed into the generated path parameters, so that GET-by-id and the actions reach real objects
(an order with a shipping request and a partial fulfillment, a held order, a ready one, an exception, a
webhook) some of the time and made-up ids the rest. Each example runs in a savepoint rolled back after it,
so examples do not see each other's writes and the known objects stay as made.

FUZZ_EXAMPLES (default 25 per operation and mode) sets the budget; `bench/fuzz.py` runs it long and reports
what each operation answered (FUZZ_STATS names the file the test appends those counts to).
"""

import json
import os
from collections import Counter
from contextlib import contextmanager
from urllib.parse import unquote

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from automations import exceptions as exception_services
from core.sync_exceptions import ExceptionKind
from integrations.webhooks.subscriptions import subscribe
from orders import services as order_services
from tests.api.helpers import api_routes
from tokens.choices import KeyKind
from tokens.grants import GRANTS

SCHEMA_URL = "/api/v1/schema/"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# DRF reads a JSON number sent for a string field as its text, and 0/1 sent for a boolean as false/true:
# a deliberate leniency of every DRF API (connectors send numeric ids), not an input the API fails to check.
DRF_COERCIONS = {("string", "number"), ("string", "integer"), ("boolean", "integer")}


def _violations(case):
    """The negative case's mutations that make it invalid as sent (None: schemathesis recorded none)."""
    mutations = getattr(getattr(case.meta, "phase", None), "data", None)
    mutations = getattr(mutations, "mutations", None)
    if not mutations:
        return None
    return [
        m
        for m in mutations
        # Each example sends a key (set after generation): a dropped Authorization was put back.
        if not (m.parameter_location == ParameterLocation.HEADER and m.parameter == "Authorization")
        and not (m.keywords == ("type",) and (m.original_value, m.new_value) in DRF_COERCIONS)
    ]


def negative_data_rejected(ctx, response, case):
    """schemathesis' negative_data_rejection, for cases that are still invalid after DRF's coercions."""
    if _violations(case) == []:
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejected,
]


def _operations_from_urlconf() -> list[tuple[str, str]]:
    """(METHOD, path template) of every API route, read from the URLconf (no database at collection)."""
    found = []
    for route in api_routes():
        # The schema names the {pk} of routes "id" (SCHEMA_COERCE_PATH_PK); reversed with an id the routes'
        # converter takes (core/ids.py), then put back as the template.
        path = unquote(route.url(pk="987654321")).replace("987654321", "{id}")
        found += [(method, path) for method in route.methods]
    return sorted(found, key=lambda op: (op[1], op[0]))


OPERATIONS = _operations_from_urlconf()


@contextmanager
def connection_kept_open():
    """
    The WSGI handler closes the database connection when a request finishes, which would end the test's
    transaction: Django's test client disconnects the same handler around its requests, for that reason.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def api_schema(django_db_setup, django_db_blocker):
    """The OpenAPI document fetched from the running app, as a client would fetch it."""
    with django_db_blocker.unblock(), connection_kept_open():
        return schemathesis.openapi.from_wsgi(SCHEMA_URL, WSGIHandler())


@pytest.fixture
def world(
    org,
    org_admin,
    superuser,
    issue_key,
    integration,
    warehouse_integration,
    warehouse,
    products,
    stock,
    standard_method,
    ready_order,
):
    """Keys of every kind with every grant, and objects of every kind the API serves, in several states."""
    issued = [
        issue_key(kind=KeyKind.INTEGRATION, name="channel", integration=integration, grants=GRANTS),
        issue_key(kind=KeyKind.INTEGRATION, name="3pl", integration=warehouse_integration, grants=GRANTS),
        issue_key(kind=KeyKind.ORG, name="org", organization=org, user=org_admin, grants=GRANTS),
        issue_key(kind=KeyKind.GLOBAL, name="global", user=superuser, grants=GRANTS),
    ]
    # And one that is no key at all (well-formed, unknown prefix): every operation must answer it 401.
    keys = [k.plaintext for k in issued] + ["sy_unknown0_" + "x" * 43]
    shipped = ready_order(("MUG", 2), ("TSHIRT-S", 1))
    request = order_services.create_shipping_request(shipped, warehouse)
    fulfillment, _ = order_services.create_fulfillment(
        request, {"external_id": "F-1", "lines": [(products["MUG"].pk, 1)]}, integration=warehouse_integration
    )
    routed = ready_order(("TSHIRT-M", 1))
    open_request = order_services.create_shipping_request(routed, warehouse)
    held = order_services.hold(ready_order(("MUG", 1)), "review")
    ready = ready_order(("TSHIRT-S", 2))
    exception = exception_services.raise_exception(
        org, ExceptionKind.CONNECTOR_REPORTED, "Label printer offline.", integration=integration
    )
    webhook, _ = subscribe(integration, "http://127.0.0.1:9/hook", ["order.created"], issued[0].key)
    ids = {
        "orders": [shipped.pk, routed.pk, held.pk, ready.pk],
        "shipping-requests": [request.pk, open_request.pk],
        "fulfillments": [fulfillment.pk],
        "products": [p.pk for p in products.values()],
        "locations": [warehouse.pk],
        "exceptions": [exception.pk],
        "webhooks": [webhook.pk],
    }
    return keys, {resource: [str(pk) for pk in pks] for resource, pks in ids.items()}


def test_the_fuzz_covers_every_operation_the_schema_serves(api_schema):
    served = sorted(
        ((op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())),
        key=lambda op: (op[1], op[0]),
    )

    assert served == OPERATIONS


def _modes(operation):
    """Negative data needs something to violate: an operation without parameters or body has none."""
    if operation.body or any(True for _ in operation.iter_parameters()):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def fuzz(operation, mode, keys, known_ids, statuses: Counter):
    """Run `operation` with `mode` data for EXAMPLES examples, each in a savepoint rolled back after it."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        # No shrinking: a failure is reported as found (with its curl line); shrinking a database-backed
        # example takes minutes, and schemathesis' report of the first one is already readable.
        phases=[Phase.explicit, Phase.generate],
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        key=st.sampled_from(keys),
        known_id=st.one_of(st.none(), st.sampled_from(known_ids or [None])),
    )
    def example(case, key, known_id):
        if "id" in (case.path_parameters or {}) and known_id is not None:
            case.path_parameters["id"] = known_id
        # Set on the case rather than passed to the call, so that schemathesis knows it was sent and does
        # not count a negative case whose only violation was a missing Authorization as invalid data.
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
        with connection_kept_open(), transaction.atomic():
            try:
                response = case.call_and_validate(checks=CHECKS)
            finally:
                transaction.set_rollback(True)
        statuses[f"{mode.value} {response.status_code}"] += 1

    example()


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_answers_as_documented(method, path, api_schema, world, settings_override):
    keys, known = world
    operation = api_schema[path][method]
    statuses = Counter()
    for mode in _modes(operation):
        fuzz(operation, mode, keys, known.get(path.split("/")[3]), statuses)
    if stats := os.environ.get("FUZZ_STATS"):  # bench/fuzz.py's figures: what each operation answered
        with open(stats, "a") as out:
            out.write(json.dumps({"operation": f"{method} {path}", "statuses": statuses}) + "\n")


@pytest.fixture
def settings_override(settings):
    # The per-key rate limit has its own tests (tests/api/test_rate_limit.py); a long fuzz run must not
    # spend its examples on 429s.
    settings.API_RATE_LIMIT = "1000000/min"


# --- what the fuzz found, kept as plain examples -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        # PostgreSQL refuses a zone offset beyond ±15:59 that Python parses: the filter used to answer 500.
        ("/api/v1/products", "updated_since=0215-12-28T04:32:32.7-21:35", 200),
        ("/api/v1/events", "updated_since=2026-01-01T00:00:00-23:59", 200),
        ("/api/v1/availability", "updated_since=2026-01-01T00:00:00%2B23:00", 200),
        # Before the first instant once in UTC.
        ("/api/v1/orders", "updated_since=0001-01-01T00:00:00%2B01:00", 400),
        # A boolean filter ignored what it could not read (?active=yes listed everything): now a 400.
        ("/api/v1/products", "active=yes", 400),
        ("/api/v1/locations", "active=-1.5", 400),
        ("/api/v1/products", "active=", 200),
    ],
)
def test_query_values_the_fuzz_found(path, query, status, api_client, issue_key, integration):
    key = issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=GRANTS)

    response = api_client(key).get(f"{path}?{query}")

    assert response.status_code == status, response.content


@pytest.mark.django_db
def test_the_boolean_filter_reads_true_false_1_and_0(api_client, issue_key, integration, products):
    key = issue_key(kind=KeyKind.INTEGRATION, name="k", integration=integration, grants=GRANTS)
    products["MUG"].active = False
    products["MUG"].save()

    def skus(query):
        return sorted(p["sku"] for p in api_client(key).get(f"/api/v1/products?{query}").json()["results"])

    assert skus("active=false") == skus("active=0") == ["MUG"]
    assert skus("active=true") == skus("active=1") == ["TSHIRT-M", "TSHIRT-S"]
