"""
What a sales channel may sell of each product: its figures. Per location the channel sells from, on hand −
committed (+ incoming when the channel sells incoming stock), never below 0; one buffer applies to each
location's stock, the one `inventory.buffers.PRECEDENCE` ranks first: a location's own buffer comes off that
location's stock, a buffer without a location (product, channel or org-wide) once off the sum of the locations
it wins for. Never below 0; a discontinued (inactive) or archived product sells nothing.

On PostgreSQL one statement computes them, generated here from the precedence table: `availability()` (the
API's GET /availability) reads it for a page of products, and the inventory engine (inventory.sync) wraps the
same CTEs to store and announce the figures of a whole catalog — one implementation for both. On other
databases (SQLite under `make run`) `availability_in_python` is the fallback: the same rules over the rows in
Python, slower. tests/hardening/test_properties_inventory.py holds the two to the rules, and to each other.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, Sum

from .buffers import PRECEDENCE, Scope, pick_buffer
from .models import ChannelLocation, InventoryBuffer, InventoryLevel, Location, Product


def sells_incoming(channel) -> bool:
    """Whether the channel's settings let it sell stock that is still on its way."""
    return bool((channel.settings or {}).get("sell_incoming_stock"))


def channel_locations(channel):
    """The locations a channel sells from: its explicit links, else every active selling location."""
    linked = ChannelLocation.objects.filter(channel=channel)
    if linked.exists():
        # Links restrict even when every linked location is switched off: then it sells nothing.
        return Location.objects.filter(pk__in=linked.values("location_id"), active=True, sells=True)
    return Location.objects.filter(organization_id=channel.organization_id, active=True, sells=True)


def availability(channel, product_ids=None, *, include_incoming=None) -> dict[int, int]:
    """
    {product id: units the channel may sell} for these products (None: every product of the channel's
    organization); a product without stock is 0. On PostgreSQL from the one statement, else in Python.
    """
    if connection.vendor != "postgresql":
        return availability_in_python(channel, product_ids, include_incoming=include_incoming)
    ids = None if product_ids is None else sorted({int(pid) for pid in product_ids})
    result = dict.fromkeys(ids or (), 0)  # ids of no product of the organization answer 0, as in Python
    if ids == []:
        return result
    params = parameters(channel.organization_id, [channel], ids, include_incoming=include_incoming)
    with connection.cursor() as cursor:
        cursor.execute(
            figures_sql("SELECT product_id, available FROM figures", some_products=ids is not None), params
        )
        result.update(cursor.fetchall())
    return result


# --- PostgreSQL: the statement, generated from the precedence table -----------------------------------------
#
# The buffers and the channels' locations are few: `parameters` resolves, per channel, the buffer of every
# scope that can apply and passes them as column arrays, which the planner sizes exactly (unnest), so the big
# join of levels and the aggregate get hash plans. One relation per group of scopes keyed by the same ids
# (the scope's fields besides the channel): a LEFT JOIN each, then a CASE in PRECEDENCE order picks the winner.
# The relation a stage is driven by (cl for the levels, ch for the pooled figures) also carries the channel's
# own and the organization's buffers, so the levels are never joined to one more relation (the planner then
# misjudges their number and gives up the hash joins: 1.7 s instead of 0.3 s for 1,000 products).


@dataclass(frozen=True)
class _Relation:
    alias: str
    keys: tuple[str, ...]  # the fields besides the channel its rows are keyed by
    extra: tuple[tuple[str, str], ...] = ()  # more columns: (name, SQL type)
    drives: bool = False  # carries the buffers that name no location or product too

    @property
    def scopes(self) -> list[Scope]:
        return [
            s
            for s in PRECEDENCE
            if s.fields - {"channel"} in ({*self.keys}, *([set()] if self.drives else []))
        ]

    @property
    def columns(self) -> list[tuple[str, str]]:
        columns = [("channel_id", "bigint"), *((f"{key}_id", "bigint") for key in self.keys), *self.extra]
        for scope in self.scopes:
            columns += [
                (f"has_{scope.code}", "boolean"),
                (f"{scope.code}_q", "int"),
                (f"{scope.code}_pct", "numeric"),
            ]
        return columns

    def sql(self) -> str:
        arrays = ", ".join(f"%({self.alias}_{name})s::{kind}[]" for name, kind in self.columns)
        return f"unnest({arrays}) AS {self.alias}({', '.join(name for name, _ in self.columns)})"


# ch: every channel computed for; cl: every (channel, location) it sells from, with whether it sells incoming
# stock; pb and lp: the (channel, product) pairs and (channel, location, product) triples some buffer names.
CH = _Relation("ch", (), drives=True)
CL = _Relation("cl", ("location",), extra=(("incoming", "boolean"),), drives=True)
PB = _Relation("pb", ("product",))
LP = _Relation("lp", ("location", "product"))
RELATIONS = (CH, CL, PB, LP)


def _alias(scope: Scope, driver: _Relation) -> str:
    """The relation whose columns hold this scope's buffers in a stage driven by `driver`."""
    if scope in driver.scopes:
        return driver.alias
    return next(r.alias for r in RELATIONS if not r.drives and scope in r.scopes)


def _winning(part: str, *, located: bool) -> str:
    """
    The `part` ("q" or "pct") of the buffer that applies, in PRECEDENCE order. For a location's stock
    (located=True, driven by cl) every scope competes, and one without a location winning gives NULL (that
    stock is pooled); for the pooled stock (located=False, driven by ch) only scopes without a location match.
    """
    arms = []
    for scope in PRECEDENCE:
        if located or not scope.located:
            alias = _alias(scope, CL if located else CH)
            value = f"{alias}.{scope.code}_{part}" if scope.located == located else "NULL"
            arms.append(f"WHEN {alias}.has_{scope.code} THEN {value}")
    while arms[-1].endswith("THEN NULL"):
        arms.pop()  # no later scope gives a value: the same as no arm
    return f"CASE {' '.join(arms)} END"


def _held_back(amount: str, quantity: str, percent: str) -> str:
    """InventoryBuffer.held_back in SQL: nothing from nothing, else the units, or the percent rounded up."""
    return f"(CASE WHEN {amount} <= 0 THEN 0 ELSE COALESCE({quantity}, ceil({amount} * {percent} / 100), 0) END)::integer"


# Generated from constants only (the precedence table and the relations above); values are parameters.
_FIGURES = f"""
stock AS (
    -- per channel, location and product: the free units, and the location's own buffer when one wins
    -- (NULLs when a buffer without a location, or none, wins: that stock is pooled)
    SELECT cl.channel_id, lv.product_id,
           GREATEST(lv.on_hand - lv.committed + CASE WHEN cl.incoming THEN lv.incoming ELSE 0 END, 0) AS free,
           {_winning("q", located=True)} AS own_q,
           {_winning("pct", located=True)} AS own_pct
      FROM {CL.sql()}
      JOIN inventory_inventorylevel lv ON lv.location_id = cl.location_id
      LEFT JOIN {PB.sql()} ON pb.channel_id = cl.channel_id AND pb.product_id = lv.product_id
      LEFT JOIN {LP.sql()}
        ON lp.channel_id = cl.channel_id AND lp.location_id = lv.location_id AND lp.product_id = lv.product_id
     WHERE TRUE {{level_filter}}
),
sums AS (
    SELECT channel_id, product_id,
           sum(GREATEST(free - {_held_back("free", "own_q", "own_pct")}, 0))
               FILTER (WHERE own_q IS NOT NULL OR own_pct IS NOT NULL) AS located,
           sum(free) FILTER (WHERE own_q IS NULL AND own_pct IS NULL) AS pooled
      FROM stock
     GROUP BY channel_id, product_id
),
figures AS (
    SELECT channel_id, product_id,
           CASE WHEN NOT active THEN 0  -- a discontinued or archived product sells nothing, whatever its stock
                ELSE (located + GREATEST(pooled - {_held_back("pooled", "pool_q", "pool_pct")}, 0))::integer
           END AS available
      FROM (SELECT ch.channel_id, p.id AS product_id, p.active AND p.archived_at IS NULL AS active,
                   COALESCE(s.located, 0) AS located, COALESCE(s.pooled, 0) AS pooled,
                   {_winning("q", located=False)} AS pool_q,
                   {_winning("pct", located=False)} AS pool_pct
              FROM {CH.sql()}
             CROSS JOIN inventory_product p
              LEFT JOIN sums s ON s.channel_id = ch.channel_id AND s.product_id = p.id
              LEFT JOIN {PB.sql()} ON pb.channel_id = ch.channel_id AND pb.product_id = p.id
             WHERE p.organization_id = %(org)s {{product_filter}}) AS f
)"""  # noqa: S608 - built from this module's constants at import; every value is a query parameter

_ALL = _FIGURES.format(level_filter="", product_filter="")
_SOME = _FIGURES.format(
    level_filter="AND lv.product_id = ANY(%(products)s::bigint[])",
    product_filter="AND p.id = ANY(%(products)s::bigint[])",
)


def figures_sql(query: str, *, more: str = "", some_products: bool) -> str:
    """
    `query` after the CTEs that compute `figures(channel_id, product_id, available)` (and `more` CTEs after
    them): for every product of the organization, or those of the `products` parameter (some_products).
    """
    return f"WITH {_SOME if some_products else _ALL}{more}\n{query}"


def parameters(org_id, channels, product_ids=None, *, include_incoming=None) -> dict:
    """
    The statement's parameters: the organization, the products (None: all), and per relation the column
    arrays of the buffers that can apply to each channel (`include_incoming` overrides the channels' setting).
    """
    scoped: dict[tuple, InventoryBuffer] = {
        (b.location_id, b.product_id, b.channel_id): b
        for b in InventoryBuffer.objects.filter(organization_id=org_id).order_by("pk")
    }
    named = {(b.location_id, b.product_id) for b in scoped.values() if b.product_id is not None}
    locations = _channel_locations(org_id, channels)
    rows: dict[str, list[tuple]] = {relation.alias: [] for relation in RELATIONS}
    for channel in channels:
        incoming = sells_incoming(channel) if include_incoming is None else include_incoming
        keys = {
            CH: [{}],
            CL: [{"location": location_id} for location_id in locations[channel.pk]],
            PB: [{"product": product_id} for location_id, product_id in named if location_id is None],
            LP: [{"location": loc, "product": product_id} for loc, product_id in named if loc is not None],
        }
        for relation, wanted in keys.items():
            for key in wanted:
                amounts = [
                    _amount(scoped, scope, channel.pk, key.get("location"), key.get("product"))
                    for scope in relation.scopes
                ]
                if relation in (PB, LP) and not any(has for has, _, _ in amounts):
                    continue  # no buffer of these scopes names this pair for this channel
                extra = (incoming,) if relation is CL else ()
                rows[relation.alias].append(
                    (
                        channel.pk,
                        *(key[name] for name in relation.keys),
                        *extra,
                        *(value for amount in amounts for value in amount),
                    )
                )
    params = {"org": org_id, "products": None if product_ids is None else list(product_ids)}
    for relation in RELATIONS:
        for i, (name, _) in enumerate(relation.columns):
            params[f"{relation.alias}_{name}"] = [row[i] for row in rows[relation.alias]]
    return params


def _amount(scoped, scope: Scope, channel_id, location_id, product_id) -> tuple[bool, int | None, object]:
    """(has a buffer, its quantity, its percent) of this scope for this channel, location and product."""
    buffer = scoped.get(
        (
            location_id if "location" in scope.fields else None,
            product_id if "product" in scope.fields else None,
            channel_id if "channel" in scope.fields else None,
        )
    )
    return (False, None, None) if buffer is None else (True, buffer.quantity, buffer.percent)


def _channel_locations(org_id, channels) -> dict[int, list[int]]:
    """{channel id: the locations it sells from} (channel_locations' rule for many channels) in two queries."""
    selling = list(
        Location.objects.filter(organization_id=org_id, active=True, sells=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    links: dict[int, set[int]] = {c.pk: set() for c in channels}
    for channel_id, location_id in ChannelLocation.objects.filter(channel__in=channels).values_list(
        "channel_id", "location_id"
    ):
        links[channel_id].add(location_id)
    # Links restrict even when every linked location is switched off: then the channel sells nothing.
    return {c.pk: [pk for pk in selling if pk in links[c.pk]] if links[c.pk] else selling for c in channels}


# --- other databases: the fallback ------------------------------------------------------------------------


def availability_in_python(channel, product_ids=None, *, include_incoming=None) -> dict[int, int]:
    """`availability()` computed in Python over the levels: what other databases than PostgreSQL use."""
    if include_incoming is None:
        include_incoming = sells_incoming(channel)
    levels = InventoryLevel.objects.filter(location__in=channel_locations(channel))
    products = Product.objects.filter(organization_id=channel.organization_id)
    if product_ids is not None:
        product_ids = list(product_ids)
        levels = levels.filter(product_id__in=product_ids)
        products = products.filter(pk__in=product_ids)
    rows = levels.values("product_id", "location_id").annotate(
        on_hand=Sum("on_hand"), committed=Sum("committed"), incoming=Sum("incoming")
    )
    buffers = list(
        InventoryBuffer.objects.filter(organization_id=channel.organization_id).filter(
            Q(channel__isnull=True) | Q(channel=channel)
        )
    )
    located: dict[int, int] = defaultdict(int)  # stock whose winning buffer is a location's own
    pooled: dict[int, int] = defaultdict(int)  # stock whose winning buffer has no location (or none wins)
    for row in rows:
        free = max(row["on_hand"] - row["committed"] + (row["incoming"] if include_incoming else 0), 0)
        pid = row["product_id"]
        buffer = pick_buffer(buffers, location_id=row["location_id"], product_id=pid, channel_id=channel.pk)
        if buffer is not None and buffer.location_id is not None:
            located[pid] += max(free - buffer.held_back(free), 0)
        else:
            pooled[pid] += free
    result = dict.fromkeys(
        product_ids if product_ids is not None else products.values_list("pk", flat=True), 0
    )
    # A discontinued (inactive) or archived product sells nothing whatever its stock.
    selling = products.filter(
        pk__in=set(located) | set(pooled), active=True, archived_at__isnull=True
    ).values_list("pk", flat=True)
    for pid in selling:
        buffer = pick_buffer(buffers, location_id=None, product_id=pid, channel_id=channel.pk)
        pool = pooled.get(pid, 0)
        result[pid] = located.get(pid, 0) + max(pool - (buffer.held_back(pool) if buffer else 0), 0)
    return result
