"""
Strict by default, proven on the served contract (issue 17): every write operation of the OpenAPI document is
sent one unknown body field, every list operation one unknown query parameter. Each answer is a 400
`validation_error` naming it, and the database is as it was.

The objects the operations name are the tenant matrix's world (tests/api/test_tenant_matrix.py); each
operation is tried with tenant A's keys — its channel's, its 3PL's and its organization's — since some are
only for one kind. At least one of them must reach the body and refuse the field; none may accept it.
"""

import pytest
from django.apps import apps
from django.urls import resolve

from api.strict import UNKNOWN_PARAMETER
from integrations.choices import EventKind
from integrations.models import IntegrationEvent
from tests.api.test_tenant_matrix import REGISTRY, world  # noqa: F401 - `world` is a fixture

UNKNOWN = "zz_not_in_the_contract"
KEYS = ("a-channel-key", "a-3pl-key", "a-org-key")
# What every request writes whatever it is answered: its line in the request log, the key's last use.
NOT_STATE = {"tokens.apikey": {"last_used_at", "last_used_ip"}}


def refusal(response) -> dict:
    """The details of a 400 `validation_error` in the contract's error shape."""
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["message"], error
    return error["details"]


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def dump() -> dict:
    """Every row of every table, as text (the request log's rows left out: a refused request is logged too)."""
    state = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        rows = model.objects.all()
        if model is IntegrationEvent:
            rows = rows.exclude(kind=EventKind.API_REQUEST)
        skip = NOT_STATE.get(label, set())
        state[label] = sorted(str({k: v for k, v in row.items() if k not in skip}) for row in rows.values())
    return state


def url_for(path, world):  # noqa: F811 - the fixture's value
    """The operation's path with the id of tenant A's object its route names."""
    if "{id}" not in path:
        return path
    tenancy = REGISTRY[f"api:{resolve(path.replace('{id}', '1')).url_name}"]
    return path.replace("{id}", str(tenancy.obj(world).pk))


@pytest.fixture
def schema(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_every_write_refuses_an_unknown_body_field_and_writes_nothing(world, schema, api_client):  # noqa: F811
    before = dump()
    tried = []
    for path, method, operation in operations(schema):
        if method not in ("POST", "PUT", "PATCH"):
            continue
        url = url_for(path, world)
        answers = {}
        for name in KEYS:
            client = api_client(world.keys[name])
            response = getattr(client, method.lower())(url, {UNKNOWN: "x"}, format="json")
            answers[name] = response
            assert response.status_code >= 400, (operation["operationId"], name, response.content)
        refused = [r for r in answers.values() if r.status_code == 400]
        assert refused, (operation["operationId"], {n: r.status_code for n, r in answers.items()})
        for response in refused:
            details = refusal(response)
            assert UNKNOWN in details, (operation["operationId"], details)
            assert "Unknown field" in details[UNKNOWN][0]
        tried.append(operation["operationId"])
    assert len(tried) >= 20, tried  # every POST and PATCH of the document: none slipped out of the walk
    assert dump() == before


def test_every_list_refuses_an_unknown_query_parameter(world, schema, api_client):  # noqa: F811
    tried = []
    for path, method, operation in operations(schema):
        if method != "GET" or not operation["operationId"].endswith("_list"):
            continue
        known = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert UNKNOWN not in known
        for name in KEYS:
            response = api_client(world.keys[name]).get(url_for(path, world), {UNKNOWN: "1", "limit": "5"})
            if response.status_code in (403, 404):  # not this kind of key's list
                continue
            details = refusal(response)
            assert details == {UNKNOWN: [UNKNOWN_PARAMETER]}, (operation["operationId"], details)
            tried.append(operation["operationId"])
            break
        else:
            pytest.fail(f"no key of tenant A may read {operation['operationId']}")
    assert len(tried) >= 10, tried


def test_every_declared_query_parameter_is_accepted(world, schema, api_client):  # noqa: F811
    """The strict check reads the same names the document declares: none declared is refused as unknown."""
    for path, method, operation in operations(schema):
        if method != "GET" or not operation["operationId"].endswith("_list"):
            continue
        for parameter in (p for p in operation.get("parameters", []) if p["in"] == "query"):
            for name in KEYS:
                response = api_client(world.keys[name]).get(url_for(path, world), {parameter["name"]: ""})
                if response.status_code in (403, 404):
                    continue
                body = response.json()
                details = body.get("error", {}).get("details", {})
                assert details.get(parameter["name"]) != [UNKNOWN_PARAMETER], (operation["operationId"], body)
                break
