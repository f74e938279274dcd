"""
Catalog and stock rules: SKU translation both ways, product upserts, absolute stock pushes in bulk,
commitments, the organization-wide buffer, and the change rows that tell the inventory engine what to
recompute (what a channel may sell is inventory.figures).
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from core import triggers
from core.errors import DomainError
from core.sync_exceptions import ExceptionKind, raise_exception
from integrations.choices import EventType
from integrations.connector_settings import setting
from integrations.webhooks import outbox

from .models import AvailabilityChange, InventoryBuffer, InventoryLevel, Location, Product, SkuMapping
from .skus import lookalike_key, lookalike_message, normalize_sku

PRODUCT_FIELDS = ("name", "barcode", "price", "weight", "active")


# --- what the inventory engine must recompute ----------------------------------------------------------


def mark_changed(organization, product_ids=None, *, stock_up=False) -> None:
    """
    Record, in the caller's transaction, that these products' availability must be recomputed (None: every
    product of the organization: a buffer, a channel's locations or a location's flags changed). `stock_up`:
    stock may have become available, so orders waiting for it are retried (never for a reservation taken).
    The inventory engine is told after the commit; its sweep finds the rows if that message is lost.
    """
    org_id = organization if isinstance(organization, int) else organization.pk
    if product_ids is None:
        rows = [AvailabilityChange(organization_id=org_id, product=None, stock_up=True)]
    else:
        rows = [
            AvailabilityChange(organization_id=org_id, product_id=pid, stock_up=stock_up)
            for pid in sorted(set(product_ids))
        ]
    if not rows:
        return
    AvailabilityChange.objects.bulk_create(rows, batch_size=5000)
    # Once per organization and commit, however many writes of the transaction marked changes.
    triggers.fire(triggers.AVAILABILITY_CHANGED, organization_id=org_id)


@dataclass(frozen=True)
class Changes:
    """What change rows taken by the inventory engine ask for."""

    products: list[int] | None  # the products to recompute; None: the whole catalog
    stock_up: list[int]  # those whose stock may have gone up (orders waiting for them are retried)
    more: bool  # rows were left beyond the batch


def take_changes(organization, limit: int) -> Changes | None:
    """
    Delete, in the caller's transaction, up to `limit` of the organization's change rows, oldest first, and say
    what they ask for (None: there were none). Rows another transaction holds are skipped. When one names no
    product the whole catalog is to be recomputed, which covers every row: all the visible ones are taken.
    """
    org_id = organization if isinstance(organization, int) else organization.pk
    pending = AvailabilityChange.objects.filter(organization_id=org_id).select_for_update(skip_locked=True)
    rows = list(pending.order_by("pk").values_list("pk", "product_id", "stock_up")[:limit])
    if not rows:
        return None
    if any(product_id is None for _, product_id, _ in rows):
        take_all_changes(org_id)
        return Changes(products=None, stock_up=[], more=False)
    AvailabilityChange.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
    return Changes(
        products=sorted({product_id for _, product_id, _ in rows}),
        stock_up=sorted({product_id for _, product_id, up in rows if up}),
        more=len(rows) >= limit,
    )


def organizations_with_changes() -> set[int]:
    """Ids of the organizations that have change rows waiting (the engine's sweep runs for them)."""
    return set(AvailabilityChange.objects.values_list("organization_id", flat=True).distinct())


def take_all_changes(organization) -> None:
    """Delete the organization's change rows, in the caller's transaction (a full recompute covers them all)."""
    org_id = organization if isinstance(organization, int) else organization.pk
    taken = AvailabilityChange.objects.filter(organization_id=org_id).select_for_update(skip_locked=True)
    AvailabilityChange.objects.filter(pk__in=list(taken.values_list("pk", flat=True))).delete()


def _org_of(location_id) -> int:
    return Location.objects.values_list("organization_id", flat=True).get(pk=location_id)


# --- SKU translation ----------------------------------------------------------------------------------


def resolve_skus(organization, integration, skus) -> dict[str, Product]:
    """
    {sku as the integration sent it: Product}: its own mapping first, else the hub SKU; each SKU read as sent,
    else in its normal form (inventory/skus.py: "café-1" decomposed finds the composed one). Two queries at most.
    """
    wanted = set(skus)
    normal = {sku: normalize_sku(sku) for sku in wanted}
    mapped: dict[str, Product] = {}
    if integration is not None and wanted:
        for mapping in SkuMapping.objects.filter(
            integration=integration, external_sku__in=wanted | set(normal.values())
        ).select_related("product"):
            if mapping.product.organization_id == organization.pk:
                mapped[mapping.external_sku] = mapping.product
    rest = {sku for sku in wanted if sku not in mapped and normal[sku] not in mapped}
    hub: dict[str, Product] = {}
    if rest:
        names = rest | {normal[sku] for sku in rest}
        hub = {
            product.sku: product
            for product in Product.objects.filter(organization=organization, sku__in=names)
        }
    found: dict[str, Product] = {}
    for sku in wanted:
        for table in (mapped, hub):
            product = table.get(sku) or table.get(normal[sku])
            if product is not None:
                found[sku] = product
                break
    return found


def external_skus(integration, product_ids) -> dict[int, str]:
    """{product id: the integration's own SKU} for products it has a mapping for (one query)."""
    if integration is None:
        return {}
    return dict(
        SkuMapping.objects.filter(integration=integration, product_id__in=set(product_ids)).values_list(
            "product_id", "external_sku"
        )
    )


# --- products -----------------------------------------------------------------------------------------


def _product_payload(product):
    return {
        "id": str(product.pk),
        "sku": product.sku,
        "name": product.name,
        "barcode": product.barcode,
        "price": str(product.price) if product.price is not None else None,
        "weight": str(product.weight) if product.weight is not None else None,
        "active": product.active,
        "updated_at": product.updated_at.isoformat() if product.updated_at else None,
    }


def _the_sku_field(sku) -> list[str]:
    return ["sku"]


class LookalikeSkus(DomainError, ValueError):
    """
    New SKUs refused as look-alikes: `clashes` is {normalised SKU: the SKU it looks like}. A 400
    validation_error whose details name the field of each refused SKU: `sku` for one product; `at` names
    them in a body of many.
    """

    api_code = "validation_error"

    def __init__(self, clashes: dict[str, str], fields_of=_the_sku_field):
        details: dict[str, list[str]] = {}
        for sku, other in clashes.items():
            for name in fields_of(sku):
                details.setdefault(name, []).append(lookalike_message(other))
        super().__init__("Invalid input.", details=details)
        self.clashes = clashes

    def __str__(self):
        return "; ".join(f"{sku!r}: {lookalike_message(other)}" for sku, other in self.clashes.items())

    def at(self, fields_of):
        """The same refusal naming the fields `fields_of(sku)` (a list) of a body that holds several SKUs."""
        return type(self)(self.clashes, fields_of)


def lookalikes(organization, skus) -> dict[str, str]:
    """{sku: the SKU it looks like} for new (normalised) `skus` that look like an existing one or each other."""
    keys = {sku: lookalike_key(sku) for sku in skus}
    taken = dict(
        Product.objects.filter(organization=organization, sku_key__in=set(keys.values())).values_list(
            "sku_key", "sku"
        )
    )
    clashes = {}
    for sku, key in keys.items():
        if key in taken and taken[key] != sku:
            clashes[sku] = taken[key]
        taken.setdefault(key, sku)  # the first of two new look-alikes is the one the second is refused for
    return clashes


def upsert_products(organization, items, *, integration=None) -> tuple[int, int, list[Product]]:
    """
    Create or update products by SKU in a bounded number of queries (lock, bulk insert, bulk update,
    outbox); returns (created, updated, products in input order). Unchanged products are not touched. SKUs
    are normalised; a new one that looks like another raises LookalikeSkus before anything is written.
    """
    if integration is not None and setting(integration, "sync_prices") is False:
        # The ERP's "Take prices from the ERP" is off: its prices are ignored, the hub keeps its own.
        items = [{k: v for k, v in item.items() if k != "price"} for item in items]
    given = {item["sku"] for item in items}
    with transaction.atomic():
        # By the SKU as given first: a legacy SKU the 0005 migration could not normalise stays reachable.
        existing = {
            p.sku: p
            for p in Product.objects.select_for_update()
            .filter(organization=organization, sku__in=given | {normalize_sku(sku) for sku in given})
            .order_by("pk")
        }
        by_sku = {}
        for item in items:
            sku = item["sku"] if item["sku"] in existing else normalize_sku(item["sku"])
            by_sku[sku] = {**item, "sku": sku}  # the last occurrence of a repeated SKU wins
        if clashes := lookalikes(organization, [sku for sku in by_sku if sku not in existing]):
            raise LookalikeSkus(clashes)
        now = timezone.now()
        to_create, to_update = [], []
        for sku, item in by_sku.items():
            product = existing.get(sku)
            if product is None:
                values = {f: item[f] for f in PRODUCT_FIELDS if f in item}
                # bulk_create skips Product.save(), which sets the key.
                to_create.append(
                    Product(organization=organization, sku=sku, sku_key=lookalike_key(sku), **values)
                )
                continue
            changed = [f for f in PRODUCT_FIELDS if f in item and _differs(getattr(product, f), item[f])]
            if changed:
                for f in changed:
                    setattr(product, f, item[f])
                product.updated_at = now
                to_update.append(product)
        created = Product.objects.bulk_create(to_create)
        if to_update:
            Product.objects.bulk_update(to_update, [*PRODUCT_FIELDS, "updated_at"], batch_size=500)
            # A product switched on or off sells (or not) on every channel.
            mark_changed(organization, [p.pk for p in to_update], stock_up=True)
        events = [(EventType.PRODUCT_CREATED, p) for p in created] + [
            (EventType.PRODUCT_UPDATED, p) for p in to_update
        ]
        outbox.emit_many(
            organization,
            [(t, "product", p.pk, _product_payload(p)) for t, p in events],
            integration=integration,
        )
    products = {p.sku: p for p in [*created, *existing.values()]}
    return len(created), len(to_update), [products[sku] for sku in by_sku]


def _differs(current, new) -> bool:
    if isinstance(current, Decimal) and new is not None:
        return current != Decimal(str(new))
    return current != new


# --- stock --------------------------------------------------------------------------------------------


def set_stock(location: Location, items, *, integration=None) -> tuple[int, list[dict]]:
    """
    Absolute on-hand counts at one location (POST /inventory): known SKUs applied in one transaction with a
    bounded number of queries; unknown ones reported and raised as one exception; archived products' counts
    refused and reported (inventory/archive.py). Returns (updated, errors).
    """
    organization = location.organization
    counts: dict[str, int] = {}
    for item in items:
        counts[item["sku"]] = item["on_hand"]
    products = resolve_skus(organization, integration, counts)
    archived = sorted(sku for sku, product in products.items() if product.archived_at is not None)
    for sku in archived:
        del products[sku]
    unknown = sorted(set(counts) - set(products) - set(archived))
    wanted = {products[sku].pk: on_hand for sku, on_hand in counts.items() if sku in products}
    with transaction.atomic():
        # Lock what exists in a fixed order (product id) so concurrent pushes and commitments never deadlock.
        current = {
            level.product_id: level
            for level in InventoryLevel.objects.select_for_update()
            .filter(location=location, product_id__in=list(wanted))
            .order_by("product_id")
        }
        now = timezone.now()
        # Sorted too: new rows are inserted (and so locked) in this order, which must match the lock order.
        changed = sorted(
            pid for pid, on_hand in wanted.items() if pid not in current or current[pid].on_hand != on_hand
        )
        if changed:
            # One INSERT … ON CONFLICT DO UPDATE for new and changed rows alike (Django 5.2 sends PostgreSQL
            # one UNNEST insert, with no parameter limit to batch around).
            InventoryLevel.objects.bulk_create(
                [
                    InventoryLevel(product_id=pid, location=location, on_hand=wanted[pid], updated_at=now)
                    for pid in changed
                ],
                update_conflicts=True,
                unique_fields=["product", "location"],
                update_fields=["on_hand", "updated_at"],
            )
            more = [pid for pid in changed if pid not in current or wanted[pid] > current[pid].on_hand]
            mark_changed(organization, more, stock_up=True)
            mark_changed(organization, sorted(set(changed) - set(more)))
            sku_of = {p.pk: p.sku for p in products.values()}
            outbox.emit_many(
                organization,
                [
                    (
                        EventType.INVENTORY_UPDATED,
                        "inventory_level",
                        f"{pid}:{location.pk}",
                        {
                            "sku": sku_of[pid],
                            "location": str(location.pk),
                            "on_hand": wanted[pid],
                            "committed": current[pid].committed if pid in current else 0,
                            "previous_on_hand": current[pid].on_hand if pid in current else None,
                        },
                    )
                    for pid in changed
                ],
                integration=integration,
            )
        if unknown:
            raise_exception(
                organization,
                ExceptionKind.UNKNOWN_SKU,
                f"Stock push to {location} named {len(unknown)} unknown SKU(s): {', '.join(unknown[:20])}"
                + ("…" if len(unknown) > 20 else ""),
                integration=integration,
                entity_type="location",
                entity_id=location.pk,
                data={"skus": unknown[:1000]},
            )
    errors = [{"sku": sku, "code": "unknown_sku"} for sku in unknown]
    return len(wanted), errors + [{"sku": sku, "code": "archived_sku"} for sku in archived]


def _level_for_update(product_id, location_id):
    level, _ = InventoryLevel.objects.get_or_create(product_id=product_id, location_id=location_id)
    return level


def commit_stock(location_id, quantities: dict[int, int]):
    """Reserve stock for a shipping request: committed += quantity, per product, in product order."""
    for product_id in sorted(quantities):
        _level_for_update(product_id, location_id)
        InventoryLevel.objects.filter(product_id=product_id, location_id=location_id).update(
            committed=F("committed") + quantities[product_id], updated_at=timezone.now()
        )
    mark_changed(_org_of(location_id), quantities)


def release_stock(location_id, quantities: dict[int, int]):
    """Give back a reservation (cancel): committed −= quantity, never below zero."""
    for product_id in sorted(quantities):
        InventoryLevel.objects.filter(product_id=product_id, location_id=location_id).update(
            committed=Greatest(F("committed") - quantities[product_id], 0), updated_at=timezone.now()
        )
    mark_changed(_org_of(location_id), quantities, stock_up=True)


def release_levels(organization, owed: dict[tuple[int, int], int]):
    """
    Give back reservations at several locations at once ({(product id, location id): quantity}), in
    (product, location) order: the order the routing engine locks levels in, so the two never deadlock.
    """
    now = timezone.now()
    for product_id, location_id in sorted(owed):
        InventoryLevel.objects.filter(product_id=product_id, location_id=location_id).update(
            committed=Greatest(F("committed") - owed[product_id, location_id], 0), updated_at=now
        )
    if owed:
        mark_changed(organization, {product_id for product_id, _ in owed}, stock_up=True)


def ship_stock(location_id, quantities: dict[int, int]):
    """Stock leaves the building (fulfillment): the reservation is released and on hand goes down."""
    for product_id in sorted(quantities):
        qty = quantities[product_id]
        InventoryLevel.objects.filter(product_id=product_id, location_id=location_id).update(
            committed=Greatest(F("committed") - qty, 0),
            on_hand=Greatest(F("on_hand") - qty, 0),
            updated_at=timezone.now(),
        )
    mark_changed(_org_of(location_id), quantities)


def unship_stock(location_id, quantities: dict[int, int]):
    """
    A shipment voided (fulfillment canceled): the reverse of ship_stock — the units are back on hand and, the
    shipping request owing them again, reserved for it again. What a channel may sell does not change.
    """
    for product_id in sorted(quantities):
        qty = quantities[product_id]
        _level_for_update(product_id, location_id)
        InventoryLevel.objects.filter(product_id=product_id, location_id=location_id).update(
            committed=F("committed") + qty, on_hand=F("on_hand") + qty, updated_at=timezone.now()
        )
    mark_changed(_org_of(location_id), quantities)


# --- the organization-wide buffer (engine settings) -----------------------------------------------------


def set_default_buffer(organization, *, quantity=None, percent=None) -> bool:
    """
    Set the organization-wide buffer (no location, product or channel): units or percent held back from
    every channel; neither removes it. Returns whether it changed; a change makes the inventory engine
    recompute every product of the organization.
    """
    if quantity is not None and percent is not None:
        raise ValueError("A buffer holds back a quantity or a percent, not both.")
    if quantity is not None and quantity < 0:
        raise ValueError(f"A buffer quantity cannot be negative ({quantity}).")
    if percent is not None and not 0 <= Decimal(percent) <= 100:
        raise ValueError(f"A buffer percent must be between 0 and 100 ({percent}).")
    org_id = organization if isinstance(organization, int) else organization.pk
    scope = {"organization_id": org_id, "location": None, "product": None, "channel": None}
    with transaction.atomic():
        current = InventoryBuffer.objects.select_for_update().filter(**scope).first()
        if quantity is None and percent is None:
            if current is None:
                return False
            current.delete()
        elif current is not None and (current.quantity, current.percent) == (quantity, percent):
            return False
        else:
            # update_or_create: a concurrent first save finds the row the other one created.
            InventoryBuffer.objects.update_or_create(
                **scope, defaults={"quantity": quantity, "percent": percent}
            )
        mark_changed(org_id)
    return True
