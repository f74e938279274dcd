"""
The one admin chokepoint for tenancy (STYLE.md §4).

Every admin class for org-owned data mixes in `OrganizationScopedMixin`. It scopes the changelist, the
change/delete/history views (an object outside your organizations is a 404, not a redirect that confirms
nothing but still answers), foreign-key and many-to-many choices, autocomplete, list filters and bulk
actions — all through `get_queryset`, so a subclass only declares where the organization is.

Roles: a superuser sees everything; an org admin sees and edits everything in the organizations they
administer; a member sees only the integrations (and rows hanging off them) for which they hold a
django-guardian object permission.
"""

from django import forms
from django.contrib import admin
from django.contrib.admin.filters import RelatedOnlyFieldListFilter
from django.core.exceptions import ValidationError
from django.db.models import ForeignKey, Q
from django.http import Http404
from django.utils.html import format_html, format_html_join

from .models import Organization
from .scoping import scope_for

# Object permissions a member may hold on an integration (django-guardian).
MEMBER_PERMS = ("view_integration", "change_integration", "manage_keys_integration")


class OrganizationScopedMixin:
    """Declare `organization_field` (lookup path to the Organization, "" for Organization itself)."""

    organization_field = "organization"
    # Rows with no organization (e.g. public catalog connectors) are readable by every staff user.
    shared_when_null = False
    # Lookup path to an Integration through which members' object permissions grant access
    # ("" for Integration itself); None: members never see this model.
    member_access_field: str | None = None
    # The guardian permissions (on that integration) that let a member view / change these rows.
    member_view_perms: tuple[str, ...] = MEMBER_PERMS
    member_change_perm = "change_integration"

    # --- queryset -----------------------------------------------------------------------------------
    def get_queryset(self, request):
        return self.scope_queryset(request, super().get_queryset(request))

    def _path(self, suffix):
        return f"{self.organization_field}__{suffix}" if self.organization_field else suffix

    def scope_queryset(self, request, queryset):
        scope = scope_for(request.user)
        if scope.is_superuser:
            return queryset
        allowed = Q(**{self._path("in") if self.organization_field else "pk__in": scope.admin_org_ids})
        if self.shared_when_null:
            allowed |= Q(**{self._path("isnull"): True})
        if self.member_access_field is not None and scope.member_org_ids:
            prefix = f"{self.member_access_field}__" if self.member_access_field else ""
            granted = granted_integrations(request.user, scope, self.member_view_perms)
            allowed |= Q(**{f"{prefix}pk__in": granted.values("pk")})
        return queryset.filter(allowed)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Django would redirect with "doesn't exist"; outside your scope is simply not there.
            raise Http404("No such object.")
        return obj

    # --- permissions --------------------------------------------------------------------------------
    def organization_id_of(self, obj):
        """The organization id of `obj`, following `organization_field` attribute by attribute."""
        if not self.organization_field:
            return obj.pk
        *parents, last = self.organization_field.split("__")
        for name in parents:
            obj = getattr(obj, name, None)
            if obj is None:
                return None
        return getattr(obj, f"{last}_id", None)

    def integration_of(self, obj):
        if self.member_access_field is None:
            return None
        for name in filter(None, self.member_access_field.split("__")):
            obj = getattr(obj, name, None)
        return obj

    def role_allows(self, request, action, obj=None) -> bool:
        scope = scope_for(request.user)
        if scope.is_superuser:
            return True
        if obj is None:
            if scope.admin_org_ids:
                return True
            # Members reach the changelist of member-visible models and edit per object.
            return (
                bool(scope.member_org_ids)
                and self.member_access_field is not None
                and action
                in (
                    "view",
                    "change",
                )
            )
        org_id = self.organization_id_of(obj)
        if org_id is None:
            return self.shared_when_null and action == "view"
        if org_id in scope.admin_org_ids:
            return True
        integration = self.integration_of(obj)
        if integration is None or org_id not in scope.member_org_ids or action not in ("view", "change"):
            return False
        if action == "view":
            return any(
                request.user.has_perm(f"integrations.{p}", integration) for p in self.member_view_perms
            )
        return request.user.has_perm(f"integrations.{self.member_change_perm}", integration)

    def has_module_permission(self, request):
        return self.role_allows(request, "view")

    def has_view_permission(self, request, obj=None):
        return self.role_allows(request, "view", obj) or self.has_change_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self.role_allows(request, "add") and bool(
            scope_for(request.user).is_superuser or scope_for(request.user).admin_org_ids
        )

    def has_change_permission(self, request, obj=None):
        return self.role_allows(request, "change", obj)

    def has_delete_permission(self, request, obj=None):
        scope = scope_for(request.user)
        return self.role_allows(request, "delete", obj) and bool(scope.is_superuser or scope.admin_org_ids)

    # --- choices, filters ---------------------------------------------------------------------------
    def get_field_queryset(self, db, db_field, request):
        related = db_field.remote_field.model
        if related is Organization:
            scope = scope_for(request.user)
            qs = Organization.objects.using(db)
            # New rows may only be placed in organizations you administer.
            return qs if scope.is_superuser else qs.filter(pk__in=scope.admin_org_ids)
        related_admin = self.admin_site._registry.get(related)
        if isinstance(related_admin, OrganizationScopedMixin):
            return related_admin.get_queryset(request).using(db)
        return super().get_field_queryset(db, db_field, request)

    def get_list_filter(self, request):
        # Plain FK filters list every row of the related table; RelatedOnlyFieldListFilter lists only
        # values present in the (scoped) queryset, so filter choices never leak another org's names.
        scoped = []
        for item in super().get_list_filter(request):
            if isinstance(item, str) and self._is_relation(item):
                scoped.append((item, RelatedOnlyFieldListFilter))
            else:
                scoped.append(item)
        return scoped

    def _is_relation(self, path):
        model = self.model
        field = None
        for name in path.split("__"):
            field = model._meta.get_field(name)
            if not field.is_relation:
                return False
            model = field.related_model
        return isinstance(field, ForeignKey) or (field is not None and field.many_to_many)


class OrganizationScopedAdmin(OrganizationScopedMixin, admin.ModelAdmin):
    """ModelAdmin for org-owned rows."""


class OrganizationScopedInline(OrganizationScopedMixin, admin.TabularInline):
    """Inline for org-owned rows; edits follow the parent's rules."""

    def role_allows(self, request, action, obj=None):
        # Django hands inlines the *parent* object: judge by the parent's organization. A parent that has
        # none (a user) leaves the rows to the inline's scoped queryset and organization choices.
        if obj is not None and not isinstance(obj, self.model):
            scope = scope_for(request.user)
            org_id = obj.pk if isinstance(obj, Organization) else getattr(obj, "organization_id", None)
            if org_id is None:
                return scope.is_superuser or bool(scope.admin_org_ids)
            # Members edit an integration's own fields only; rows inlined on its page (mappings that name
            # catalog products members cannot see) stay with the org admins.
            return scope.administers(org_id)
        return super().role_allows(request, action, obj)

    def has_add_permission(self, request, obj=None):
        return self.role_allows(request, "add", obj)

    def has_delete_permission(self, request, obj=None):
        return self.role_allows(request, "delete", obj)


def granted_integrations(user, scope=None, perms=MEMBER_PERMS):
    """Integrations in the user's member organizations on which they hold any of `perms`."""
    from guardian.shortcuts import get_objects_for_user

    from integrations.models import Integration

    scope = scope or scope_for(user)
    return get_objects_for_user(
        user,
        [f"integrations.{p}" for p in perms],
        klass=Integration.objects.filter(organization__in=scope.member_org_ids),
        any_perm=True,
        with_superuser=False,
        accept_global_perms=False,
    )


# --- small pieces every admin shares ---------------------------------------------------------------------


def badge(colours, status, label):
    """A coloured status badge (CSS in templates/admin/base_site.html)."""
    return format_html(
        '<span class="sy-badge sy-badge-{}" data-status="{}">{}</span>',
        colours.get(status, "grey"),
        status,
        label,
    )


class SameOrganizationForm(forms.ModelForm):
    """Refuses to link rows of different organizations (FK choices span every organization a user administers)."""

    same_organization: tuple[str, ...] = ()

    def clean(self):
        cleaned = super().clean()
        orgs = set()
        for name in self.same_organization:
            value = cleaned.get(name) if name in self.fields else getattr(self.instance, name, None)
            if value is not None:
                orgs.add(value.pk if isinstance(value, Organization) else value.organization_id)
        if len(orgs) > 1:
            labels = ", ".join(self.instance._meta.get_field(n).verbose_name for n in self.same_organization)
            raise ValidationError(f"The {labels} must all belong to the same organization.")
        return cleaned


def same_organization_form(*names):
    return type("SameOrganizationForm", (SameOrganizationForm,), {"same_organization": names})


class OrganizationColumnMixin:
    """`organization` in list_display is shown only to users who see more than one organization."""

    def get_list_display(self, request):
        scope = scope_for(request.user)
        if not scope.is_superuser and len(scope.org_ids) == 1:
            return [f for f in super().get_list_display(request) if f != "organization"]
        return super().get_list_display(request)


class ReadOnlyAdminMixin:
    """Rows written only by the flows (API, engines, services): viewed, never added, edited or deleted here."""

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def html_table(headers, rows, *, empty, link=None):
    """A small read-only table for a change page (cells escaped unless already safe), and an optional
    `(url, label)` link under it."""
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows)
    )
    if not body:
        body = format_html('<tr><td colspan="{}">{}</td></tr>', len(headers), empty)
    table = format_html(
        '<table class="sy-events"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body
    )
    if link:
        table = format_html('{}<p><a href="{}">{}</a></p>', table, *link)
    return table
