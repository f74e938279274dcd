"""
The inventory engine's step: recompute what each sales channel of an organization may sell (the figures of
`services.availability`), store them in ChannelInventory and emit one `inventory.updated` per changed figure.

On PostgreSQL it is one hand-written statement per run (issue 6's bench: 100k SKUs × 10 locations × 5
channels within 3× a plain SQL aggregate): the figures, the upsert and the outbox rows are computed in the
database, so no per-product row ever comes into Python. Other databases (SQLite, `make run`) go through
`availability()` in batches: the same figures, slower.
"""

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from integrations import services as integration_services
from integrations.choices import ConnectorType, EventType, IntegrationStatus
from integrations.delivery import schedule_dispatch
from integrations.models import Integration

from . import services
from .models import ChannelInventory, ChannelLocation, InventoryBuffer, Location, Product

OBJECT_TYPE = "channel_inventory"  # outbox object type: "<product id>:<channel id>"
CHANNEL_TYPES = (ConnectorType.CHANNEL, ConnectorType.MARKETPLACE)
LOCK_NAMESPACE = (
    7310  # pg_advisory_xact_lock(LOCK_NAMESPACE, org id): one recompute per organization at a time
)
FALLBACK_BATCH = 1000  # products per availability() call on databases other than PostgreSQL
# PostgreSQL memory for the statement's hash aggregate (one entry per channel × product): at PostgreSQL's
# 4MB default the planner sorts 5M rows on disk instead, several times slower (bench/inventory.py).
WORK_MEM = django_settings.INVENTORY_SYNC_WORK_MEM


def object_id(product_id, channel_id) -> str:
    return f"{product_id}:{channel_id}"


def sales_channels(organization) -> list[Integration]:
    """The organization's channels and marketplaces that are not disabled: those the engine computes for."""
    return list(
        Integration.objects.filter(organization_id=_org_id(organization), connector__type__in=CHANNEL_TYPES)
        .exclude(status=IntegrationStatus.DISABLED)
        .order_by("pk")
    )


def lock(organization) -> None:
    """
    Serialize recomputes of one organization until the transaction ends: a run that computed from an older
    snapshot must never overwrite a newer run's figures. A no-op outside PostgreSQL (SQLite has one writer).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, _org_id(organization)])


def recompute(organization, product_ids=None, *, channels=None) -> dict:
    """
    Recompute the figures of these products (None: the whole catalog) for the organization's sales channels
    (or those given); returns {"products", "changed", "events"}. Runs in (or as) one transaction.
    """
    org_id = _org_id(organization)
    if channels is None:
        channels = sales_channels(org_id)
    ids = None if product_ids is None else sorted({int(pid) for pid in product_ids})
    with transaction.atomic():
        lock(org_id)
        products = Product.objects.filter(organization_id=org_id)
        if ids is not None:
            products = products.filter(pk__in=ids)
        counts = {"products": products.count(), "changed": 0, "events": 0}
        if not channels or not counts["products"]:
            return counts
        if connection.vendor == "postgresql":
            changed, events = _recompute_sql(org_id, channels, ids)
        else:
            changed, events = recompute_in_python(org_id, channels, ids)
        counts.update(changed=changed, events=events)
        if events:
            schedule_dispatch()
    return counts


def _org_id(organization) -> int:
    return organization if isinstance(organization, int) else organization.pk


def sells_incoming(channel) -> bool:
    return bool((channel.settings or {}).get("sell_incoming_stock"))


# --- PostgreSQL: one statement ----------------------------------------------------------------------------
#
# Hand-written because the ORM cannot say it: the winning buffer per (channel, location, product) is picked by
# LEFT JOINs on the (small) buffer table, one per group of scopes, in `pick_buffer`'s rank order —
#   location+product+channel > product+channel > location+product > location+channel > product > channel
#   > location > org-wide
# — then a location's own buffer comes off that location's stock and the best buffer without a location off
# the pooled rest (`availability()`'s rule); the upsert writes only figures that differ, and the outbox rows
# are inserted from its RETURNING set in the same statement (a data-modifying CTE).

# The buffers and the channels' locations are few: they are resolved in Python (_small_sets) and passed as
# arrays, which the planner sizes exactly (unnest), so the big join and aggregate get hash plans like the floor.
_PBUF = """unnest(%(pb_channel)s::bigint[], %(pb_product)s::bigint[], %(pb_has_pc)s::boolean[], %(pb_pc_q)s::int[],
               %(pb_pc_pct)s::numeric[], %(pb_has_p)s::boolean[], %(pb_p_q)s::int[], %(pb_p_pct)s::numeric[])
           AS pb(channel_id, product_id, has_pc, pc_q, pc_pct, has_p, p_q, p_pct)"""

_FIGURES_SQL = """
WITH stock AS (
    -- per channel, location and product: the free units, and the location's own buffer when it wins
    -- (NULLs when a buffer without a location, or none, wins: that stock is pooled)
    SELECT cl.channel_id, lv.product_id,
           GREATEST(lv.on_hand - lv.committed + CASE WHEN cl.incoming THEN lv.incoming ELSE 0 END, 0) AS free,
           CASE WHEN lp.has_lpc THEN lp.lpc_q WHEN pb.has_pc THEN NULL WHEN lp.has_lp THEN lp.lp_q
                WHEN cl.has_lc THEN cl.lc_q WHEN pb.has_p OR cl.has_c THEN NULL ELSE cl.l_q END AS own_q,
           CASE WHEN lp.has_lpc THEN lp.lpc_pct WHEN pb.has_pc THEN NULL WHEN lp.has_lp THEN lp.lp_pct
                WHEN cl.has_lc THEN cl.lc_pct WHEN pb.has_p OR cl.has_c THEN NULL ELSE cl.l_pct END AS own_pct
      FROM unnest(%(cl_channel)s::bigint[], %(cl_location)s::bigint[], %(cl_incoming)s::boolean[],
                  %(cl_has_c)s::boolean[], %(cl_has_lc)s::boolean[], %(cl_lc_q)s::int[], %(cl_lc_pct)s::numeric[],
                  %(cl_l_q)s::int[], %(cl_l_pct)s::numeric[])
           AS cl(channel_id, location_id, incoming, has_c, has_lc, lc_q, lc_pct, l_q, l_pct)
      JOIN inventory_inventorylevel lv ON lv.location_id = cl.location_id
      LEFT JOIN {pbuf} ON pb.channel_id = cl.channel_id AND pb.product_id = lv.product_id
      LEFT JOIN unnest(%(lp_channel)s::bigint[], %(lp_location)s::bigint[], %(lp_product)s::bigint[],
                       %(lp_has_lpc)s::boolean[], %(lp_lpc_q)s::int[], %(lp_lpc_pct)s::numeric[],
                       %(lp_has_lp)s::boolean[], %(lp_lp_q)s::int[], %(lp_lp_pct)s::numeric[])
           AS lp(channel_id, location_id, product_id, has_lpc, lpc_q, lpc_pct, has_lp, lp_q, lp_pct)
        ON lp.channel_id = cl.channel_id AND lp.location_id = lv.location_id AND lp.product_id = lv.product_id
     WHERE TRUE {level_filter}
),
sums AS (
    SELECT channel_id, product_id,
           sum(GREATEST(free - CASE WHEN free <= 0 THEN 0 WHEN own_q IS NOT NULL THEN own_q
                                    ELSE ceil(free * own_pct / 100)::integer END, 0))
               FILTER (WHERE own_q IS NOT NULL OR own_pct IS NOT NULL) AS located,
           sum(free) FILTER (WHERE own_q IS NULL AND own_pct IS NULL) AS pooled
      FROM stock
     GROUP BY channel_id, product_id
),
figures AS (
    SELECT ch.id AS channel_id, p.id AS product_id,
           CASE WHEN NOT p.active THEN 0  -- a discontinued product sells nothing, whatever its stock
                WHEN s.product_id IS NULL THEN 0
                ELSE (COALESCE(s.located, 0) + GREATEST(COALESCE(s.pooled, 0) - CASE
                          WHEN COALESCE(s.pooled, 0) <= 0 THEN 0
                          WHEN pb.has_pc THEN COALESCE(pb.pc_q, ceil(s.pooled * pb.pc_pct / 100))
                          WHEN pb.has_p THEN COALESCE(pb.p_q, ceil(s.pooled * pb.p_pct / 100))
                          WHEN ch.has_c THEN COALESCE(ch.c_q, ceil(s.pooled * ch.c_pct / 100))
                          ELSE COALESCE(o.org_q, ceil(s.pooled * o.org_pct / 100), 0) END, 0))::integer
           END AS available
      FROM unnest(%(ch_id)s::bigint[], %(ch_has_c)s::boolean[], %(ch_c_q)s::int[], %(ch_c_pct)s::numeric[])
           AS ch(id, has_c, c_q, c_pct)
     CROSS JOIN (SELECT %(org_q)s::int AS org_q, %(org_pct)s::numeric AS org_pct) AS o
     CROSS JOIN inventory_product p
      LEFT JOIN sums s ON s.channel_id = ch.id AND s.product_id = p.id
      LEFT JOIN {pbuf} ON pb.channel_id = ch.id AND pb.product_id = p.id
     WHERE p.organization_id = %(org)s {product_filter}
),
changed AS (
    SELECT f.channel_id, f.product_id, f.available
      FROM figures f
      LEFT JOIN inventory_channelinventory ci ON ci.channel_id = f.channel_id AND ci.product_id = f.product_id
     WHERE ci.available IS DISTINCT FROM f.available
),
upserted AS (
    INSERT INTO inventory_channelinventory (channel_id, product_id, available, updated_at)
    SELECT channel_id, product_id, available, %(now)s FROM changed
        ON CONFLICT (channel_id, product_id) DO UPDATE
       SET available = EXCLUDED.available, updated_at = EXCLUDED.updated_at
     WHERE inventory_channelinventory.available IS DISTINCT FROM EXCLUDED.available
    RETURNING channel_id, product_id, available
),
events AS (
    INSERT INTO integrations_outboxevent
           (organization_id, integration_id, type, object_type, object_id, payload, created_at)
    SELECT %(org)s, u.channel_id, %(type)s, %(object_type)s, u.product_id || ':' || u.channel_id,
           jsonb_build_object('product', u.product_id::text, 'channel', u.channel_id::text,
                              'available', u.available),
           %(now)s
      FROM upserted u
    RETURNING 1
)
SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM events)
"""

_SQL_ALL = _FIGURES_SQL.format(pbuf=_PBUF, level_filter="", product_filter="")
_SQL_SOME = _FIGURES_SQL.format(
    pbuf=_PBUF,
    level_filter="AND lv.product_id = ANY(%(products)s::bigint[])",
    product_filter="AND p.id = ANY(%(products)s::bigint[])",
)


def _recompute_sql(org_id, channels, product_ids) -> tuple[int, int]:
    params = {
        "org": org_id,
        "now": timezone.now(),
        "type": EventType.INVENTORY_UPDATED.value,
        "object_type": OBJECT_TYPE,
        "products": product_ids,
        **_small_sets(org_id, channels),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('work_mem'), set_config('work_mem', %s, true)", [WORK_MEM])
        previous = cursor.fetchone()[0]
        cursor.execute(_SQL_ALL if product_ids is None else _SQL_SOME, params)
        changed, events = cursor.fetchone()
        cursor.execute(
            "SELECT set_config('work_mem', %s, true)", [previous]
        )  # the caller's transaction goes on
    return changed, events


def _columns(prefix, rows, names) -> dict[str, list]:
    return {f"{prefix}_{name}": [row[i] for row in rows] for i, name in enumerate(names)}


def _small_sets(org_id, channels) -> dict[str, list]:
    """
    The statement's small inputs, as column arrays: each channel's locations with their location buffers, and
    per channel the buffers that name a product (with and without a location) — pick_buffer's candidates.
    """
    scoped: dict[tuple, InventoryBuffer] = {
        (b.location_id, b.product_id, b.channel_id): b
        for b in InventoryBuffer.objects.filter(organization_id=org_id).order_by("pk")
    }

    def amount(location_id, product_id, channel_id):
        b = scoped.get((location_id, product_id, channel_id))
        return (False, None, None) if b is None else (True, b.quantity, b.percent)

    by_product = {(b.location_id, b.product_id) for b in scoped.values() if b.product_id is not None}
    locations = _channel_locations(org_id, channels)
    cl, ch, pb, lp = [], [], [], []
    for channel in channels:
        has_c, c_q, c_pct = amount(None, None, channel.pk)
        ch.append((channel.pk, has_c, c_q, c_pct))
        for location_id in locations[channel.pk]:
            lc = amount(location_id, None, channel.pk)
            cl.append(
                (
                    channel.pk,
                    location_id,
                    sells_incoming(channel),
                    has_c,
                    *lc,
                    *amount(location_id, None, None)[1:],
                )
            )
        for location_id, product_id in by_product:
            own, shared = amount(location_id, product_id, channel.pk), amount(location_id, product_id, None)
            if own[0] or shared[0]:
                row = (channel.pk, product_id, *own, *shared)
                if location_id is None:
                    pb.append(row)
                else:
                    lp.append((channel.pk, location_id, *row[1:]))
    _, org_q, org_pct = amount(None, None, None)
    return {
        **_columns(
            "cl", cl, ["channel", "location", "incoming", "has_c", "has_lc", "lc_q", "lc_pct", "l_q", "l_pct"]
        ),
        **_columns("ch", ch, ["id", "has_c", "c_q", "c_pct"]),
        **_columns("pb", pb, ["channel", "product", "has_pc", "pc_q", "pc_pct", "has_p", "p_q", "p_pct"]),
        **_columns(
            "lp",
            lp,
            ["channel", "location", "product", "has_lpc", "lpc_q", "lpc_pct", "has_lp", "lp_q", "lp_pct"],
        ),
        "org_q": org_q,
        "org_pct": org_pct,
    }


def _channel_locations(org_id, channels) -> dict[int, list[int]]:
    """{channel id: the locations it sells from} (services.channel_locations' rule) in two queries."""
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


# --- other databases: availability() in batches ----------------------------------------------------------


def recompute_in_python(org_id, channels, product_ids=None) -> tuple[int, int]:
    """The same figures through `availability()`, FALLBACK_BATCH products at a time; (changed, events)."""
    if product_ids is None:
        product_ids = list(
            Product.objects.filter(organization_id=org_id).order_by("pk").values_list("pk", flat=True)
        )
    else:
        product_ids = list(
            Product.objects.filter(organization_id=org_id, pk__in=product_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    changed = 0
    for channel in channels:
        for start in range(0, len(product_ids), FALLBACK_BATCH):
            changed += _store(
                org_id, channel, services.availability(channel, product_ids[start : start + FALLBACK_BATCH])
            )
    return changed, changed


def _store(org_id, channel, figures: dict[int, int]) -> int:
    """Upsert the figures that differ from the stored ones and emit one event each; returns how many."""
    stored = dict(
        ChannelInventory.objects.filter(channel=channel, product_id__in=list(figures)).values_list(
            "product_id", "available"
        )
    )
    changed = sorted(pid for pid, n in figures.items() if stored.get(pid) != n)
    if not changed:
        return 0
    now = timezone.now()
    ChannelInventory.objects.bulk_create(
        [
            ChannelInventory(channel=channel, product_id=pid, available=figures[pid], updated_at=now)
            for pid in changed
        ],
        update_conflicts=True,
        unique_fields=["channel", "product"],
        update_fields=["available", "updated_at"],
    )
    integration_services.emit_many(
        org_id,
        [
            (
                EventType.INVENTORY_UPDATED,
                OBJECT_TYPE,
                object_id(pid, channel.pk),
                {"product": str(pid), "channel": str(channel.pk), "available": figures[pid]},
            )
            for pid in changed
        ],
        integration=channel,
    )
    return len(changed)
