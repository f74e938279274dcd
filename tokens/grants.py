"""
The one registry of grants: `resource:access` strings. Keys may hold only these; every endpoint declares
the grant it needs from here.
"""

RESOURCES = (
    "orders",
    "shipping_requests",
    "fulfillments",
    "products",
    "locations",
    "inventory",
    "webhooks",
    "events",
    "exceptions",
)
ACCESS = ("read", "write")

GRANTS = tuple(f"{resource}:{access}" for resource in RESOURCES for access in ACCESS)
GRANT_CHOICES = [(grant, grant) for grant in GRANTS]


class UnknownGrant(ValueError):
    pass


def normalize(grants) -> list[str]:
    """Deduplicated, sorted grants; raises UnknownGrant naming every unknown one."""
    if isinstance(grants, str):
        grants = [g for g in grants.replace(" ", "").split(",") if g]
    unknown = sorted({g for g in grants if g not in GRANTS})
    if unknown:
        raise UnknownGrant(f"Unknown grant(s): {', '.join(unknown)}. Known: {', '.join(GRANTS)}.")
    return sorted(set(grants), key=GRANTS.index)
