"""
The order flow in the tenant-boundary matrix (tests/api/test_tenant_matrix.py): `ENTRIES` for its REGISTRY
and `build(world)` for its `world` fixture — they go together (the rows below count what build adds).

Beyond the world's one order, build adds the cases a single order cannot show:

* canary text on A's order and shipment, so that a leak of their content is caught, not only of their ids;
* a *shared* order: A's channel's order routed half to a sibling 3PL, half to A's 3PL. The sibling may read
  that order, its own request and its own shipment — never A's 3PL's request or shipment of it, which the
  order embeds (docs/connectors/01-concepts.md, "Data ownership");
* an order of organization A that no integration owns (its channel was deleted): no integration key sees it;
* Globex's channel's order with A's external_id, routed and shipped inside Globex: upserts are per
  integration, and the outsiders' lists are not empty.

Import this module after `Tenancy` is defined in the matrix (or move `Tenancy` into helpers.py).
"""

from django.db.models import Q

from integrations.models import Integration
from inventory.models import Location, Product
from orders import services
from orders.models import Fulfillment, Order, ShippingRequest
from tests.api.test_tenant_matrix import Tenancy

SHARED = "SHARED-2001"  # external_id of A's order routed in part to the sibling 3PL


def _outside_a(w):
    """Organization A's integrations that are not tenant A (the siblings)."""
    return Integration.objects.filter(organization=w.org_a).exclude(pk__in=[i.pk for i in w.tenant_a])


def build(world):
    """A's canaries, the order A shares with a sibling 3PL, an owner-less order, and Globex's twin order."""
    w = world
    Order.objects.filter(pk=w.order.pk).update(notes="CANARY-A order", customer={"name": "CANARY-A customer"})
    Fulfillment.objects.filter(pk=w.fulfillment.pk).update(tracking_number="CANARY-A-TRACK")

    # The shared order: A's channel's, one T-shirt from the sibling 3PL's location, one from A's warehouse.
    sibling_location = Location.objects.filter(organization=w.org_a, managed_by__in=_outside_a(w)).first()
    tshirt = Product.objects.get(organization=w.org_a, sku="TSHIRT-S")
    shared, _ = services.ingest_order(
        w.channel,
        {
            "external_id": SHARED,
            "number": "#2001",
            "lines": [{"sku": "TSHIRT-S", "quantity": 2, "unit_price": "1"}],
        },
    )
    shared = services.make_ready(shared)  # no rules: as the hold engine lets it through
    line = shared.lines.get()
    to_sibling = services.create_shipping_request(shared, sibling_location, [(line, 1)])
    to_a = services.create_shipping_request(shared, w.warehouse, [(line, 1)])
    services.create_fulfillment(
        to_sibling,
        {"external_id": "SIB-1", "carrier": "UPS", "tracking_number": "SIB-TRACK", "lines": [(tshirt.pk, 1)]},
        integration=sibling_location.managed_by,
    )
    services.create_fulfillment(
        to_a,
        {
            "external_id": "F-SHARED",
            "carrier": "UPS",
            "tracking_number": "CANARY-A-SHARED",
            "lines": [(tshirt.pk, 1)],
        },
        integration=w.tpl,
    )

    # Organization A's order that no integration owns any more.
    Order.objects.create(organization=w.org_a, external_id="ORPHAN-1", number="CANARY-ORG-A-ORPHAN")

    # Globex: its channel's order with A's external_id, shipped from a location that channel manages.
    # (matrix_inventory's build may have made it already: a location's name is unique per organization)
    globex_dc, _ = Location.objects.get_or_create(
        organization=w.org_b, name="Globex DC", defaults={"managed_by": w.b}
    )
    mug = Product.objects.get(organization=w.org_b, sku="GLOBEX-MUG")
    twin, _ = services.ingest_order(
        w.b,
        {
            "external_id": w.order.external_id,
            "lines": [{"sku": "GLOBEX-MUG", "quantity": 1, "unit_price": "3"}],
        },
    )
    services.create_fulfillment(
        services.create_shipping_request(services.make_ready(twin), globex_dc),
        {"external_id": "F1", "lines": [(mug.pk, 1)]},
        integration=w.b,
    )


# --- tenant A's rows: hidden from every sibling (and, with `org`, all of Acme from other organizations) ---


def orders_of_a(w):
    """A's orders and the organization's owner-less ones; not the shared order, which the sibling 3PL may read."""
    owned = Q(source__in=w.tenant_a) | Q(organization=w.org_a, source=None)
    return Order.objects.filter(owned).exclude(external_id=SHARED, source=w.channel)


def requests_of_a(w):
    return ShippingRequest.objects.filter(fulfiller__in=w.tenant_a)


def fulfillments_of_a(w):
    """A's shipments and those of A's orders — but not the sibling 3PL's own shipment of the shared order."""
    mine = Q(integration__in=w.tenant_a) | Q(order__source__in=w.tenant_a)
    return Fulfillment.objects.filter(mine).exclude(integration__in=_outside_a(w))


ORDERS = dict(tenant=orders_of_a, org=lambda w: Order.objects.filter(organization=w.org_a))
REQUESTS = dict(tenant=requests_of_a, org=lambda w: ShippingRequest.objects.filter(organization=w.org_a))
FULFILLMENTS = dict(tenant=fulfillments_of_a, org=lambda w: Fulfillment.objects.filter(organization=w.org_a))


def order_body(w):
    # A's external_id: an upsert is per integration, so this must never reach A's order.
    return {
        "external_id": w.order.external_id,
        "currency": "EUR",
        "shipping_address": {"name": "Mallory", "line1": "1 Evil St", "city": "X", "country": "US"},
        "lines": [{"sku": "TSHIRT-S", "quantity": 99, "unit_price": "0.01"}],
    }


def fulfillment_body(w):
    # A's shipping request, by id: routed to no outsider, so it is as if it did not exist.
    return {
        "shipping_request": str(w.shipping_request.pk),
        "external_id": "F1",
        "lines": [{"sku": "TSHIRT-S", "quantity": 1}],
    }


ENTRIES: dict[str, Tenancy] = {
    "api:order-list": Tenancy(**ORDERS, body=order_body),
    "api:order-detail": Tenancy(**ORDERS, obj=lambda w: w.order),
    "api:order-cancel": Tenancy(**ORDERS, obj=lambda w: w.order, body=lambda w: {"reason": "outsider"}),
    "api:order-release": Tenancy(**ORDERS, obj=lambda w: w.order),
    "api:shipping-request-list": Tenancy(**REQUESTS),
    "api:shipping-request-detail": Tenancy(**REQUESTS, obj=lambda w: w.shipping_request),
    "api:shipping-request-acknowledge": Tenancy(**REQUESTS, obj=lambda w: w.shipping_request),
    # Rejecting releases the request's stock and routes the order again: never by an outsider.
    "api:shipping-request-reject": Tenancy(
        **REQUESTS, obj=lambda w: w.shipping_request, body=lambda w: {"reason": "outsider"}
    ),
    "api:fulfillment-list": Tenancy(**FULFILLMENTS, body=fulfillment_body, names_a=True),
    # PATCH corrects the tracking; cancel voids the shipment (its stock put back): never by an outsider.
    "api:fulfillment-detail": Tenancy(
        **FULFILLMENTS, obj=lambda w: w.fulfillment, body=lambda w: {"tracking_number": "OUTSIDER"}
    ),
    "api:fulfillment-cancel": Tenancy(**FULFILLMENTS, obj=lambda w: w.fulfillment),
}
