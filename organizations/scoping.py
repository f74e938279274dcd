"""
Who may reach which organization's rows: the one place tenancy is computed.

A user's `Scope` (superuser, the organizations they administer, those they are a member of) is read once per
user object. Every org-owned model declares where its organization is with `restricted(...)` as its manager,
in the spirit of NetBox's RestrictedQuerySet: `Model.objects.restrict(user, action)` is what the user may
reach for that action, and `Model.objects.tenancy.allows(user, action, obj)` answers for one row. The
admin's scoped mixin, its choices and its actions all go through these two; nothing filters by
organization by hand.

The rules: a superuser reaches everything; an org admin everything in the organizations they administer;
a member views (and changes, where granted) only the rows hanging off integrations on which they hold a
django-guardian object permission — or, for a model declared `members_see_all`, every row of their
organizations, read-only. Adding and deleting is the org admins'.
"""

from dataclasses import dataclass

from django.db import models
from django.db.models import Q

from .choices import Role

# Object permissions a member may hold on an integration (django-guardian), by codename prefix
# (`view_integration`, `change_integration`, `manage_keys_integration`).
MEMBER_ACTIONS = ("view", "change", "manage_keys")


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
        for org_id, role in user.memberships.values_list("organization_id", "role"):
            (admin if role == Role.ADMIN else member).add(org_id)
        scope = Scope(False, frozenset(admin), frozenset(member))
    user._switchyard_scope = scope
    return scope


@dataclass(frozen=True)
class Tenancy:
    """
    Where a model's organization is, and how members reach its rows.

    organization: lookup path to the Organization ("" for Organization itself).
    shared_when_null: rows without an organization (public catalog connectors) are viewable by everyone.
    member_access: lookup path to the integration whose object permissions let a member reach a row ("" for
        the integration itself); None: members never reach these rows (unless members_see_all).
    member_view / member_change: the permission codename prefixes (MEMBER_ACTIONS) that let a member view /
        change a row; any other action A needs `A` itself (e.g. "manage_keys").
    members_see_all: members view every row of their organizations (settings, the organization itself).
    """

    organization: str = "organization"
    shared_when_null: bool = False
    member_access: str | None = None
    member_view: tuple[str, ...] = MEMBER_ACTIONS
    member_change: str = "change"
    members_see_all: bool = False

    def _path(self, suffix):
        return f"{self.organization}__{suffix}" if self.organization else suffix

    def member_perms(self, action) -> tuple[str, ...]:
        if action == "view":
            return self.member_view
        if action == "change":
            return (self.member_change,)
        return (action,) if action in MEMBER_ACTIONS else ()

    def where(self, model, user, action="view") -> Q | None:
        """The rows of `model` that `user` may reach for `action`, as a filter; None: every row (a superuser)."""
        scope = scope_for(user)
        if scope.is_superuser:
            return None
        org_ids = scope.org_ids if action == "view" and self.members_see_all else scope.admin_org_ids
        allowed = Q(**{self._path("in") if self.organization else "pk__in": org_ids})
        if self.shared_when_null and action == "view":
            allowed |= Q(**{self._path("isnull"): True})
        perms = self.member_perms(action)
        if self.member_access is not None and scope.member_org_ids and perms:
            prefix = f"{self.member_access}__" if self.member_access else ""
            granted = granted_integrations(user, self.integration_model(model), perms, scope)
            allowed |= Q(**{f"{prefix}pk__in": granted.values("pk")})
        return allowed

    def integration_model(self, model):
        """The model `member_access` leads to (the integration), found through the relations."""
        for name in filter(None, self.member_access.split("__")):
            model = model._meta.get_field(name).related_model
        return model

    def organization_id_of(self, obj):
        """The organization id of `obj`, following `organization` attribute by attribute."""
        if not self.organization:
            return obj.pk
        *parents, last = self.organization.split("__")
        for name in parents:
            obj = getattr(obj, name, None)
            if obj is None:
                return None
        return getattr(obj, f"{last}_id", None)

    def integration_of(self, obj):
        if self.member_access is None:
            return None
        for name in filter(None, self.member_access.split("__")):
            obj = getattr(obj, name, None)
        return obj

    def allows(self, user, action, obj) -> bool:
        """May `user` do `action` ("view", "change", "add", "delete", "manage_keys") on the row `obj`?"""
        scope = scope_for(user)
        if scope.is_superuser:
            return True
        org_id = self.organization_id_of(obj)
        if org_id is None:
            return self.shared_when_null and action == "view"
        if org_id in scope.admin_org_ids:
            return True
        if org_id not in scope.member_org_ids:
            return False
        if action == "view" and self.members_see_all:
            return True
        integration = self.integration_of(obj)
        if integration is None:
            return False
        meta = integration._meta
        return any(
            user.has_perm(f"{meta.app_label}.{perm}_{meta.model_name}", integration)
            for perm in self.member_perms(action)
        )

    def reaches_any(self, user, action) -> bool:
        """Could `user` do `action` on some row (the changelist, the add button)?"""
        scope = scope_for(user)
        if scope.is_superuser or scope.admin_org_ids:
            return True
        if not scope.member_org_ids or action not in ("view", "change"):
            return False
        if action == "view" and self.members_see_all:
            return True
        return self.member_access is not None


def granted_integrations(user, integration_model, perms, scope=None):
    """Integrations in the user's member organizations on which they hold any of `perms` (codename prefixes)."""
    # Not at the top: guardian.shortcuts imports Django's auth models, which cannot load while this module is
    # imported by the models modules themselves.
    from guardian.shortcuts import get_objects_for_user

    scope = scope or scope_for(user)
    meta = integration_model._meta
    return get_objects_for_user(
        user,
        [f"{meta.app_label}.{perm}_{meta.model_name}" for perm in perms],
        klass=integration_model.objects.filter(organization__in=scope.member_org_ids),
        any_perm=True,
        with_superuser=False,
        accept_global_perms=False,
    )


class RestrictedQuerySet(models.QuerySet):
    """A queryset that knows its model's tenancy (see `restricted`)."""

    tenancy = Tenancy()

    def restrict(self, user, action="view"):
        """The rows `user` may reach for `action` ("view", "change", "add", "delete", "manage_keys")."""
        where = self.tenancy.where(self.model, user, action)
        return self if where is None else self.filter(where)


def restricted(**declaration):
    """A model's manager whose querysets restrict by tenancy: `objects = restricted(organization=...)`."""
    tenancy = Tenancy(**declaration)
    queryset = type("RestrictedQuerySet", (RestrictedQuerySet,), {"tenancy": tenancy})
    manager = models.Manager.from_queryset(queryset)
    return type("RestrictedManager", (manager,), {"tenancy": tenancy})()
