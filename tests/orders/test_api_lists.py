"""What every order-flow endpoint shows across organizations (another one's objects are 404), and what each
list costs in queries (bounded, the same for 3 rows or 300)."""

import pytest
from django.utils import timezone

from integrations.models import Integration
from inventory.models import SkuMapping
from orders.choices import OrderStatus
from orders.models import (
    Fulfillment,
    FulfillmentLine,
    Order,
    OrderLine,
    ShippingRequest,
    ShippingRequestLine,
)
from tests.api.helpers import assert_error
from tests.orders.helpers import FULFILLMENTS, ORDER_GRANTS, ORDERS, REQUESTS, integration_key, shipment

# --- tenancy: another organization's objects are 404 ----------------------------------------------------


def test_another_organizations_objects_are_not_found(api_client, other_integration, tpl, routed):
    # Given: Globex's key, with every grant of the order flow (and its fulfillments-in switch on)
    order, request = routed
    Integration.objects.filter(pk=other_integration.pk).update(flow_fulfillments_in=True)
    shipped = tpl.post(FULFILLMENTS, shipment(request, [("MUG", 1)]), format="json").json()
    globex = api_client(integration_key(other_integration, grants=ORDER_GRANTS))
    before = list(Order.objects.values()), list(ShippingRequest.objects.values())

    # When / then
    for response in (
        globex.get(f"{ORDERS}/{order.pk}"),
        globex.post(f"{ORDERS}/{order.pk}/cancel"),
        globex.get(f"{REQUESTS}/{request.pk}"),
        globex.post(f"{REQUESTS}/{request.pk}/acknowledge"),
        globex.get(f"{FULFILLMENTS}/{shipped['id']}"),
        globex.post(FULFILLMENTS, shipment(request, [("TSHIRT-S", 1)], external_id="X"), format="json"),
    ):
        assert_error(response, 404, "not_found")
    for url in (ORDERS, REQUESTS, FULFILLMENTS):
        assert globex.get(url).json()["results"] == []
    assert (list(Order.objects.values()), list(ShippingRequest.objects.values())) == before


# --- query counts -------------------------------------------------------------------------------------

# Per list: the key look-up and the request log (2), the page, and one per prefetch or SKU translation —
# the same for 3 rows or 300.
QUERY_BOUNDS = {
    ("channel", ORDERS): 6,  # orders, lines, shipping requests, fulfillments
    ("tpl", ORDERS): 6,
    ("tpl", REQUESTS): 5,  # requests (with order and method code joined), lines, the 3PL's SKUs
    ("tpl", FULFILLMENTS): 5,  # fulfillments, lines, the 3PL's SKUs
    ("channel", FULFILLMENTS): 4,  # fulfillments, lines (its own orders' SKUs need no look-up)
}


def make_shipped_orders(n, channel_integration, location, products, method):
    """n orders of the channel, each routed whole to `location` and shipped in part, in a few bulk queries."""
    now = timezone.now()
    org_id, fulfiller = channel_integration.organization_id, location.managed_by
    orders = Order.objects.bulk_create(
        Order(
            organization_id=org_id,
            source=channel_integration,
            external_id=f"B{i}",
            number=f"#B{i}",
            status=OrderStatus.PARTIALLY_FULFILLED,
            shipping_method=method,
            shipping_method_code="shopify-std",
        )
        for i in range(n)
    )
    lines = OrderLine.objects.bulk_create(
        OrderLine(order=o, line_number=k, product=p, sku=p.sku, external_sku=p.sku, quantity=2, unit_price=1)
        for o in orders
        for k, p in enumerate(products.values(), start=1)
    )
    requests = ShippingRequest.objects.bulk_create(
        ShippingRequest(
            organization_id=org_id, order=o, location=location, fulfiller=fulfiller, shipping_method=method
        )
        for o in orders
    )
    request_of = {r.order_id: r for r in requests}
    request_lines = ShippingRequestLine.objects.bulk_create(
        ShippingRequestLine(
            request=request_of[line.order_id], order_line=line, product=line.product, quantity=2
        )
        for line in lines
    )
    fulfillments = Fulfillment.objects.bulk_create(
        Fulfillment(
            organization_id=org_id,
            order=r.order,
            shipping_request=r,
            integration=fulfiller,
            external_id=f"F{r.pk}",
            shipped_at=now,
        )
        for r in requests
    )
    fulfillment_of = {f.shipping_request_id: f for f in fulfillments}
    FulfillmentLine.objects.bulk_create(
        FulfillmentLine(
            fulfillment=fulfillment_of[rl.request_id], request_line=rl, product=rl.product, quantity=1
        )
        for rl in request_lines
    )


@pytest.mark.parametrize("n", [3, 300])
@pytest.mark.parametrize("who,url", list(QUERY_BOUNDS))
def test_lists_run_a_bounded_number_of_queries(
    request,
    django_assert_max_num_queries,
    integration,
    warehouse_integration,
    warehouse,
    products,
    standard_method,
    who,
    url,
    n,
):
    # Given: mapped SKUs on both sides, so the translations run too
    make_shipped_orders(n, integration, warehouse, products, standard_method)
    SkuMapping.objects.create(
        integration=warehouse_integration, external_sku="WH-MUG", product=products["MUG"]
    )
    client = request.getfixturevalue(who)
    client.get(url)  # the key's first use writes its last-used time; not the list's cost

    # When
    with django_assert_max_num_queries(QUERY_BOUNDS[who, url]):
        response = client.get(f"{url}?limit=500")

    # Then
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == n
    text = response.content.decode()
    if url == REQUESTS:
        assert '"WH-MUG"' in text and '"GROUND"' in text
