"""
bench/engines.py's fixture — an organization with its channel, 3PLs, stock, a buffer, a hold rule and a
routing card — and the orders it posts, each with what should become of it (routed where, or held why).
"""

import random
import secrets
from dataclasses import dataclass
from decimal import Decimal

SHIPPING_CODE = "std"  # the channel's code, mapped to the hub method "standard"
REVIEW = "review"  # the hold reason of the bench's rule
RULE_LIMIT = Decimal("500")  # the rule holds orders whose total is more than this
OUTCOMES = ("routed", "held_review", "held_unroutable")


# --- fixture ------------------------------------------------------------------------------------------


@dataclass
class Fixture:
    """The organization the bench created and what the predictions need to know about its stock."""

    org_id: int
    channel_id: int
    channel_key: str
    east: int  # location ids
    west: int
    names: dict[int, str]
    where: dict[str, frozenset[int]]  # sku → the locations that can ship it (none: the SKU is short)
    stocked: list[str]
    short: list[str]
    buffer: int
    tag: str


def create_fixture(product_count: int, on_hand: int, buffer: int) -> Fixture:
    """The organization, its integrations, locations, stock, buffer, automation rule and routing card."""
    from django.db import transaction

    from automations import rules
    from automations.engine_settings import engine_settings
    from automations.models import AutomationRule, RoutingRule, RoutingRuleLocation
    from integrations import configuration, lifecycle
    from integrations.models import Connector
    from inventory import services as inventory
    from inventory.choices import LocationKind
    from inventory.models import InventoryLevel, Location, Product
    from orders.models import ShippingMethod, ShippingMethodMapping
    from organizations.models import Organization
    from tokens import issuing as key_services
    from tokens.choices import KeyKind

    suffix = secrets.token_hex(4)
    org = Organization.objects.create(name=f"Bench engines {suffix}", slug=f"bench-engines-{suffix}")
    connector = Connector.objects.filter(organization=None)
    channel = configuration.create_integration(org, connector.get(key="custom-channel"), "Bench shop")
    tpl = configuration.create_integration(org, connector.get(key="custom-3pl"), "Bench 3PL")
    channel, tpl = lifecycle.handshake(channel), lifecycle.handshake(tpl)
    issued = key_services.issue_key(kind=KeyKind.INTEGRATION, name="Bench shop key", integration=channel)
    if "orders:write" not in issued.key.grants:
        raise SystemExit("The channel key lacks orders:write: the connector's recommended grants changed")
    method = ShippingMethod.objects.create(organization=org, code="standard", name="Standard")
    ShippingMethodMapping.objects.create(integration=channel, external_code=SHIPPING_CODE, method=method)

    def location(name, priority):
        return Location.objects.create(
            organization=org, name=name, kind=LocationKind.THREE_PL, managed_by=tpl, priority=priority
        )

    east, west = location("East", 10), location("West", 20)
    products = Product.objects.bulk_create(
        Product(organization=org, sku=f"ENG-{i:04d}", name=f"Bench product {i}", price=Decimal("20.00"))
        for i in range(product_count)
    )
    short_count = max(2, product_count // 10)
    stocked, short = products[: product_count - short_count], products[product_count - short_count :]
    third = len(stocked) // 3
    where: dict[str, frozenset[int]] = {}
    levels = []
    for index, product in enumerate(stocked):
        at = (east,) if index < third else (east, west) if index < 2 * third else (west,)
        where[product.sku] = frozenset(loc.pk for loc in at)
        levels += [InventoryLevel(product=product, location=loc, on_hand=on_hand) for loc in at]
    for index, product in enumerate(short):
        # Half the short SKUs have exactly the buffer on hand: routable 0, so only the buffer keeps them back.
        where[product.sku] = frozenset()
        levels.append(InventoryLevel(product=product, location=east, on_hand=buffer if index % 2 else 0))
        levels.append(InventoryLevel(product=product, location=west, on_hand=0))
    with transaction.atomic():
        InventoryLevel.objects.bulk_create(levels)
        inventory.mark_changed(org, [p.pk for p in products])
    if buffer:
        inventory.set_default_buffer(org, quantity=buffer)

    settings = engine_settings(org)
    if not all(settings.enabled(e) for e in ("hold", "routing")) or settings.default_hold_minutes:
        raise SystemExit("New organizations no longer start with hold and routing on and no default hold")
    conditions = [{"field": "total", "operator": "gt", "value": str(RULE_LIMIT)}]
    actions = [{"type": "hold", "reason": REVIEW}]
    AutomationRule.objects.create(
        organization=org,
        name=f"Total more than {RULE_LIMIT}: hold for review",
        conditions=rules.validate_conditions(conditions),
        actions=rules.validate_actions(actions, org),
    )
    card = RoutingRule.objects.create(
        organization=org,
        name="Canada ships from West first",
        conditions=rules.validate_conditions([{"field": "country", "operator": "eq", "value": "CA"}]),
        allow_split=True,
        position=10,
    )
    RoutingRuleLocation.objects.bulk_create(
        [
            RoutingRuleLocation(rule=card, location=west, position=0),
            RoutingRuleLocation(rule=card, location=east, position=1),
        ]
    )
    return Fixture(
        org_id=org.pk,
        channel_id=channel.pk,
        channel_key=issued.plaintext,
        east=east.pk,
        west=west.pk,
        names={east.pk: east.name, west.pk: west.name},
        where=where,
        stocked=[p.sku for p in stocked],
        short=[p.sku for p in short],
        buffer=buffer,
        tag=suffix,
    )


# --- orders and what should become of them ------------------------------------------------------------


@dataclass
class Spec:
    """One order the bench sends, and what stock, rule and card say must become of it."""

    external_id: str
    lines: list[tuple[str, int, Decimal]]  # sku, quantity, unit price
    country: str
    total: Decimal
    outcome: str = ""
    locations: frozenset[int] = frozenset()

    def body(self) -> dict:
        return {
            "external_id": self.external_id,
            "number": f"#{self.external_id}",
            "currency": "USD",
            "customer": {"name": "Bench Customer", "email": "bench@example.test"},
            "shipping_address": {
                "name": "Bench Customer",
                "line1": "1 Bench Street",
                "city": "Springfield",
                "postal_code": "12345",
                "country": self.country,
            },
            "shipping_method": SHIPPING_CODE,
            "lines": [{"sku": s, "quantity": q, "unit_price": str(p)} for s, q, p in self.lines],
        }


def predict(spec: Spec, fixture: Fixture) -> tuple[str, frozenset[int]]:
    """
    (outcome, locations) by the rules the engines implement: the hold rule first; then the card (Canada:
    West, East; else East, West by priority), one location that has every line, else a greedy split.
    """
    if spec.total > RULE_LIMIT:
        return "held_review", frozenset()
    where = [fixture.where[sku] for sku, _, _ in spec.lines]
    if any(not at for at in where):
        return "held_unroutable", frozenset()
    order = (fixture.west, fixture.east) if spec.country == "CA" else (fixture.east, fixture.west)
    for loc in order:
        if all(loc in at for at in where):
            return "routed", frozenset({loc})
    # Split: the first location takes every line it has, the second the rest (stock is ample by design).
    return "routed", frozenset(order[0] if order[0] in at else order[1] for at in where)


def make_specs(fixture: Fixture, count: int, prefix: str, rng: random.Random, args) -> list[Spec]:
    """`count` orders: 1–3 lines of stocked SKUs; a share made big (held), short (unroutable), Canadian."""
    specs = []
    for n in range(count):
        skus = rng.sample(fixture.stocked, rng.randint(1, 3))
        lines = [(sku, rng.randint(1, 3), Decimal(rng.randint(500, 4000)) / 100) for sku in skus]
        if rng.random() < args.short_share:
            lines[-1] = (rng.choice(fixture.short), lines[-1][1], lines[-1][2])
        if rng.random() < args.big_share:
            lines[0] = (lines[0][0], 2, Decimal("300.00"))  # 600 on its own: over the rule's 500
        country = "CA" if rng.random() < args.canada_share else "US"
        spec = Spec(f"{prefix}-{n:05d}", lines, country, sum((q * p for _, q, p in lines), Decimal(0)))
        spec.outcome, spec.locations = predict(spec, fixture)
        specs.append(spec)
    return specs
