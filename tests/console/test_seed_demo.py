"""seed_demo: the demo organization, built in every app, idempotent, with a login that works."""

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError
from guardian.models import UserObjectPermission

from automations.choices import ExceptionStatus
from automations.models import AutomationRule, RoutingRule, RoutingRuleLocation, SyncException
from core.sync_exceptions import ExceptionKind
from integrations import configuration, lifecycle
from integrations.choices import IntegrationStatus
from integrations.models import (
    Connector,
    Integration,
    IntegrationEvent,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from inventory import figures
from inventory import services as inventory
from inventory.models import InventoryBuffer, InventoryLevel, Location, Product, SkuMapping
from orders import services as order_services
from orders.choices import OrderStatus, ShippingRequestStatus
from orders.models import (
    Fulfillment,
    Order,
    OrderLine,
    ShippingMethod,
    ShippingMethodMapping,
    ShippingRequest,
    ShippingRequestLine,
)
from organizations.choices import Role
from organizations.models import Membership, Organization
from tests.console.helpers import run

Status = IntegrationStatus


def _counts():
    return {
        model.__name__: model.objects.count()
        for model in (
            Organization,
            get_user_model(),
            Membership,
            Connector,
            Integration,
            IntegrationEvent,
            UserObjectPermission,
            Product,
            Location,
            InventoryLevel,
            InventoryBuffer,
            ShippingMethod,
            ShippingMethodMapping,
            SkuMapping,
            Order,
            OrderLine,
            ShippingRequest,
            Fulfillment,
            SyncException,
            OutboxEvent,
            WebhookSubscription,
            WebhookDelivery,
            WebhookAttempt,
            AutomationRule,
            RoutingRule,
            RoutingRuleLocation,
        )
    }


def _state():
    """What a second run must not change: stock figures, order and request statuses, exception counts."""
    return (
        sorted(InventoryLevel.objects.values_list("location__name", "product__sku", "on_hand", "committed")),
        sorted(Order.objects.values_list("number", "status", "hold_reason", "total")),
        sorted(ShippingRequest.objects.values_list("order__number", "status")),
        sorted(SyncException.objects.values_list("kind", "status", "occurrences")),
    )


def _login(out):
    last = out.splitlines()[-1]
    match = re.fullmatch(r"Login: admin@demo\.example / (\S+)", last)
    assert match, last
    return match.group(1)


def test_seed_demo_is_idempotent_and_prints_a_working_login_last(db):
    first = run("seed_demo")
    counts, state = _counts(), _state()
    second = run("seed_demo")

    assert _counts() == counts
    assert _state() == state
    assert counts["Integration"] == 7
    assert (counts["Product"], counts["Location"], counts["Order"]) == (12, 2, 8)
    assert (counts["InventoryLevel"], counts["InventoryBuffer"], counts["ShippingMethod"]) == (24, 1, 2)
    assert (counts["ShippingMethodMapping"], counts["SkuMapping"]) == (4, 1)
    assert (counts["ShippingRequest"], counts["Fulfillment"], counts["SyncException"]) == (5, 2, 1)
    # A switched-off subscription with delivered and dead deliveries: nothing is owed, nothing goes out.
    assert (counts["WebhookSubscription"], counts["WebhookDelivery"], counts["WebhookAttempt"]) == (1, 6, 6)
    assert not WebhookSubscription.objects.get().active
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded", "dead"}
    # Rules and a routing card to read, edit and dry-run in the admin.
    assert (counts["AutomationRule"], counts["RoutingRule"], counts["RoutingRuleLocation"]) == (2, 1, 2)
    summary = (
        "Demo Outfitters: 12 products, 2 locations, 8 orders (2 on hold, 1 ready, 2 sent to fulfillment, "
        "1 partially fulfilled, 1 fulfilled, 1 canceled); {} order(s) created this run."
    )
    assert summary.format(8) in first.splitlines()
    assert summary.format(0) in second.splitlines()
    old, new = _login(first), _login(second)
    assert old != new
    admin = authenticate(username="admin@demo.example", password=new)
    assert admin is not None
    assert authenticate(username="admin@demo.example", password=old) is None


def test_seed_demo_builds_the_demo_as_described(db):
    password = _login(run("seed_demo"))

    demo = Organization.objects.get(slug="demo")
    assert (demo.name, demo.notification_email) == ("Demo Outfitters", "ops@demo.example")
    statuses = dict(demo.integrations.values_list("name", "status"))
    assert statuses == {
        "Web shop": Status.CONNECTED,
        "Marketplace": Status.CONNECTING,
        "East warehouse": Status.CONNECTED,
        "Back office ERP": Status.DISABLED,
        "West warehouse": Status.ERROR,
        "Demo storefront": Status.NOT_CONFIGURED,
    }
    web_shop = demo.integrations.get(name="Web shop")
    assert web_shop.settings == {"store_url": "https://shop.demo.example", "default_currency": "USD"}
    assert demo.integrations.get(name="East warehouse").settings == {"acknowledge_within_minutes": 120}
    assert "webhook deliveries failed" in demo.integrations.get(name="West warehouse").last_error
    storefront = Connector.objects.get(organization=demo, key="demo-storefront")
    assert storefront.type == "channel"
    assert set(storefront.manifest) == {"health", "orders", "dispatch", "inventory"}
    assert storefront.secret_fields == {"auth_token"}
    assert demo.integrations.get(name="Demo storefront").connector == storefront

    User = get_user_model()
    admin = User.objects.get(username="admin@demo.example")
    assert (admin.is_staff, admin.is_superuser) == (True, False)
    assert Membership.objects.get(user=admin).role == Role.ADMIN
    member = User.objects.get(username="member@demo.example")
    assert Membership.objects.get(user=member, organization=demo).role == Role.MEMBER
    assert member.has_perm("integrations.view_integration", web_shop)
    assert not member.has_perm("integrations.view_integration", demo.integrations.get(name="Marketplace"))
    assert authenticate(username="member@demo.example", password=password) == member

    northwind = Organization.objects.get(slug="northwind")
    assert northwind.name == "Northwind Goods"
    assert northwind.integrations.count() == 1
    northwind_admin = Membership.objects.get(organization=northwind, role=Role.ADMIN).user
    assert not Membership.objects.filter(user=northwind_admin, organization=demo).exists()


def test_seed_demo_uses_the_given_password(db):
    out = run("seed_demo", password="Orbital-Lantern-77")

    assert out.splitlines()[-1] == "Login: admin@demo.example / Orbital-Lantern-77"
    assert authenticate(username="admin@demo.example", password="Orbital-Lantern-77") is not None


def test_seed_demo_refuses_a_weak_password(db):
    with pytest.raises(CommandError, match="too common"):
        run("seed_demo", password="password")

    assert not Organization.objects.exists()


def test_seed_demo_leaves_integrations_it_finds_as_they_are(db):
    # given the demo, and a demo user who then re-enabled the ERP
    run("seed_demo")
    erp = Integration.objects.get(name="Back office ERP")
    lifecycle.enable(erp)

    run("seed_demo")

    erp.refresh_from_db()
    assert erp.status == Status.CONNECTING


def test_seed_demo_builds_the_catalog_locations_and_mappings(db):
    run("seed_demo")

    demo = Organization.objects.get(slug="demo")
    east = demo.integrations.get(name="East warehouse")
    products = Product.objects.filter(organization=demo)
    assert products.count() == 12
    assert {"TEE-CLASSIC-M", "HOODIE-M", "MUG-STONE", "THROW-LINEN"} <= set(
        products.values_list("sku", flat=True)
    )
    assert not products.filter(price__isnull=True).exists()
    assert not products.filter(weight__isnull=True).exists()
    assert not products.filter(name="").exists()

    warehouse = Location.objects.get(organization=demo, name="East warehouse")
    assert (warehouse.managed_by, warehouse.priority, warehouse.kind) == (east, 1, "3pl")
    store = Location.objects.get(organization=demo, name="Flagship store")
    assert (store.managed_by, store.priority, store.kind) == (None, 5, "store")
    buffer = InventoryBuffer.objects.get(organization=demo)
    assert (buffer.location, buffer.product, buffer.channel, buffer.quantity) == (None, None, None, 2)

    assert dict(ShippingMethod.objects.filter(organization=demo).values_list("code", "name")) == {
        "standard": "Standard",
        "express": "Express",
    }
    mapped = set(
        ShippingMethodMapping.objects.values_list("integration__name", "external_code", "method__code")
    )
    assert mapped == {
        ("Web shop", "shopify-standard", "standard"),
        ("Web shop", "shopify-express", "express"),
        ("East warehouse", "GROUND", "standard"),
        ("East warehouse", "2DAY", "express"),
    }
    assert list(SkuMapping.objects.values_list("integration__name", "external_sku", "product__sku")) == [
        ("East warehouse", "EW-00417", "HOODIE-M")
    ]


def test_seed_demo_takes_orders_through_every_state(db):
    run("seed_demo")

    web_shop = Integration.objects.get(organization__slug="demo", name="Web shop")
    # Ingested as the channel it is: connected, its orders-in flow on by default.
    assert (web_shop.status, web_shop.flow_orders_in) == (Status.CONNECTED, True)
    demo_orders = {o.number: o for o in Order.objects.filter(source=web_shop)}
    assert {number: o.status for number, o in demo_orders.items()} == {
        "#1001": OrderStatus.READY,
        "#1002": OrderStatus.SENT_TO_FULFILLMENT,
        "#1003": OrderStatus.SENT_TO_FULFILLMENT,
        "#1004": OrderStatus.PARTIALLY_FULFILLED,
        "#1005": OrderStatus.FULFILLED,
        "#1006": OrderStatus.CANCELED,
        "#1007": OrderStatus.ON_HOLD,
        "#1008": OrderStatus.ON_HOLD,
    }
    requests = dict(ShippingRequest.objects.values_list("order__number", "status"))
    assert requests == {
        "#1002": ShippingRequestStatus.PENDING,
        "#1003": ShippingRequestStatus.ACKNOWLEDGED,
        "#1004": ShippingRequestStatus.PARTIALLY_FULFILLED,
        "#1005": ShippingRequestStatus.FULFILLED,
        "#1006": ShippingRequestStatus.CANCELED,
    }
    east = Integration.objects.get(organization__slug="demo", name="East warehouse")
    assert set(ShippingRequest.objects.values_list("location__name", "fulfiller")) == {
        ("East warehouse", east.pk)
    }
    assert {o.shipping_method.code for o in demo_orders.values() if o.shipping_method} == {
        "standard",
        "express",
    }
    for fulfillment in Fulfillment.objects.all():
        assert fulfillment.integration == east
        assert fulfillment.carrier and fulfillment.tracking_number
        assert fulfillment.tracking_url.endswith(fulfillment.tracking_number)
    assert demo_orders["#1007"].hold_reason.startswith("Review")
    assert demo_orders["#1008"].hold_reason == "unmapped SKU GIFT-WRAP"
    exception = SyncException.objects.get(status=ExceptionStatus.OPEN)
    assert (exception.kind, exception.entity_id) == (ExceptionKind.UNMAPPED_SKU, str(demo_orders["#1008"].pk))
    assert OrderLine.objects.filter(order__source=web_shop, product__isnull=True).count() == 1


def test_seed_demo_stock_agrees_with_its_orders(db):
    run("seed_demo")

    levels = {
        (loc, sku): (on_hand, committed)
        for loc, sku, on_hand, committed in InventoryLevel.objects.values_list(
            "location__name", "product__sku", "on_hand", "committed"
        )
    }
    # Sent (#1002, #1003) and the unshipped rest of #1004 commit stock; shipped units left on hand;
    # the canceled #1006 gave its commitment back.
    assert levels["East warehouse", "HOODIE-M"] == (18, 1)
    assert levels["East warehouse", "SOCKS-WOOL"] == (120, 3)
    assert levels["East warehouse", "TOWEL-SET"] == (15, 1)
    assert levels["East warehouse", "TEE-CLASSIC-S"] == (38, 0)
    assert levels["East warehouse", "MUG-STONE"] == (22, 0)
    assert levels["East warehouse", "HOODIE-L"] == (3, 0)
    assert levels["East warehouse", "THROW-LINEN"] == (0, 0)
    assert not any(committed for (loc, _), (_, committed) in levels.items() if loc == "Flagship store")
    # Every commitment is what the open requests still have to ship, and nothing more.
    open_lines = ShippingRequestLine.objects.filter(
        request__status__in=[
            ShippingRequestStatus.PENDING,
            ShippingRequestStatus.ACKNOWLEDGED,
            ShippingRequestStatus.PARTIALLY_FULFILLED,
        ]
    )
    owed = {}
    for line in open_lines.select_related("product", "request__location"):
        key = (line.request.location.name, line.product.sku)
        owed[key] = owed.get(key, 0) + line.quantity - line.fulfilled_quantity
    assert {key: committed for key, (_, committed) in levels.items() if committed} == {
        key: units for key, units in owed.items() if units
    }

    web_shop = Integration.objects.get(organization__slug="demo", name="Web shop")
    available = {
        Product.objects.get(pk=pk).sku: units for pk, units in figures.availability(web_shop).items()
    }
    # Both locations, less commitments, less the 2-unit buffer.
    assert available["SOCKS-WOOL"] == 120 - 3 + 20 - 2
    assert available["CAP-NAVY"] == 5 - 2  # at the store only
    assert (available["CANDLE-CEDAR"], available["THROW-LINEN"]) == (0, 0)


def test_seed_demo_leaves_stock_and_orders_it_finds_as_they_are(db):
    # given the demo, then a stock count and a cancellation by the demo user
    run("seed_demo")
    store = Location.objects.get(name="Flagship store")
    inventory.set_stock(store, [{"sku": "MUG-STONE", "on_hand": 1}])
    ready = Order.objects.get(number="#1001")
    order_services.cancel_order(ready)

    run("seed_demo")

    assert InventoryLevel.objects.get(location=store, product__sku="MUG-STONE").on_hand == 1
    ready.refresh_from_db()
    assert ready.status == OrderStatus.CANCELED
    assert Order.objects.count() == 8


def test_seed_demo_adds_no_orders_while_the_web_shop_takes_none(db):
    # given a demo whose Web shop has its orders-in flow switched off
    demo = Organization.objects.create(slug="demo", name="Demo Outfitters")
    connector = Connector.objects.get(organization=None, key="custom-channel")
    web_shop = lifecycle.handshake(configuration.create_integration(demo, connector, "Web shop"))
    Integration.objects.filter(pk=web_shop.pk).update(flow_orders_in=False)
    err = StringIO()

    out = run("seed_demo", stderr=err)

    assert "switched off" in err.getvalue()
    assert not Order.objects.exists()
    assert Product.objects.filter(organization=demo).count() == 12
    assert "0 orders (none)" in out
    _login(out)
