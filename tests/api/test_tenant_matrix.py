"""
The tenant-boundary matrix (STYLE.md, Tests; DESIGN.md, Data ownership): every route of the URLconf, with
every method it answers, called by every kind of outsider — never shows or changes tenant A's data.

Tenant A is the integration "Acme web shop" of the organization Acme. The outsiders are a sibling
integration of the same organization (integration keys see only their own data), and Globex's
integration and organization keys. A route joins the matrix by an entry in REGISTRY; a route without one
fails `test_registry_covers_every_route`, so no endpoint can escape it.
"""

from dataclasses import dataclass, field

import pytest
from django.db.models import QuerySet

from integrations import services as integration_services
from integrations.choices import EventKind
from integrations.models import Integration, IntegrationEvent
from tests.api.helpers import WRITE_METHODS, api_routes, assert_error
from tokens import services as key_services
from tokens.choices import KeyKind


@dataclass
class World:
    """Tenant A, its neighbours, and keys for all of them."""

    org_a: object
    a: Integration
    sibling: Integration
    org_b: object
    b: Integration
    keys: dict  # name → IssuedKey
    canaries: dict = field(default_factory=dict)  # label → strings only that label's owners may see


@dataclass(frozen=True)
class Tenancy:
    """How a route relates to tenants. `rows`: the rows it lists or writes, per owner label (see World)."""

    rows: object = None  # callable(world) -> {label: queryset}
    obj: object = None  # detail routes: callable(world) -> URL kwargs of an object of tenant A
    body: object = None  # writes: callable(world) -> request body


def event_rows(w: World) -> dict[str, QuerySet]:
    events = IntegrationEvent.objects
    return {
        "A": events.filter(integration=w.a),
        "A-org": events.filter(organization=w.org_a, integration=None),
        "sibling": events.filter(integration=w.sibling),
        "B": events.filter(integration=w.b),
        "B-org": events.filter(organization=w.org_b, integration=None),
    }


REGISTRY: dict[str, Tenancy] = {
    "api:me": Tenancy(),
    "api:integration": Tenancy(),
    "api:integration-connect": Tenancy(),
    "api:integration-error": Tenancy(body=lambda w: {"message": "outsider says hi"}),
    "api:event-list": Tenancy(rows=event_rows),
}

# Outsider → the owner labels it may see. Tenant A's labels ("A", "A-org") are in none of them.
OUTSIDERS = {
    "sibling-integration-key": {"sibling"},
    "other-org-integration-key": {"B"},
    "other-org-org-key": {"B", "B-org"},
}
ROUTES = api_routes()


@pytest.fixture
def world(
    org, other_org, org_admin, other_admin, integration, other_integration, tpl_connector, make_integration
):
    sibling = make_integration(org, tpl_connector, "Acme 3PL")
    integration_services.save_integration(
        integration,
        mappings={"skus": {"CANARY-A-SKU": "SKU-1"}, "shipping_methods": {"CANARY-A-SHIP": "ground"}},
        settings={"order_number_prefix": "CANARYA"},
    )
    integration_services.record_event(
        integration, EventKind.EXCEPTION, "CANARY-A event", data={"x": "CANARY-A"}
    )
    integration_services.record_event(None, EventKind.KEY, "CANARY-ORG-A event", organization=org)
    integration_services.record_event(sibling, EventKind.EXCEPTION, "CANARY-SIBLING event")
    integration_services.record_event(other_integration, EventKind.EXCEPTION, "Globex event")
    integration_services.record_event(None, EventKind.KEY, "Globex org event", organization=other_org)

    def integration_key(target):
        return key_services.issue_key(kind=KeyKind.INTEGRATION, name=f"{target.name} key", integration=target)

    keys = {
        "a-integration-key": integration_key(integration),
        "a-org-key": key_services.issue_key(
            kind=KeyKind.ORG, name="Acme org key", organization=org, user=org_admin, grants=["events:read"]
        ),
        "sibling-integration-key": integration_key(sibling),
        "other-org-integration-key": integration_key(other_integration),
        "other-org-org-key": key_services.issue_key(
            kind=KeyKind.ORG,
            name="Globex org key",
            organization=other_org,
            user=other_admin,
            grants=["events:read"],
        ),
    }
    a_prefixes = [keys["a-integration-key"].key.prefix, keys["a-org-key"].key.prefix]
    return World(
        org_a=org,
        a=integration,
        sibling=sibling,
        org_b=other_org,
        b=other_integration,
        keys=keys,
        canaries={
            # What the sibling must not see: A's integration and A's organization-level trail.
            "sibling-integration-key": ["Acme web shop", "CANARY-A", "CANARY-ORG-A", *a_prefixes],
            # Another organization must not see anything of Acme's.
            "other-org": ["Acme", "CANARY", *a_prefixes, keys["sibling-integration-key"].key.prefix],
        },
    )


def forbidden_strings(world, outsider) -> list[str]:
    return world.canaries["sibling-integration-key" if outsider.startswith("sibling") else "other-org"]


def tenant_a_state(world) -> list:
    """Everything of tenant A that a write could change."""
    state = [list(Integration.objects.filter(pk=world.a.pk).values())]
    for tenancy in REGISTRY.values():
        if tenancy.rows:
            for label, rows in tenancy.rows(world).items():
                if label in ("A", "A-org"):
                    state.append(sorted(rows.values_list("pk", flat=True)))
                    state.append(sorted(map(str, rows.values())))
    return state


def call(client, method, url, body=None):
    if method in WRITE_METHODS:
        return getattr(client, method.lower())(url, body or {}, format="json")
    return getattr(client, method.lower())(url)


def listed_ids(client, url, method) -> tuple[set[str], list]:
    """The ids of every page of a list (following `next`), and every response seen."""
    ids, responses = set(), []
    while url:
        response = call(client, method, url)
        responses.append(response)
        if response.status_code != 200:
            break
        body = response.json()
        ids |= {str(row["id"]) for row in body["results"]}
        url = body["next"]
    return ids, responses


def test_registry_covers_every_route():
    names = {route.name for route in ROUTES}

    assert names - set(REGISTRY) == set(), "add these routes to the tenant matrix REGISTRY"
    assert set(REGISTRY) - names == set(), "these REGISTRY entries name no route any more"
    for route in ROUTES:
        if route.params:  # a route that names an object must say how to make one of tenant A
            assert REGISTRY[route.name].obj is not None, route.name
        if "GET" in route.methods and not route.params and REGISTRY[route.name].rows is None:
            # A list must declare its rows; a non-list GET (me, integration) describes the caller only.
            assert route.name in {"api:me", "api:integration"}, f"{route.name}: declare rows=..."


@pytest.mark.parametrize("outsider", sorted(OUTSIDERS))
@pytest.mark.parametrize(
    "route,method",
    [(route, method) for route in ROUTES for method in (*route.methods, "OPTIONS")],
    ids=lambda value: getattr(value, "name", value),
)
def test_outsiders_never_see_or_change_tenant_a(api_client, world, route, method, outsider):
    tenancy = REGISTRY[route.name]
    client = api_client(world.keys[outsider])
    url = route.url(**(tenancy.obj(world) if tenancy.obj else {}))
    before = tenant_a_state(world)

    if route.params and method != "OPTIONS":
        # Tenant A's object, by its id: as if it did not exist.
        responses = [call(client, method, url, tenancy.body(world) if tenancy.body else None)]
        assert_error(responses[0], 404, "not_found")
    elif tenancy.rows and method == "GET":
        # Probing with filters that name tenant A must not widen the scope either.
        probe = f"{url}?integration={world.a.pk}&organization={world.org_a.pk}&integration_id={world.a.pk}"
        ids, responses = listed_ids(client, url, method)
        probe_ids, probe_responses = listed_ids(client, probe, method)
        responses += probe_responses
        rows = tenancy.rows(world)
        allowed = set().union(*(rows[label].values_list("pk", flat=True) for label in OUTSIDERS[outsider]))
        foreign = set().union(*(rows[label].values_list("pk", flat=True) for label in rows)) - allowed
        assert ids & {str(pk) for pk in foreign} == set()
        assert probe_ids & {str(pk) for pk in foreign} == set()
        assert ids, "the outsider sees its own rows, so the check above is not vacuous"
    else:
        responses = [call(client, method, url, tenancy.body(world) if tenancy.body else None)]

    for response in responses:
        assert response.status_code < 500, response.content
        text = response.content.decode()
        for canary in forbidden_strings(world, outsider):
            assert canary not in text, (canary, text)
    assert tenant_a_state(world) == before


@pytest.mark.parametrize("owner", ["a-integration-key", "a-org-key"])
def test_tenant_a_itself_sees_what_the_outsiders_may_not(api_client, world, owner):
    """The control group: the canaries and rows the matrix looks for are really there for A's own keys."""
    client = api_client(world.keys[owner])
    rows = {label: set(map(str, qs.values_list("pk", flat=True))) for label, qs in event_rows(world).items()}

    ids, responses = listed_ids(client, "/api/v1/events", "GET")

    assert rows["A"] <= ids
    text = "".join(r.content.decode() for r in responses)
    assert "CANARY-A event" in text
    if owner == "a-org-key":
        # The org key sees the whole organization: its own trail and every integration's.
        assert rows["A-org"] <= ids
        assert rows["sibling"] <= ids
    else:
        assert "CANARY-ORG-A" not in text
        assert "CANARY-SIBLING" not in text
    if owner == "a-integration-key":
        body = client.get("/api/v1/integration").json()
        assert body["mappings"]["skus"] == {"CANARY-A-SKU": "SKU-1"}
