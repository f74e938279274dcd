from inventory.models import InventoryLevel
from orders import services
from orders.choices import OrderStatus


def test_order_journey(ingest, order_body, stock, standard_method, warehouse, products):
    order, created = ingest(order_body)
    assert created and order.status == OrderStatus.READY and order.total == 33

    again, created_again = ingest(order_body)
    assert again.pk == order.pk and not created_again

    request = services.create_shipping_request(order, warehouse)
    level = InventoryLevel.objects.get(product=products["TSHIRT-S"], location=warehouse)
    assert level.committed == 2

    services.create_fulfillment(request, {"external_id": "F1", "lines": [(products["TSHIRT-S"].pk, 2)]})
    order.refresh_from_db()
    assert order.status == OrderStatus.PARTIALLY_FULFILLED
    level.refresh_from_db()
    assert (level.on_hand, level.committed) == (8, 0)
