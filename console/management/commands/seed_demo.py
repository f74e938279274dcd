"""
`seed_demo`: demo organizations, users, integrations, catalog, stock and orders; idempotent, so `make run`
runs it every time.
"""

import secrets
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from guardian.shortcuts import assign_perm

from automations.models import AutomationRule, RoutingRule, RoutingRuleLocation
from core.signing import new_secret, payload
from integrations import configuration, lifecycle
from integrations.catalog import CHANNEL_GRANTS
from integrations.choices import IntegrationStatus as Status
from integrations.choices import Workflow
from integrations.management.commands._common import ACTOR, describe
from integrations.models import Connector, Integration, WebhookAttempt, WebhookDelivery, WebhookSubscription
from inventory import services as inventory
from inventory.choices import LocationKind
from inventory.models import InventoryBuffer, InventoryLevel, Location, Product, SkuMapping
from orders import services as orders
from orders.choices import OrderStatus
from orders.models import Order, ShippingMethod, ShippingMethodMapping
from organizations.choices import Role
from organizations.models import Membership, Organization

ADMIN_EMAIL = "admin@demo.example"
MEMBER_EMAIL = "member@demo.example"
NORTHWIND_ADMIN_EMAIL = "admin@northwind.example"
MEMBER_SEES = "Web shop"

WEST_ERROR = (
    "10 consecutive webhook deliveries failed; last: HTTP 503 Service Unavailable from "
    "https://wms-west.demo.example/switchyard/webhooks"
)

STOREFRONT = {
    "key": "demo-storefront",
    "name": "Demo storefront (manifest)",
    "type": "channel",
    "description": "A storefront publishing a manifest: the hub calls it for orders, dispatch and stock.",
    "recommended_grants": CHANNEL_GRANTS,
    "settings_schema": {
        "type": "object",
        "additionalProperties": False,
        # The token is required too: without it the hub cannot sign in to the storefront's endpoints.
        "required": ["base_url", "auth_token"],
        "properties": {
            "base_url": {"type": "string", "format": "uri", "title": "Base URL"},
            "auth_token": {"type": "string", "writeOnly": True, "title": "Auth token"},
        },
    },
    "mapping_kinds": ["shipping_methods", "skus"],
    "manifest": {
        "health": "/health",
        "orders": "/orders",
        "dispatch": "/dispatch",
        "inventory": "/inventory",
    },
}

# (organization slug, name, connector key, settings, status to leave it in)
INTEGRATIONS = [
    (
        "demo",
        "Web shop",
        "custom-channel",
        {"store_url": "https://shop.demo.example", "default_currency": "USD"},
        Status.CONNECTED,
    ),
    ("demo", "Marketplace", "custom-marketplace", {}, Status.CONNECTING),
    ("demo", "East warehouse", "custom-3pl", {"acknowledge_within_minutes": 120}, Status.CONNECTED),
    ("demo", "Back office ERP", "custom-erp", {}, Status.DISABLED),
    ("demo", "West warehouse", "custom-wms", {}, Status.ERROR),
    ("demo", "Demo storefront", STOREFRONT["key"], {}, Status.NOT_CONFIGURED),  # required settings missing
    (
        "northwind",
        "Northwind shop",
        "custom-channel",
        {"store_url": "https://shop.northwind.example", "default_currency": "EUR"},
        Status.CONNECTED,
    ),
]

CHANNEL, WAREHOUSE = "Web shop", "East warehouse"  # the demo's channel and its 3PL (both in INTEGRATIONS)
STORE = "Flagship store"

# (SKU, name, price, weight in kg)
PRODUCTS = [
    ("TEE-CLASSIC-S", "Classic tee, S", "24.00", "0.180"),
    ("TEE-CLASSIC-M", "Classic tee, M", "24.00", "0.200"),
    ("TEE-CLASSIC-L", "Classic tee, L", "24.00", "0.220"),
    ("HOODIE-M", "Fleece hoodie, M", "68.00", "0.650"),
    ("HOODIE-L", "Fleece hoodie, L", "68.00", "0.700"),
    ("CAP-NAVY", "Canvas cap, navy", "22.00", "0.120"),
    ("SOCKS-WOOL", "Wool socks", "14.00", "0.090"),
    ("MUG-STONE", "Stoneware mug", "18.00", "0.420"),
    ("CANDLE-CEDAR", "Cedar candle", "32.00", "0.380"),
    ("THROW-LINEN", "Linen throw", "95.00", "1.100"),
    ("VASE-CLAY", "Clay vase", "45.00", "0.900"),
    ("TOWEL-SET", "Bath towel set", "52.00", "1.300"),
]

# Opening on-hand counts: SKU → (East warehouse, Flagship store). Some low or zero, so availability varies.
STOCK = {
    "TEE-CLASSIC-S": (40, 6),
    "TEE-CLASSIC-M": (55, 8),
    "TEE-CLASSIC-L": (30, 4),
    "HOODIE-M": (18, 2),
    "HOODIE-L": (3, 0),
    "CAP-NAVY": (0, 5),
    "SOCKS-WOOL": (120, 20),
    "MUG-STONE": (24, 6),
    "CANDLE-CEDAR": (2, 1),
    "THROW-LINEN": (0, 0),
    "VASE-CLAY": (7, 3),
    "TOWEL-SET": (15, 0),
}
BUFFER_UNITS = 2  # held back org-wide from every channel

# (hub code, name, Web shop code, 3PL code)
SHIPPING_METHODS = [
    ("standard", "Standard", "shopify-standard", "GROUND"),
    ("express", "Express", "shopify-express", "2DAY"),
]
WAREHOUSE_SKUS = {"HOODIE-M": "EW-00417"}  # the 3PL's own code for one product
SHIPPING_CHARGES = {"shopify-standard": "5.00", "shopify-express": "15.00"}
UNKNOWN_SKU_PRICE = "4.00"  # what the shop charges for the line the hub has no product for

CUSTOMERS = [
    ("Ada Lovelace", "ada@example.test", "12 Analytical Way", "London", "N1 9GU", "GB"),
    ("Grace Hopper", "grace@example.test", "1 Harbor Road", "Arlington", "22201", "US"),
    ("Alan Turing", "alan@example.test", "7 Bletchley Lane", "Wilmslow", "SK9 1AA", "GB"),
    ("Katherine Johnson", "katherine@example.test", "44 Langley Blvd", "Hampton", "23666", "US"),
]

# (number, customer index, Web shop shipping code, [(SKU as the shop sends it, quantity)], what happens next).
# "GIFT-WRAP" is no product of the catalog: that order is held with an open unmapped-SKU exception.
ORDERS = [
    ("1001", 0, "shopify-standard", [("TEE-CLASSIC-M", 2), ("MUG-STONE", 1)], "ready"),
    ("1002", 1, "shopify-express", [("HOODIE-M", 1), ("SOCKS-WOOL", 3)], "sent"),
    ("1003", 2, "shopify-standard", [("TEE-CLASSIC-L", 1), ("VASE-CLAY", 1)], "acknowledged"),
    ("1004", 3, "shopify-standard", [("TEE-CLASSIC-S", 2), ("TOWEL-SET", 1)], "partial"),
    ("1005", 0, "shopify-express", [("MUG-STONE", 2), ("CANDLE-CEDAR", 1)], "fulfilled"),
    ("1006", 1, "shopify-standard", [("HOODIE-L", 1)], "canceled"),
    ("1007", 2, "shopify-express", [("TEE-CLASSIC-M", 6), ("HOODIE-M", 2)], "review"),
    ("1008", 3, "shopify-standard", [("SOCKS-WOOL", 1), ("GIFT-WRAP", 1)], "unknown_sku"),
]
REVIEW_REASON = "Review: large first order, check the address before shipping."
CANCEL_REASON = "Customer changed their mind."


class Command(BaseCommand):
    help = (
        "Create the demo data: organizations 'demo' (Demo Outfitters) and 'northwind' (Northwind Goods), "
        "their integrations, an org admin, a member and a Northwind admin; for Demo Outfitters also products, "
        "two locations with stock, shipping methods and orders in every state. Safe to run again: nothing is "
        "duplicated and what exists (integrations, products, stock, orders) is left as it is, but the demo "
        "users' password is reset each run, to --password or a new random one. The last line printed is the "
        "admin login."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Password for the demo users (default: a new random one).")

    def handle(self, *args, **options):
        User = get_user_model()
        password = options["password"]
        if password:
            try:
                validate_password(password, user=User(username=ADMIN_EMAIL, email=ADMIN_EMAIL))
            except ValidationError as exc:
                raise CommandError("The password was refused:\n  " + "\n  ".join(exc.messages)) from exc
        else:
            password = secrets.token_urlsafe(16)

        with transaction.atomic():
            orgs = {
                "demo": self._organization("demo", "Demo Outfitters", "ops@demo.example"),
                "northwind": self._organization("northwind", "Northwind Goods", "ops@northwind.example"),
            }
            self._user(ADMIN_EMAIL, password, orgs["demo"], Role.ADMIN)
            member = self._user(MEMBER_EMAIL, password, orgs["demo"], Role.MEMBER)
            self._user(NORTHWIND_ADMIN_EMAIL, password, orgs["northwind"], Role.ADMIN)
            Connector.objects.get_or_create(
                organization=orgs["demo"],
                key=STOREFRONT["key"],
                defaults={k: v for k, v in STOREFRONT.items() if k != "key"},
            )
            created, demo_integrations = 0, {}
            for slug, name, key, settings, status in INTEGRATIONS:
                integration, new = self._integration(orgs[slug], name, key, settings, status)
                created += new
                if slug == "demo":
                    demo_integrations[name] = integration
                if slug == "demo" and name == MEMBER_SEES:
                    assign_perm("integrations.view_integration", member, integration)
            new_orders = self._commerce(
                orgs["demo"], demo_integrations[CHANNEL], demo_integrations[WAREHOUSE]
            )
            self._webhooks(demo_integrations[CHANNEL])
            self._automations(orgs["demo"])

        self.stdout.write(
            f"Demo organizations: demo (Demo Outfitters), northwind (Northwind Goods); "
            f"{created} integration(s) created, {len(INTEGRATIONS) - created} already there."
        )
        self.stdout.write(self._summary(orgs["demo"], new_orders))
        self.stdout.write(
            f"Same password for {MEMBER_EMAIL} (member, sees {MEMBER_SEES!r} only) and "
            f"{NORTHWIND_ADMIN_EMAIL} (admin of Northwind Goods)."
        )
        self.stdout.write(f"Login: {ADMIN_EMAIL} / {password}")

    def _automations(self, org):
        """Two automation rules and a routing card the demo's admin can read, edit and dry-run."""
        rules = [
            (
                "Hold orders over 500 for review",
                10,
                [{"field": "total", "operator": "gt", "value": "500"}],
                [{"type": "hold", "reason": "review: order over 500"}],
            ),
            (
                "Tag express orders",
                20,
                [{"field": "shipping_method", "operator": "eq", "value": "express"}],
                [{"type": "add_tag", "tag": "express"}],
            ),
        ]
        for name, position, conditions, actions in rules:
            AutomationRule.objects.get_or_create(
                organization=org,
                name=name,
                defaults={"position": position, "conditions": conditions, "actions": actions},
            )
        card, new = RoutingRule.objects.get_or_create(
            organization=org,
            name="Express orders ship from the 3PL, else the store",
            defaults={
                "position": 10,
                "conditions": [{"field": "shipping_method", "operator": "eq", "value": "express"}],
                "allow_split": True,
            },
        )
        if new:
            for position, name in enumerate((WAREHOUSE, STORE)):
                location = Location.objects.filter(organization=org, name=name).first()
                if location is not None:
                    RoutingRuleLocation.objects.create(rule=card, location=location, position=position)

    def _organization(self, slug, name, email):
        org, _ = Organization.objects.get_or_create(
            slug=slug, defaults={"name": name, "notification_email": email}
        )
        return org

    def _user(self, email, password, org, role):
        """The demo user as the demo needs it (staff, never superuser), with this run's password."""
        user, _ = get_user_model().objects.get_or_create(username=email, defaults={"email": email})
        user.email, user.is_staff, user.is_superuser, user.is_active = email, True, False, True
        user.set_password(password)
        user.save()
        Membership.objects.update_or_create(user=user, organization=org, defaults={"role": role})
        return user

    def _integration(self, org, name, key, settings, status) -> tuple[Integration, bool]:
        existing = Integration.objects.filter(organization=org, name=name).first()
        if existing is not None:
            return existing, False  # left as it is: the demo user may have changed it on purpose
        connector = (
            Connector.objects.filter(organization=org, key=key).first()
            or Connector.objects.filter(organization__isnull=True, key=key).first()
        )
        if connector is None:
            raise CommandError(f"Catalog connector {key!r} is missing; run `manage.py migrate` first.")
        integration = configuration.create_integration(org, connector, name, settings=settings, actor=ACTOR)
        # Through the lifecycle services, as a real integration would get there.
        if status == Status.CONNECTED:
            lifecycle.handshake(integration, actor=ACTOR)
        elif status == Status.DISABLED:
            lifecycle.disable(integration, actor=ACTOR, reason="Demo: not in use yet.")
        elif status == Status.ERROR:
            lifecycle.report_error(integration, WEST_ERROR, actor=ACTOR)
        return integration, True

    # --- webhook deliveries of the demo ------------------------------------------------------------------

    def _webhooks(self, channel) -> None:
        """
        A switched-off subscription of the web shop with delivered and dead deliveries, so the deliveries
        pages have something to show. Off (a 410, as if the shop had moved), so nothing is sent from the
        demo to an address that does not exist.
        """
        if channel.webhook_subscriptions.exists():
            return
        now = timezone.now()
        subscription = WebhookSubscription.objects.create(
            integration=channel,
            url="https://shop.demo.example/switchyard/webhooks",
            event_types=["order.created", "order.updated", "fulfillment.created"],
            secret=new_secret(),
            active=False,
            disabled_reason="The receiver answered 410 Gone.",
            disabled_at=now,
        )
        events = list(channel.outbox_events.filter(type__startswith="order.").order_by("pk")[:6])
        for sequence, event in enumerate(events, start=1):
            dead = sequence > 4
            event_id = f"evt_demo{sequence:016d}"
            delivery = WebhookDelivery.objects.create(
                organization_id=channel.organization_id,
                integration=channel,
                subscription=subscription,
                outbox_event=event,
                event_id=event_id,
                event_type=event.type,
                sequence=sequence,
                body=payload(event_id, event.type, event.created_at, sequence, event.payload).decode(),
                status="dead" if dead else "succeeded",
                attempts=10 if dead else 1,
                next_attempt_at=now,
                last_attempt_at=now,
                last_status_code=503 if dead else 200,
                last_response="Service Unavailable" if dead else "ok",
                last_duration_ms=120 if dead else 35,
                succeeded_at=None if dead else now,
            )
            WebhookAttempt.objects.create(
                delivery=delivery,
                number=delivery.attempts,
                url=subscription.url,
                request_headers={"webhook-id": event_id, "content-type": "application/json"},
                status_code=delivery.last_status_code,
                response_excerpt=delivery.last_response,
                duration_ms=delivery.last_duration_ms,
                succeeded=not dead,
                started_at=now,
            )
        WebhookSubscription.objects.filter(pk=subscription.pk).update(last_sequence=len(events))

    # --- catalog, stock and orders of the demo organization ------------------------------------------

    def _commerce(self, org, channel, warehouse) -> int:
        """Create what is missing of the demo's catalog, stock, mappings and orders; returns orders created."""
        missing = {sku for sku, *_ in PRODUCTS} - set(
            Product.objects.filter(organization=org).values_list("sku", flat=True)
        )
        if missing:
            inventory.upsert_products(
                org,
                [
                    {"sku": sku, "name": name, "price": Decimal(price), "weight": Decimal(weight)}
                    for sku, name, price, weight in PRODUCTS
                    if sku in missing
                ],
            )
        products = {p.sku: p for p in Product.objects.filter(organization=org, sku__in=STOCK)}

        east, _ = Location.objects.get_or_create(
            organization=org,
            name=WAREHOUSE,
            defaults={"kind": LocationKind.THREE_PL, "managed_by": warehouse, "priority": 1},
        )
        store, _ = Location.objects.get_or_create(
            organization=org, name=STORE, defaults={"kind": LocationKind.STORE, "priority": 5}
        )
        InventoryBuffer.objects.get_or_create(
            organization=org, location=None, product=None, channel=None, defaults={"quantity": BUFFER_UNITS}
        )

        for code, name, channel_code, warehouse_code in SHIPPING_METHODS:
            method, _ = ShippingMethod.objects.get_or_create(
                organization=org, code=code, defaults={"name": name}
            )
            for integration, external in ((channel, channel_code), (warehouse, warehouse_code)):
                taken = Q(external_code=external) | Q(method=method)  # either side mapped already: left alone
                if not ShippingMethodMapping.objects.filter(taken, integration=integration).exists():
                    ShippingMethodMapping.objects.create(
                        integration=integration, external_code=external, method=method
                    )
        for sku, external in WAREHOUSE_SKUS.items():
            taken = Q(external_sku=external) | Q(product=products[sku])
            if not SkuMapping.objects.filter(taken, integration=warehouse).exists():
                SkuMapping.objects.create(integration=warehouse, external_sku=external, product=products[sku])

        # Opening stock only where a product has none yet: a later run must not undo shipments or edits.
        for location, column, pushed_by in ((east, 0, warehouse), (store, 1, None)):
            stocked = set(
                InventoryLevel.objects.filter(location=location).values_list("product__sku", flat=True)
            )
            # The 3PL pushes its own stock, in its own SKUs where it has them.
            own = inventory.external_skus(pushed_by, [p.pk for p in products.values()])
            items = [
                {"sku": own.get(products[sku].pk, sku), "on_hand": counts[column]}
                for sku, counts in STOCK.items()
                if sku not in stocked
            ]
            if items:
                inventory.set_stock(location, items, integration=pushed_by)

        if not channel.workflow_enabled(Workflow.ORDERS_IN):
            self.stderr.write(f"{CHANNEL!r} has its “Orders in” flow switched off: no demo orders added.")
            return 0
        existing = set(Order.objects.filter(source=channel).values_list("external_id", flat=True))
        created = 0
        for number, *rest in ORDERS:
            if f"DEMO-{number}" in existing:
                continue  # left as it is, wherever the demo user took it since
            try:
                # One order the demo can no longer take through (say, a location switched off) spoils no other.
                with transaction.atomic():
                    self._order(channel, warehouse, east, number, *rest)
            except (orders.OrderConflict, ValidationError) as exc:
                reason = describe(exc) if isinstance(exc, ValidationError) else str(exc)
                self.stderr.write(f"Demo order #{number} not added: {reason}")
                continue
            created += 1
        return created

    def _order(self, channel, warehouse, location, number, customer, method, lines, outcome):
        """Ingest one demo order as the Web shop sends it, then take it where `outcome` says."""
        name, email, line1, city, postal_code, country = CUSTOMERS[customer]
        prices = {sku: price for sku, _, price, _ in PRODUCTS}
        order, _ = orders.ingest_order(
            channel,
            {
                "external_id": f"DEMO-{number}",
                "number": f"#{number}",
                "currency": "USD",
                "customer": {"name": name, "email": email},
                "shipping_address": {
                    "name": name,
                    "line1": line1,
                    "city": city,
                    "postal_code": postal_code,
                    "country": country,
                },
                "shipping_method": method,
                "shipping_total": SHIPPING_CHARGES[method],
                "lines": [
                    {"sku": sku, "quantity": qty, "unit_price": prices.get(sku, UNKNOWN_SKU_PRICE)}
                    for sku, qty in lines
                ],
            },
        )
        # The demo's orders have been through the hold engine already (no rule held them).
        order = orders.make_ready(order)
        if outcome == "review":
            orders.hold(order, REVIEW_REASON)
        if outcome in ("ready", "review", "unknown_sku"):
            return  # the unknown SKU held it already, with an open exception
        request = orders.create_shipping_request(order, location)  # commits its stock there
        if outcome == "canceled":
            orders.cancel_order(order, reason=CANCEL_REASON)  # the commitment is released again
            return
        if outcome != "sent":
            request = orders.acknowledge(request)  # as the 3PL does when it pulls the request
        if outcome in ("partial", "fulfilled"):
            request_lines = list(request.lines.order_by("pk"))
            tracking = f"1ZDEMO{number}01"
            orders.create_fulfillment(
                request,
                {
                    "external_id": f"EW-SHIP-{number}-1",
                    "carrier": "UPS",
                    "tracking_number": tracking,
                    "tracking_url": f"https://www.ups.com/track?tracknum={tracking}",
                    # partial: the first line only, the rest still to come
                    "lines": [
                        (rl.product_id, rl.quantity)
                        for rl in (request_lines[:1] if outcome == "partial" else request_lines)
                    ],
                },
                integration=warehouse,
            )

    def _summary(self, org, new_orders) -> str:
        by_status = dict(
            Order.objects.filter(organization=org).values_list("status").annotate(n=Count("pk")).order_by()
        )
        statuses = ", ".join(
            f"{by_status[s]} {label.lower()}" for s, label in OrderStatus.choices if by_status.get(s)
        )
        return (
            f"Demo Outfitters: {Product.objects.filter(organization=org).count()} products, "
            f"{Location.objects.filter(organization=org).count()} locations, "
            f"{sum(by_status.values())} orders ({statuses or 'none'}); {new_orders} order(s) created this run."
        )
