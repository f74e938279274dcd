"""
The order flow's public functions, by job — what the API, the admin, the engines and the commands call. Each
lives in the module named after its job:

* state.py — the state machine (move), the conflict every refused change raises, the order's payload
* ingest.py — a channel's order upserted, mapped, held for mappings, the hold engine told
* changes.py — what an upsert changed; a routed order's new address, contact or method to its open requests
* holds.py — hold, release, new → ready, and the rules' other changes (tags, routing location)
* shipping.py — shipping requests (stock committed) and their acknowledgement
* fulfillments.py — shipments recorded against a request, the order following them
* cancellation.py — cancelling an order
* rejection.py — a 3PL rejecting a shipping request (stock released, the order routed again)
* corrections.py — a fulfillment's tracking corrected, or the fulfillment canceled (its stock put back)

Every change writes its outbox event in the same transaction.
"""

from .cancellation import cancel_order
from .corrections import TRACKING_FIELDS, cancel_fulfillment, update_fulfillment
from .fulfillments import create_fulfillment
from .holds import (
    UNMAPPED_METHOD,
    add_tags,
    has_unmapped_line,
    held_only_for,
    hold,
    make_ready,
    mark_rules_applied,
    release,
    set_routing_location,
)
from .ingest import HEADER_FIELDS, ingest_order
from .rejection import reject
from .shipping import acknowledge, create_shipping_request
from .state import (
    EDITABLE,
    MAPPING_REASON,
    OPEN_REQUEST,
    REASON_SEPARATOR,
    UNROUTABLE_REASON,
    OrderConflict,
    move,
    order_payload,
)

__all__ = [
    "EDITABLE",
    "HEADER_FIELDS",
    "MAPPING_REASON",
    "OPEN_REQUEST",
    "REASON_SEPARATOR",
    "TRACKING_FIELDS",
    "UNMAPPED_METHOD",
    "UNROUTABLE_REASON",
    "OrderConflict",
    "acknowledge",
    "add_tags",
    "cancel_fulfillment",
    "cancel_order",
    "create_fulfillment",
    "create_shipping_request",
    "has_unmapped_line",
    "held_only_for",
    "hold",
    "ingest_order",
    "make_ready",
    "mark_rules_applied",
    "move",
    "order_payload",
    "reject",
    "release",
    "set_routing_location",
    "update_fulfillment",
]
