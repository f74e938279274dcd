"""
Who may see which organization's data. The admin mixin and (later) the API scope every queryset through
these helpers; nothing else filters by organization by hand.
"""

from dataclasses import dataclass

from .choices import Role
from .models import Membership


@dataclass(frozen=True)
class Scope:
    """A user's reach: every organization (superuser), or the ones they administer / belong to."""

    is_superuser: bool
    admin_org_ids: frozenset[int]
    member_org_ids: frozenset[int]

    @property
    def org_ids(self) -> frozenset[int]:
        return self.admin_org_ids | self.member_org_ids

    def administers(self, org_id) -> bool:
        return self.is_superuser or org_id in self.admin_org_ids


def scope_for(user) -> Scope:
    """The user's scope, computed once per user object (one query) and cached on it."""
    cached = getattr(user, "_switchyard_scope", None)
    if cached is not None:
        return cached
    if not user.is_authenticated or not user.is_active:
        scope = Scope(False, frozenset(), frozenset())
    elif user.is_superuser:
        scope = Scope(True, frozenset(), frozenset())
    else:
        admin, member = set(), set()
        for org_id, role in Membership.objects.filter(user=user).values_list("organization_id", "role"):
            (admin if role == Role.ADMIN else member).add(org_id)
        scope = Scope(False, frozenset(admin), frozenset(member))
    user._switchyard_scope = scope
    return scope
