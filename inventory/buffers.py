"""
Which buffer holds stock back from a channel: the precedence of buffer scopes, written once.

A buffer names any of a location, a product and a channel (none: the organization-wide buffer). Of the
buffers that match some stock, one applies: the first scope of PRECEDENCE that has one. Both ways of computing
the figures read this table — `pick_buffer` here (the routing engine's reserve and the Python fallback of
`inventory.figures`) and the SQL that `inventory.figures` generates from it (its CASE arms, in this order).
"""

from dataclasses import dataclass

DIMENSIONS = ("location", "product", "channel")


@dataclass(frozen=True)
class Scope:
    """The fields a buffer names; `code` prefixes the SQL columns of buffers of this scope."""

    code: str
    fields: frozenset[str]

    @property
    def located(self) -> bool:
        """A buffer naming a location comes off that location's stock; others off the pooled rest."""
        return "location" in self.fields


# Most specific first: more fields named win; on a tie, product beats channel beats location.
PRECEDENCE: tuple[Scope, ...] = (
    Scope("lpc", frozenset({"location", "product", "channel"})),
    Scope("pc", frozenset({"product", "channel"})),
    Scope("lp", frozenset({"location", "product"})),
    Scope("lc", frozenset({"location", "channel"})),
    Scope("p", frozenset({"product"})),
    Scope("c", frozenset({"channel"})),
    Scope("l", frozenset({"location"})),
    Scope("org", frozenset()),
)

_RANK = {scope.fields: rank for rank, scope in enumerate(PRECEDENCE)}


def scope_of(buffer) -> Scope:
    """The scope of a buffer (an InventoryBuffer, saved or not)."""
    return PRECEDENCE[_RANK[_named(buffer)]]


def _named(buffer) -> frozenset[str]:
    return frozenset(name for name in DIMENSIONS if getattr(buffer, f"{name}_id") is not None)


def pick_buffer(buffers, *, location_id=None, product_id=None, channel_id=None):
    """
    The buffer that applies to stock of this location, product and channel: of the buffers whose named
    fields all match, the one whose scope comes first in PRECEDENCE (None: no buffer matches). Ask with
    location_id=None for the buffer of a channel's pooled stock (only buffers without a location match).
    """
    wanted = {"location": location_id, "product": product_id, "channel": channel_id}
    best, best_rank = None, len(PRECEDENCE)
    for buffer in buffers:
        named = _named(buffer)
        if _RANK[named] < best_rank and all(getattr(buffer, f"{name}_id") == wanted[name] for name in named):
            best, best_rank = buffer, _RANK[named]
    return best
