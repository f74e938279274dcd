"""
What a location can give an order, and taking it without overselling (the routing engine's stock rules).

Routing plans from figures read without locks, then checks the plan again with the levels it needs locked:
`lock_and_check` locks them in one fixed global order — (product id, location id) — whatever the plan's
order, so two routings that need the same rows queue behind each other instead of deadlocking, and a figure
that moved between the plan and the lock is seen before any stock is committed.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.db import connection
from django.db.models import Q

from .buffers import pick_buffer
from .models import InventoryBuffer, InventoryLevel

Pair = tuple[int, int]  # (product id, location id)


def routable(on_hand: int, committed: int, reserve: int) -> int:
    """
    Units of a product a location can give for routing: on hand − committed − reserve, never below 0.
    The reserve is the safety buffer the seller keeps back at that location (see `reserve`).
    """
    return max(on_hand - committed - reserve, 0)


def routing_buffers(organization_id: int, channel_id: int | None) -> list[InventoryBuffer]:
    """The buffers that can apply to an order of this channel: the organization's, channel-less or its own."""
    channel = Q(channel__isnull=True) | Q(channel_id=channel_id) if channel_id else Q(channel__isnull=True)
    return list(InventoryBuffer.objects.filter(channel, organization_id=organization_id))


def reserve(buffers, *, location_id: int, product_id: int, channel_id: int | None, on_hand: int) -> int:
    """
    Units routing keeps back at one location: the most specific matching buffer, held back from on hand.
    A buffer without a location applies at each location (a routed order ships from one place at a time).
    """
    buffer = pick_buffer(buffers, location_id=location_id, product_id=product_id, channel_id=channel_id)
    return buffer.held_back(on_hand) if buffer is not None else 0


@dataclass(frozen=True)
class Shortfall:
    """A planned take the locked figures no longer cover."""

    product_id: int
    location_id: int
    wanted: int
    available: int


def _figures(levels, buffers, channel_id) -> dict[Pair, int]:
    return {
        (level.product_id, level.location_id): routable(
            level.on_hand,
            level.committed,
            reserve(
                buffers,
                location_id=level.location_id,
                product_id=level.product_id,
                channel_id=channel_id,
                on_hand=level.on_hand,
            ),
        )
        for level in levels
    }


def routable_stock(
    organization_id: int, channel_id: int | None, product_ids: Iterable[int], location_ids: Iterable[int]
) -> dict[Pair, int]:
    """{(product, location): routable units} read without locks, for planning; missing pairs have none."""
    levels = InventoryLevel.objects.filter(
        product_id__in=set(product_ids), location_id__in=set(location_ids)
    ).only("product_id", "location_id", "on_hand", "committed")
    return _figures(levels, routing_buffers(organization_id, channel_id), channel_id)


def lock_and_check(organization_id: int, channel_id: int | None, needs: dict[Pair, int]) -> list[Shortfall]:
    """
    Lock the levels of every (product, location) in `needs` in (product id, location id) order and check
    each wanted quantity against its routable figure under the lock; returns what no longer fits (empty:
    the plan stands and the caller may commit it in this same transaction).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("lock_and_check locks rows: call it inside transaction.atomic().")
    if not needs:
        return []
    pairs = sorted(needs)
    wanted = reduce(or_, (Q(product_id=p, location_id=loc) for p, loc in pairs))
    # ORDER BY before FOR UPDATE: PostgreSQL locks rows as the sorted scan returns them.
    levels = list(
        InventoryLevel.objects.filter(wanted)
        .order_by("product_id", "location_id")
        .select_for_update()
        .only("product_id", "location_id", "on_hand", "committed")
    )
    figures = _figures(levels, routing_buffers(organization_id, channel_id), channel_id)
    return [
        Shortfall(pid, lid, needs[(pid, lid)], figures.get((pid, lid), 0))
        for pid, lid in pairs
        if needs[(pid, lid)] > figures.get((pid, lid), 0)
    ]
