"""
The inventory engine's step: recompute what each sales channel of an organization may sell (the figures of
`inventory.figures`), store them in ChannelInventory and emit one `inventory.updated` per changed figure.

On PostgreSQL it is the figures statement of `inventory.figures` with the upsert around it, then one INSERT …
SELECT of the outbox rows through the integrations outbox (issue 6's bench: 100k SKUs × 10 locations × 5
channels against a plain SQL aggregate, bench/inventory.py): no per-product row ever comes into Python. Other
databases (SQLite, `make run`) go through `figures.availability_in_python` in batches: the same figures, slower.
"""

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.db.models import F, TextField, Value
from django.db.models.functions import Cast, Concat, JSONObject
from django.utils import timezone

from integrations.choices import ConnectorType, EventType, IntegrationStatus
from integrations.models import Integration
from integrations.webhooks import outbox

from . import figures
from .models import ChannelInventory, Product

OBJECT_TYPE = "channel_inventory"  # outbox object type: "<product id>:<channel id>"
CHANNEL_TYPES = (ConnectorType.CHANNEL, ConnectorType.MARKETPLACE)
LOCK_NAMESPACE = (
    7310  # pg_advisory_xact_lock(LOCK_NAMESPACE, org id): one recompute per organization at a time
)
FALLBACK_BATCH = 1000  # products per availability_in_python() call on databases other than PostgreSQL
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
    return counts


def _org_id(organization) -> int:
    return organization if isinstance(organization, int) else organization.pk


# --- PostgreSQL: the figures statement, stored ------------------------------------------------------------
#
# The upsert writes only figures that differ, each stamped with this run's moment; the outbox then records one
# event per row carrying that stamp (rows of this run only: recomputes of an organization hold its lock, and
# nothing else writes ChannelInventory.updated_at).

_UPSERT = """,
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
    RETURNING 1
)"""
_RECOMPUTE_ALL = figures.figures_sql("SELECT count(*) FROM upserted", more=_UPSERT, some_products=False)
_RECOMPUTE_SOME = figures.figures_sql("SELECT count(*) FROM upserted", more=_UPSERT, some_products=True)


def _recompute_sql(org_id, channels, product_ids) -> tuple[int, int]:
    now = timezone.now()
    params = {**figures.parameters(org_id, channels, product_ids), "now": now}
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('work_mem'), set_config('work_mem', %s, true)", [WORK_MEM])
        previous = cursor.fetchone()[0]
        cursor.execute(_RECOMPUTE_ALL if product_ids is None else _RECOMPUTE_SOME, params)
        changed = cursor.fetchone()[0]
        cursor.execute(
            "SELECT set_config('work_mem', %s, true)", [previous]
        )  # the caller's transaction goes on
    if not changed:
        return 0, 0
    written = ChannelInventory.objects.filter(channel__in=channels, updated_at=now)
    events = outbox.emit_rows(
        org_id,
        EventType.INVENTORY_UPDATED,
        OBJECT_TYPE,
        written,
        integration=F("channel_id"),
        object_id=Concat(_text("product_id"), Value(":"), _text("channel_id"), output_field=TextField()),
        payload=JSONObject(
            product=_text("product_id"), channel=_text("channel_id"), available=F("available")
        ),
    )
    return changed, events


def _text(field):
    return Cast(field, output_field=TextField())


# --- other databases: the Python fallback in batches -------------------------------------------------------


def recompute_in_python(org_id, channels, product_ids=None) -> tuple[int, int]:
    """
    The same figures through `figures.availability_in_python`, FALLBACK_BATCH products at a time;
    (changed, events).
    """
    products = Product.objects.filter(organization_id=org_id).order_by("pk")
    if product_ids is not None:
        products = products.filter(pk__in=product_ids)
    product_ids = list(products.values_list("pk", flat=True))
    changed = 0
    for channel in channels:
        for start in range(0, len(product_ids), FALLBACK_BATCH):
            batch = product_ids[start : start + FALLBACK_BATCH]
            changed += _store(org_id, channel, figures.availability_in_python(channel, batch))
    return changed, changed


def _store(org_id, channel, available: dict[int, int]) -> int:
    """Upsert the figures that differ from the stored ones and emit one event each; returns how many."""
    stored = dict(
        ChannelInventory.objects.filter(channel=channel, product_id__in=list(available)).values_list(
            "product_id", "available"
        )
    )
    changed = sorted(pid for pid, n in available.items() if stored.get(pid) != n)
    if not changed:
        return 0
    now = timezone.now()
    ChannelInventory.objects.bulk_create(
        [
            ChannelInventory(channel=channel, product_id=pid, available=available[pid], updated_at=now)
            for pid in changed
        ],
        update_conflicts=True,
        unique_fields=["channel", "product"],
        update_fields=["available", "updated_at"],
    )
    outbox.emit_many(
        org_id,
        [
            (
                EventType.INVENTORY_UPDATED,
                OBJECT_TYPE,
                object_id(pid, channel.pk),
                {"product": str(pid), "channel": str(channel.pk), "available": available[pid]},
            )
            for pid in changed
        ],
        integration=channel,
    )
    return len(changed)
