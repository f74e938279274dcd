"""
The one registry of grants: `resource:access` strings. Keys may hold only these; every endpoint declares
the grant it needs from here. And what grants an integration's keys hold together (grants_by_integration).
"""

from collections import defaultdict

from django.db.models import Q
from django.utils import timezone

from .models import ApiKey

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

# Every grant is one some endpoint requires (tests/tokens/test_grants_used.py). The event feed is read-only,
# so there is no events:write (tokens 0007 took it off the keys that held it).
READ_ONLY = ("events",)
GRANTS = tuple(
    f"{resource}:{access}"
    for resource in RESOURCES
    for access in ACCESS
    if not (access == "write" and resource in READ_ONLY)
)
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


def grants_by_integration(integration_ids) -> dict[int, set[str]]:
    """
    The grants each integration's usable keys (neither revoked nor expired) hold together: the webhook outbox
    (registered in TokensConfig.ready) tells an integration only of what one of its keys may read.
    """
    now = timezone.now()
    grants: dict[int, set[str]] = defaultdict(set)
    rows = (
        ApiKey.objects.filter(integration_id__in=list(integration_ids), revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values_list("integration_id", "grants")
    )
    for integration_id, key_grants in rows:
        grants[integration_id].update(key_grants or [])
    return grants
