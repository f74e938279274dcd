"""
Properties of the inventory arithmetic (inventory/buffers.py, inventory/figures.py, inventory/sync.py,
inventory/services.py, inventory/allocation.py), checked on PostgreSQL against a reference written here from
the rules as docs/connectors/08-inventory.md states them:

* per location: free = max(0, on_hand − committed (+ incoming if the channel sells it)); one buffer applies,
  the most specific that matches, in the order location+product+channel > product+channel > location+product
  > location+channel > product > channel > location > organization-wide;
* per channel: a location's own buffer comes off that location's stock, the best buffer without a location
  off the pooled rest; never below 0; a channel sells from its linked locations, else every active selling
  one; an inactive product sells nothing;
* the PostgreSQL statement and the Python fallback both give exactly those figures (so they agree), the
  recompute stores them, and recomputing only what changed gives what a full recompute gives;
* stock operations never drive on_hand or committed below zero, and routing never commits beyond
  on_hand − committed − buffer.

Each example runs in a savepoint rolled back at its end, so examples never see each other's rows.
"""

import math
from fractions import Fraction
from itertools import count

import pytest
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory import allocation, figures, services, sync
from inventory.buffers import PRECEDENCE as SCOPES
from inventory.buffers import pick_buffer
from inventory.models import (
    ChannelInventory,
    ChannelLocation,
    InventoryBuffer,
    InventoryLevel,
    Location,
    Product,
)

# The precedence of buffer scopes, most specific first: the rule, spelled out rather than computed.
PRECEDENCE = [
    {"location", "product", "channel"},
    {"product", "channel"},
    {"location", "product"},
    {"location", "channel"},
    {"product"},
    {"channel"},
    {"location"},
    set(),
]

PROPERTY_SETTINGS = settings(max_examples=40, derandomize=True, database=None, deadline=None)


def held_back(buffer, free: int) -> int:
    """Units a buffer keeps from `free` (a percent rounds up: never oversell by a fraction)."""
    if buffer is None or free <= 0:
        return 0
    if buffer["quantity"] is not None:
        return buffer["quantity"]
    return math.ceil(Fraction(free) * Fraction(str(buffer["percent"])) / 100)


def winning_buffer(buffers, *, location, product, channel):
    """The reference's pick: the first scope in PRECEDENCE with a buffer matching this stock."""
    wanted = {"location": location, "product": product, "channel": channel}
    for scope in PRECEDENCE:
        for b in buffers:
            if {k for k in wanted if b[k] is not None} == scope and all(b[k] == wanted[k] for k in scope):
                return b
    return None


def reference_availability(world, channel) -> dict[int, int]:
    """{product: what `channel` may sell} from the world's plain data, by the rules in the module docstring."""
    links = world["links"].get(channel, set())
    selling = {loc for loc, flags in world["locations"].items() if flags["active"] and flags["sells"]}
    locations = selling & links if links else selling
    buffers = [b for b in world["buffers"] if b["channel"] in (None, channel)]
    result = {}
    for product, active in world["products"].items():
        located = pooled = 0
        for location in locations:
            level = world["levels"].get((product, location))
            if level is None:
                continue
            incoming = level["incoming"] if world["sells_incoming"].get(channel) else 0
            free = max(level["on_hand"] - level["committed"] + incoming, 0)
            b = winning_buffer(buffers, location=location, product=product, channel=channel)
            if b is not None and b["location"] is not None:
                located += max(free - held_back(b, free), 0)
            else:
                pooled += free
        b = winning_buffer(buffers, location=None, product=product, channel=channel)
        result[product] = located + max(pooled - held_back(b, pooled), 0) if active else 0
    return result


# --- pick_buffer, without the database -----------------------------------------------------------------


def test_the_precedence_table_is_the_rule():
    """inventory.buffers.PRECEDENCE, which pick_buffer and the generated SQL both read, is the stated order."""
    assert [set(scope.fields) for scope in SCOPES] == PRECEDENCE


@st.composite
def buffer_sets(draw):
    """Unsaved buffers of distinct scopes over 2 locations, 2 products and 2 channels."""
    scopes = draw(
        st.lists(st.tuples(*(st.sampled_from([None, 1, 2]) for _ in range(3))), unique=True, max_size=12)
    )
    return [
        InventoryBuffer(location_id=loc, product_id=prod, channel_id=chan, quantity=index + 1)
        for index, (loc, prod, chan) in enumerate(scopes)
    ]


@PROPERTY_SETTINGS
@given(
    buffers=buffer_sets(),
    location=st.sampled_from([None, 1, 2]),
    product=st.sampled_from([1, 2]),
    channel=st.sampled_from([None, 1, 2]),
)
def test_pick_buffer_follows_the_precedence(buffers, location, product, channel):
    plain = [
        {"location": b.location_id, "product": b.product_id, "channel": b.channel_id, "quantity": b.quantity}
        for b in buffers
    ]
    expected = winning_buffer(plain, location=location, product=product, channel=channel)

    picked = pick_buffer(buffers, location_id=location, product_id=product, channel_id=channel)

    assert (picked.quantity if picked else None) == (expected["quantity"] if expected else None)


# --- availability and the recompute, on the database ------------------------------------------------------

LEVEL = st.fixed_dictionaries(
    {
        "on_hand": st.integers(0, 40),
        "committed": st.integers(0, 40),
        "incoming": st.integers(0, 10),
    }
)
AMOUNT = st.one_of(
    st.tuples(st.integers(0, 15), st.none()),
    st.tuples(st.none(), st.sampled_from(["0", "10", "12.5", "33.33", "50", "99.99", "100"])),
)


@st.composite
def worlds(draw):
    """Plain data for 1–3 products, 1–3 locations, 1–2 channels, their links, buffers and stock levels."""
    products = draw(st.lists(st.booleans(), min_size=1, max_size=3))  # active?
    locations = draw(
        st.lists(
            st.fixed_dictionaries({"active": st.booleans(), "sells": st.booleans()}), min_size=1, max_size=3
        )
    )
    channels = draw(st.lists(st.booleans(), min_size=1, max_size=2))  # sells incoming stock?
    links = {c: draw(st.sets(st.sampled_from(range(len(locations))))) for c in range(len(channels))}
    pairs = [(p, loc) for p in range(len(products)) for loc in range(len(locations))]
    levels = {pair: draw(LEVEL) for pair in draw(st.sets(st.sampled_from(pairs)))}
    scopes = draw(
        st.sets(
            st.tuples(
                st.one_of(st.none(), st.sampled_from(range(len(locations)))),
                st.one_of(st.none(), st.sampled_from(range(len(products)))),
                st.one_of(st.none(), st.sampled_from(range(len(channels)))),
            ),
            max_size=6,
        )
    )
    buffers = [(scope, draw(AMOUNT)) for scope in sorted(scopes, key=repr)]
    return {
        "products": products,
        "locations": locations,
        "channels": channels,
        "links": links,
        "levels": levels,
        "buffers": buffers,
    }


@pytest.fixture
def build(org, channel_connector, make_integration):
    """`build(plain)` → the world in the database, and its plain data keyed by database ids."""
    names = count()

    def make(plain):
        products = [
            Product.objects.create(organization=org, sku=f"P{i}", name=f"P{i}", active=active)
            for i, active in enumerate(plain["products"])
        ]
        locations = [
            Location.objects.create(organization=org, name=f"L{next(names)}", **flags)
            for flags in plain["locations"]
        ]
        channels = [
            make_integration(org, channel_connector, f"Shop {next(names)}", settings={})
            for _ in plain["channels"]
        ]
        for channel, incoming in zip(channels, plain["channels"], strict=True):
            channel.settings = {**(channel.settings or {}), "sell_incoming_stock": incoming}
            channel.save(update_fields=["settings"])
        for c, linked in plain["links"].items():
            for loc in linked:
                ChannelLocation.objects.create(channel=channels[c], location=locations[loc])
        for (p, loc), level in plain["levels"].items():
            InventoryLevel.objects.create(product=products[p], location=locations[loc], **level)
        for (loc, p, c), (quantity, percent) in plain["buffers"]:
            InventoryBuffer.objects.create(
                organization=org,
                location=locations[loc] if loc is not None else None,
                product=products[p] if p is not None else None,
                channel=channels[c] if c is not None else None,
                quantity=quantity,
                percent=percent,
            )
        world = {
            "products": {products[i].pk: active for i, active in enumerate(plain["products"])},
            "locations": {locations[i].pk: flags for i, flags in enumerate(plain["locations"])},
            "sells_incoming": {channels[i].pk: inc for i, inc in enumerate(plain["channels"])},
            "links": {
                channels[c].pk: {locations[loc].pk for loc in linked} for c, linked in plain["links"].items()
            },
            "levels": {
                (products[p].pk, locations[loc].pk): dict(level)
                for (p, loc), level in plain["levels"].items()
            },
            "buffers": [
                {
                    "location": locations[loc].pk if loc is not None else None,
                    "product": products[p].pk if p is not None else None,
                    "channel": channels[c].pk if c is not None else None,
                    "quantity": quantity,
                    "percent": percent,
                }
                for (loc, p, c), (quantity, percent) in plain["buffers"]
            ],
        }
        return world, products, locations, channels

    return make


def stored_figures(channel) -> dict[int, int]:
    return dict(ChannelInventory.objects.filter(channel=channel).values_list("product_id", "available"))


@pytest.mark.django_db
def test_availability_and_the_recompute_agree_with_the_reference(build, org):
    @PROPERTY_SETTINGS
    @given(plain=worlds())
    def check(plain):
        with transaction.atomic():
            world, products, _, channels = build(plain)

            sync.recompute(org)

            for channel in channels:
                expected = reference_availability(world, channel.pk)
                ids = [p.pk for p in products]
                assert figures.availability(channel, ids) == expected  # the one statement
                assert figures.availability_in_python(channel, ids) == expected  # the fallback
                assert stored_figures(channel) == expected
            transaction.set_rollback(True)

    check()


# --- stock operations and routing, step by step -------------------------------------------------------------

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 30)),
        st.tuples(st.just("route"), st.integers(1, 12)),
        st.tuples(st.just("release"), st.integers(1, 12)),
        st.tuples(st.just("ship"), st.integers(1, 12)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.django_db
def test_stock_operations_keep_the_arithmetic(build, org):
    """
    Set, route (through lock_and_check, then commit), release and ship on one product at one of two
    locations, with buffers: the levels follow the model, never go negative, routing never commits more than
    is routable, and after each step the incremental recompute equals the reference and a full recompute
    finds nothing left to change.
    """

    @PROPERTY_SETTINGS
    @given(
        buffers=st.lists(st.tuples(st.sampled_from(["org", "location", "product"]), AMOUNT), max_size=3),
        steps=st.lists(st.tuples(st.sampled_from([0, 1]), OPERATIONS.map(tuple)), min_size=1, max_size=2),
    )
    def check(buffers, steps):
        plain = {
            "products": [True],
            "locations": [{"active": True, "sells": True}, {"active": True, "sells": True}],
            "channels": [False],
            "links": {},
            "levels": {},
            "buffers": [
                (
                    {"org": (None, None, None), "location": (0, None, None), "product": (None, 0, None)}[
                        kind
                    ],
                    amount,
                )
                for kind, amount in dict(buffers).items()
            ],
        }
        with transaction.atomic():
            world, (product,), locations, (channel,) = build(plain)
            sync.recompute(org)
            model = {loc.pk: {"on_hand": 0, "committed": 0, "incoming": 0} for loc in locations}
            for location_index, operations in steps:
                location = locations[location_index]
                level = model[location.pk]
                for op, qty in operations:
                    if op == "set":
                        services.set_stock(location, [{"sku": product.sku, "on_hand": qty}])
                        level["on_hand"] = qty
                    elif op == "route":
                        with transaction.atomic():
                            short = allocation.lock_and_check(
                                org.pk, channel.pk, {(product.pk, location.pk): qty}
                            )
                            if not short:
                                services.commit_stock(location.pk, {product.pk: qty})
                        # Routing keeps the winning buffer back from on hand at each location.
                        winner = winning_buffer(
                            world["buffers"], location=location.pk, product=product.pk, channel=channel.pk
                        )
                        reserve = held_back(winner, level["on_hand"])
                        routable = max(level["on_hand"] - level["committed"] - reserve, 0)
                        assert (not short) == (qty <= routable), (short, qty, routable)
                        if not short:
                            level["committed"] += qty
                            assert level["committed"] <= level["on_hand"] - reserve
                    elif op == "release":
                        services.release_stock(location.pk, {product.pk: qty})
                        level["committed"] = max(level["committed"] - qty, 0)
                    else:
                        services.ship_stock(location.pk, {product.pk: qty})
                        level["committed"] = max(level["committed"] - qty, 0)
                        level["on_hand"] = max(level["on_hand"] - qty, 0)

                    rows = {
                        lv.location_id: {
                            "on_hand": lv.on_hand,
                            "committed": lv.committed,
                            "incoming": lv.incoming,
                        }
                        for lv in InventoryLevel.objects.filter(product=product)
                    }
                    for loc_id, values in rows.items():
                        assert values == model[loc_id], (op, qty)
                        assert values["on_hand"] >= 0 and values["committed"] >= 0
                    world["levels"] = {(product.pk, loc_id): values for loc_id, values in rows.items()}

                    # The engine's incremental step, for the one product that changed…
                    sync.recompute(org, [product.pk])
                    expected = reference_availability(world, channel.pk)
                    assert stored_figures(channel) == expected, (op, qty)
                    # …leaves nothing for a full recompute to change.
                    assert sync.recompute(org)["changed"] == 0
            transaction.set_rollback(True)

    check()
