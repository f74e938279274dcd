"""
The inventory engine's step: recompute what each sales channel of an organization may sell (the figures of
`services.availability`), store them in ChannelInventory and emit one `inventory.updated` per changed figure.

On PostgreSQL it is one hand-written statement per run (issue 6's bench: 100k SKUs × 10 locations × 5
channels within 3× a plain SQL aggregate): the figures, the upsert and the outbox rows are computed in the
database, so no per-product row ever comes into Python. Other databases (SQLite, `make run`) go through
`availability()` in batches: the same figures, slower.
"""

from django.db import connection, transaction
from django.utils import timezone

from integrations import services as integration_services
from integrations.choices import ConnectorType, EventType, IntegrationStatus
from integrations.delivery import schedule_dispatch
from integrations.models import Integration

from . import services
from .models import ChannelInventory, Product

OBJECT_TYPE = "channel_inventory"  # outbox object type: "<product id>:<channel id>"
CHANNEL_TYPES = (ConnectorType.CHANNEL, ConnectorType.MARKETPLACE)
LOCK_NAMESPACE = (
    7310  # pg_advisory_xact_lock(LOCK_NAMESPACE, org id): one recompute per organization at a time
)
FALLBACK_BATCH = 1000  # products per availability() call on databases other than PostgreSQL


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

_FIGURES_SQL = """
WITH ch AS (
    SELECT c.id, c.incoming,
           (SELECT b.id FROM inventory_inventorybuffer b
             WHERE b.organization_id = %(org)s AND b.channel_id = c.id
               AND b.location_id IS NULL AND b.product_id IS NULL) AS c_buf,
           (SELECT b.id FROM inventory_inventorybuffer b
             WHERE b.organization_id = %(org)s AND b.channel_id IS NULL
               AND b.location_id IS NULL AND b.product_id IS NULL) AS org_buf
      FROM unnest(%(channels)s::bigint[], %(incoming)s::boolean[]) AS c(id, incoming)
),
chloc AS (
    -- a channel with explicit links sells from those only, else from every active selling location
    SELECT ch.id AS channel_id, ch.incoming, ch.c_buf, l.id AS location_id,
           (SELECT b.id FROM inventory_inventorybuffer b
             WHERE b.organization_id = %(org)s AND b.location_id = l.id AND b.product_id IS NULL
               AND b.channel_id = ch.id) AS lc_buf,
           (SELECT b.id FROM inventory_inventorybuffer b
             WHERE b.organization_id = %(org)s AND b.location_id = l.id AND b.product_id IS NULL
               AND b.channel_id IS NULL) AS l_buf
      FROM ch
      JOIN inventory_location l ON l.organization_id = %(org)s AND l.active AND l.sells
     WHERE NOT EXISTS (SELECT 1 FROM inventory_channellocation x WHERE x.channel_id = ch.id)
        OR EXISTS (SELECT 1 FROM inventory_channellocation x WHERE x.channel_id = ch.id AND x.location_id = l.id)
),
pbuf AS (
    -- product buffers without a location, per channel: its own (product+channel) and the product's
    SELECT ch.id AS channel_id, b.product_id,
           max(b.id) FILTER (WHERE b.channel_id IS NOT NULL) AS pc_buf,
           max(b.id) FILTER (WHERE b.channel_id IS NULL) AS p_buf
      FROM ch
      JOIN inventory_inventorybuffer b
        ON b.organization_id = %(org)s AND b.product_id IS NOT NULL AND b.location_id IS NULL
       AND (b.channel_id IS NULL OR b.channel_id = ch.id)
     GROUP BY ch.id, b.product_id
),
lpbuf AS (
    -- product buffers at one location, per channel: location+product+channel and location+product
    SELECT ch.id AS channel_id, b.location_id, b.product_id,
           max(b.id) FILTER (WHERE b.channel_id IS NOT NULL) AS lpc_buf,
           max(b.id) FILTER (WHERE b.channel_id IS NULL) AS lp_buf
      FROM ch
      JOIN inventory_inventorybuffer b
        ON b.organization_id = %(org)s AND b.product_id IS NOT NULL AND b.location_id IS NOT NULL
       AND (b.channel_id IS NULL OR b.channel_id = ch.id)
     GROUP BY ch.id, b.location_id, b.product_id
),
stock AS (
    SELECT cl.channel_id, lv.product_id,
           GREATEST(lv.on_hand - lv.committed + CASE WHEN cl.incoming THEN lv.incoming ELSE 0 END, 0) AS free,
           -- the location's own buffer when it wins; NULL when a buffer without a location (or none) wins
           CASE WHEN lp.lpc_buf IS NOT NULL THEN lp.lpc_buf
                WHEN pb.pc_buf IS NOT NULL THEN NULL
                WHEN lp.lp_buf IS NOT NULL THEN lp.lp_buf
                WHEN cl.lc_buf IS NOT NULL THEN cl.lc_buf
                WHEN pb.p_buf IS NOT NULL OR cl.c_buf IS NOT NULL THEN NULL
                ELSE cl.l_buf
           END AS own_buf
      FROM chloc cl
      JOIN inventory_inventorylevel lv ON lv.location_id = cl.location_id
      LEFT JOIN pbuf pb ON pb.channel_id = cl.channel_id AND pb.product_id = lv.product_id
      LEFT JOIN lpbuf lp
        ON lp.channel_id = cl.channel_id AND lp.location_id = lv.location_id AND lp.product_id = lv.product_id
     WHERE TRUE {level_filter}
),
sums AS (
    SELECT s.channel_id, s.product_id,
           sum(GREATEST(s.free - CASE WHEN s.free <= 0 THEN 0
                                      WHEN b.quantity IS NOT NULL THEN b.quantity
                                      ELSE ceil(s.free * b.percent / 100) END, 0))
               FILTER (WHERE s.own_buf IS NOT NULL) AS located,
           sum(s.free) FILTER (WHERE s.own_buf IS NULL) AS pooled
      FROM stock s
      LEFT JOIN inventory_inventorybuffer b ON b.id = s.own_buf
     GROUP BY s.channel_id, s.product_id
),
figures AS (
    SELECT ch.id AS channel_id, p.id AS product_id,
           CASE WHEN NOT p.active THEN 0  -- a discontinued product sells nothing, whatever its stock
                ELSE (COALESCE(s.located, 0) + GREATEST(
                          COALESCE(s.pooled, 0) - CASE WHEN COALESCE(s.pooled, 0) <= 0 OR b.id IS NULL THEN 0
                                                      WHEN b.quantity IS NOT NULL THEN b.quantity
                                                      ELSE ceil(s.pooled * b.percent / 100) END,
                          0))::integer
           END AS available
      FROM ch
     CROSS JOIN inventory_product p
      LEFT JOIN sums s ON s.channel_id = ch.id AND s.product_id = p.id
      LEFT JOIN pbuf pb ON pb.channel_id = ch.id AND pb.product_id = p.id
      LEFT JOIN inventory_inventorybuffer b ON b.id = COALESCE(pb.pc_buf, pb.p_buf, ch.c_buf, ch.org_buf)
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

_SQL_ALL = _FIGURES_SQL.format(level_filter="", product_filter="")
_SQL_SOME = _FIGURES_SQL.format(
    level_filter="AND lv.product_id = ANY(%(products)s::bigint[])",
    product_filter="AND p.id = ANY(%(products)s::bigint[])",
)


def _recompute_sql(org_id, channels, product_ids) -> tuple[int, int]:
    params = {
        "org": org_id,
        "channels": [c.pk for c in channels],
        "incoming": [sells_incoming(c) for c in channels],
        "now": timezone.now(),
        "type": EventType.INVENTORY_UPDATED.value,
        "object_type": OBJECT_TYPE,
        "products": product_ids,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SQL_ALL if product_ids is None else _SQL_SOME, params)
        changed, events = cursor.fetchone()
    return changed, events


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
