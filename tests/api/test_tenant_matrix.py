"""
The tenant-boundary matrix (docs/connectors/01-concepts.md, "Data ownership"): every route of the URLconf,
with every method it answers, called by every kind of outsider — never shows or changes tenant A's data.

Tenant A is the web shop "Acme web shop" and the 3PL "Acme 3PL" its orders are routed to, in the
organization Acme: an order, its shipping request and fulfillment, the 3PL's location and stock, their
trails. The outsiders are two sibling integrations of the same organization (integration keys see only
their own data) and Globex's integration and organization keys. Every outsider key holds every grant, so
no answer is a mere 403 for want of one.

A route joins the matrix by an entry in REGISTRY; a route without one fails
`test_registry_covers_every_route`, so no endpoint can escape it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.db.models import Q, QuerySet

from integrations import audit
from integrations.choices import EventKind
from integrations.models import Integration, IntegrationEvent
from inventory.models import Location, Product
from orders import services as order_services
from orders.models import Fulfillment, Order, ShippingRequest
from tests.api.helpers import WRITE_METHODS, api_routes
from tokens import grants
from tokens import issuing as key_services
from tokens.choices import KeyKind

SIBLINGS = ("sibling-channel-key", "sibling-3pl-key")
OTHER_ORG = ("other-org-integration-key", "other-org-org-key")
OUTSIDERS = (*SIBLINGS, *OTHER_ORG)


@dataclass
class World:
    """Tenant A, its neighbours, and keys for all of them."""

    org_a: object
    channel: Integration
    tpl: Integration
    warehouse: Location
    order: Order
    shipping_request: ShippingRequest
    fulfillment: Fulfillment
    org_b: object
    b: Integration
    keys: dict = field(default_factory=dict)  # name → IssuedKey

    @property
    def tenant_a(self):
        return [self.channel, self.tpl]


@dataclass(frozen=True)
class Tenancy:
    """
    How a route relates to tenant A. `tenant`: its rows of tenant A (hidden from, and unchanged by, every
    outsider); `org`: all of organization A's (the same for other organizations; default `tenant`).
    `obj`: for routes naming an object, one of A's. `body`: for writes. `names_a`: the body names one of A's
    objects, so the write must be refused (403/404). `key`: a listed row's identity, as str, given the
    JSON row or the model instance.
    """

    tenant: Callable[[World], QuerySet] | None = None
    org: Callable[[World], QuerySet] | None = None
    obj: Callable[[World], object] | None = None
    body: Callable[[World], dict] | None = None
    names_a: bool = False
    key: Callable = lambda row: str(row["id"] if isinstance(row, dict) else row.pk)

    def hidden(self, world, outsider) -> QuerySet | None:
        """The rows the outsider must never see nor change."""
        if outsider in OTHER_ORG and self.org is not None:
            return self.org(world)
        return self.tenant(world) if self.tenant is not None else None


def events_of_a(w):
    return IntegrationEvent.objects.filter(
        Q(integration__in=w.tenant_a) | Q(organization=w.org_a, integration=None)
    )


EVENTS = Tenancy(tenant=events_of_a, org=lambda w: IntegrationEvent.objects.filter(organization=w.org_a))

REGISTRY: dict[str, Tenancy] = {
    "api:me": Tenancy(),
    "api:integration": Tenancy(),
    "api:integration-connect": Tenancy(),
    "api:integration-error": Tenancy(body=lambda w: {"message": "outsider says hi"}),
    "api:event-list": EVENTS,
}

# The catalog and stock routes and the order flow bring their entries and their cases (`build(world)`).
from tests.api import (  # noqa: E402 - they use Tenancy, defined above
    matrix_exceptions,
    matrix_inventory,
    matrix_orders,
    matrix_webhooks,
)

EXTENSIONS = (matrix_inventory, matrix_orders, matrix_webhooks, matrix_exceptions)
for _extension in EXTENSIONS:
    REGISTRY.update(_extension.ENTRIES)

ROUTES = api_routes()


@pytest.fixture
def world(
    org, other_org, org_admin, other_admin, integration, other_integration, channel_connector, tpl_connector,
    make_integration, warehouse_integration, warehouse, stock, products, standard_method, order_body,
):  # fmt: skip
    # Tenant A: the web shop's order, routed to its 3PL, partly shipped.
    order, _ = order_services.ingest_order(integration, order_body)
    order = order_services.make_ready(order)  # no rules: as the hold engine lets it through
    shipping_request = order_services.create_shipping_request(order, warehouse)
    fulfillment, _ = order_services.create_fulfillment(
        shipping_request,
        {"external_id": "F1", "lines": [(products["TSHIRT-S"].pk, 1)]},
        integration=warehouse_integration,
    )
    audit.record_event(integration, EventKind.EXCEPTION, "CANARY-A event")
    audit.record_event(None, EventKind.KEY, "CANARY-ORG-A event", organization=org)
    # The neighbours: a sibling shop and a sibling 3PL with a location of its own; Globex with its own catalog.
    sibling_channel = make_integration(org, channel_connector, "Sibling shop")
    sibling_tpl = make_integration(org, tpl_connector, "Sibling 3PL")
    Location.objects.create(organization=org, name="West", kind="3pl", managed_by=sibling_tpl)
    Product.objects.create(organization=other_org, sku="GLOBEX-MUG", name="Globex mug", price="3.00")
    audit.record_event(other_integration, EventKind.EXCEPTION, "Globex event")

    def integration_key(target):
        return key_services.issue_key(
            kind=KeyKind.INTEGRATION, name=f"{target.name} key", integration=target, grants=grants.GRANTS
        )

    def org_key(organization, user):
        return key_services.issue_key(
            kind=KeyKind.ORG, name="org key", organization=organization, user=user, grants=grants.GRANTS
        )

    world = World(
        org_a=org,
        channel=integration,
        tpl=warehouse_integration,
        warehouse=warehouse,
        order=order,
        shipping_request=shipping_request,
        fulfillment=fulfillment,
        org_b=other_org,
        b=other_integration,
        keys={
            "a-channel-key": integration_key(integration),
            "a-3pl-key": integration_key(warehouse_integration),
            "a-org-key": org_key(org, org_admin),
            "sibling-channel-key": integration_key(sibling_channel),
            "sibling-3pl-key": integration_key(sibling_tpl),
            "other-org-integration-key": integration_key(other_integration),
            "other-org-org-key": org_key(other_org, other_admin),
        },
    )
    for extension in EXTENSIONS:
        extension.build(world)
    return world


def forbidden_strings(world, outsider) -> list[str]:
    a_keys = [world.keys[k].key.prefix for k in ("a-channel-key", "a-3pl-key", "a-org-key")]
    if outsider in SIBLINGS:
        return ["Acme web shop", "Acme 3PL", "CANARY", *a_keys]
    return ["Acme", "CANARY", *a_keys, *(world.keys[k].key.prefix for k in SIBLINGS)]


def tenant_a_state(world, outsider) -> list:
    """Everything of tenant A (of all Acme for another organization) that a write could change."""
    state = [sorted(map(str, Integration.objects.filter(pk__in=[i.pk for i in world.tenant_a]).values()))]
    seen = set()
    for tenancy in REGISTRY.values():
        if (tenancy.tenant, tenancy.org) in seen:  # routes of one resource share their rows
            continue
        seen.add((tenancy.tenant, tenancy.org))
        rows = tenancy.hidden(world, outsider)
        if rows is not None:
            state.append(sorted(map(str, rows.values())))
    return state


def call(client, method, url, body=None):
    if method in WRITE_METHODS:
        return getattr(client, method.lower())(url, body or {}, format="json")
    return getattr(client, method.lower())(url)


def listed(client, url) -> tuple[list[dict], list]:
    """Every row of a list (following `next`), and every response seen."""
    rows, responses = [], []
    while url:
        response = client.get(url)
        responses.append(response)
        if response.status_code != 200:
            break
        body = response.json()
        rows += body["results"]
        url = body["next"]
    return rows, responses


def check_no_leak(world, outsider, responses):
    for response in responses:
        assert response.status_code < 500, (outsider, response.content)
        text = response.content.decode()
        for canary in forbidden_strings(world, outsider):
            assert canary not in text, (outsider, canary, text)


def test_registry_covers_every_route():
    names = {route.name for route in ROUTES}

    assert sorted(names - set(REGISTRY)) == [], "add these routes to the tenant matrix REGISTRY"
    assert sorted(set(REGISTRY) - names) == [], "these REGISTRY entries name no route any more"
    for route in ROUTES:
        tenancy = REGISTRY[route.name]
        if route.params:  # a route that names an object must say which object of tenant A to try
            assert tenancy.obj is not None, route.name
        if "GET" in route.methods and not route.params and route.name not in ("api:me", "api:integration"):
            assert tenancy.tenant or tenancy.org, f"{route.name} lists rows: declare whose"


def leaks(world, outsider, client, route, method, before) -> list[str]:
    """What this outsider's call of route × method shows or changes of tenant A: [] if nothing."""
    tenancy = REGISTRY[route.name]
    target = tenancy.obj(world) if tenancy.obj else None
    url = route.url(pk=target.pk) if target is not None else route.url()
    body = tenancy.body(world) if tenancy.body else None
    hidden = tenancy.hidden(world, outsider)
    problems = []

    if (
        method != "OPTIONS"
        and target is not None
        and hidden is not None
        and hidden.filter(pk=target.pk).exists()
    ):
        # One of A's objects, by its id: answered as if it did not exist (docs/connectors/contract.md: 404
        # `not_found`), or refused for a reason that has nothing to do with it (a switched-off flow, say).
        responses = [call(client, method, url, body), call(client, method, route.url(pk=2**31 - 1), body)]
        answer, as_if_missing = ((r.status_code, r.json().get("error", {}).get("code")) for r in responses)
        if answer != as_if_missing or answer[0] not in (403, 404) or answer == (404, None):
            problems.append(f"A's object answered {answer}, a missing one {as_if_missing}")
    elif method == "GET" and hidden is not None and target is None:
        rows, responses = listed(client, url)
        # Probing with filters that name tenant A must not widen the scope either.
        probe_rows, probe_responses = listed(
            client,
            f"{url}?integration={world.channel.pk}&organization={world.org_a.pk}&source={world.channel.pk}",
        )
        responses += probe_responses
        if leaked := {tenancy.key(row) for row in rows + probe_rows} & {tenancy.key(row) for row in hidden}:
            problems.append(f"lists A's rows {sorted(leaked)}")
    else:
        responses = [call(client, method, url, body)]
        if tenancy.names_a and method in WRITE_METHODS and responses[0].status_code not in (403, 404):
            problems.append(f"a write naming A's object answered {responses[0].status_code}")

    for response in responses:
        text = response.content.decode()
        if response.status_code >= 500:
            problems.append(f"answered {response.status_code}")
        problems += [f"shows {canary!r}" for canary in forbidden_strings(world, outsider) if canary in text]
    if method in WRITE_METHODS and tenant_a_state(world, outsider) != before:  # reads: checked at the end
        problems.append("changed tenant A's data")
    return [f"{outsider} {method} {route.name}: {problem}" for problem in problems]


@pytest.mark.parametrize("outsider", OUTSIDERS)
def test_outsiders_never_see_or_change_tenant_a(api_client, world, outsider):
    """Every route × every method it answers (and OPTIONS), for this outsider; all problems reported at once."""
    client = api_client(world.keys[outsider])
    before = tenant_a_state(world, outsider)
    problems = []

    for route in ROUTES:
        if route.name not in REGISTRY:
            continue  # test_registry_covers_every_route fails for it
        for method in (*route.methods, "OPTIONS"):
            problems += leaks(world, outsider, client, route, method, before)

    assert problems == []
    assert tenant_a_state(world, outsider) == before


def test_tenant_a_itself_sees_what_the_outsiders_may_not(api_client, world):
    """The control group: what the matrix looks for is really there for A's own keys."""
    clients = [api_client(world.keys[owner]) for owner in ("a-channel-key", "a-3pl-key", "a-org-key")]
    missing = []

    for route in ROUTES:
        tenancy = REGISTRY.get(route.name)
        if (
            "GET" not in route.methods
            or tenancy is None
            or not (tenancy.tenant or tenancy.org or tenancy.obj)
        ):
            continue
        if tenancy.obj is not None:
            url = route.url(pk=tenancy.obj(world).pk)
            if not any(client.get(url).status_code == 200 for client in clients):
                missing.append(route.name)
        else:
            hidden = {tenancy.key(row) for row in tenancy.hidden(world, "other-org-org-key")}
            seen = set()
            for client in clients:
                seen |= {tenancy.key(row) for row in listed(client, route.url())[0]}
            if not seen & hidden:
                missing.append(route.name)

    assert missing == []


def test_the_channel_sees_only_its_own_trail(api_client, world):
    rows, responses = listed(api_client(world.keys["a-channel-key"]), "/api/v1/events")

    text = "".join(r.content.decode() for r in responses)
    assert "CANARY-A event" in text
    assert "CANARY-ORG-A" not in text
    assert {row["integration"]["id"] for row in rows} == {str(world.channel.pk)}


def test_the_org_key_sees_the_whole_organization(api_client, world):
    expected = {
        str(pk)
        for pk in IntegrationEvent.objects.filter(organization=world.org_a).values_list("pk", flat=True)
    }

    rows, _ = listed(api_client(world.keys["a-org-key"]), "/api/v1/events")

    assert {row["id"] for row in rows} == expected
