"""
What every console admin class shares.

Tenancy (docs/architecture.md, "The same ideas everywhere"): every admin class for org-owned data mixes in
`OrganizationScopedMixin`. The model's tenancy (organizations.scoping: where its organization is, how members
reach it) scopes the changelist, the change/delete/history views (an object outside your organizations is a
404, not a redirect that confirms nothing but still answers), foreign-key and many-to-many choices,
autocomplete, list filters and bulk actions — all through `get_queryset` and `role_allows`, so an admin class
declares nothing about it.

Actions: `object_action` marks a method as a button on an object's page ("POST-only view → the object, 404
outside your scope → the permission → the service → a message → back to the page"), and optionally as the
bulk action of the changelist that does the same to each selected row. `ObjectActionsMixin` makes their
URLs, views and actions.
"""

from dataclasses import dataclass

from django.contrib import admin, messages
from django.contrib.admin.filters import RelatedOnlyFieldListFilter
from django.core.exceptions import PermissionDenied
from django.db.models import ForeignKey
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse

from organizations.models import Organization
from organizations.scoping import scope_for


class OrganizationScopedMixin:
    """Scopes an admin to its model's tenancy; `tenancy` may be narrowed for one admin (an inline)."""

    @property
    def tenancy(self):
        return self.model._default_manager.tenancy

    # --- queryset -----------------------------------------------------------------------------------
    def get_queryset(self, request):
        return self.scope_queryset(request, super().get_queryset(request))

    def scope_queryset(self, request, queryset):
        where = self.tenancy.where(self.model, request.user, "view")
        return queryset if where is None else queryset.filter(where)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Django would redirect with "doesn't exist"; outside your scope is simply not there.
            raise Http404("No such object.")
        return obj

    # --- permissions --------------------------------------------------------------------------------
    def role_allows(self, request, action, obj=None) -> bool:
        if obj is None:
            return self.tenancy.reaches_any(request.user, action)
        return self.tenancy.allows(request.user, action, obj)

    def has_module_permission(self, request):
        return self.role_allows(request, "view")

    def has_view_permission(self, request, obj=None):
        return self.role_allows(request, "view", obj) or self.has_change_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self.role_allows(request, "add")

    def has_change_permission(self, request, obj=None):
        return self.role_allows(request, "change", obj)

    def has_delete_permission(self, request, obj=None):
        return self.role_allows(request, "delete", obj)

    # --- choices, filters ---------------------------------------------------------------------------
    def get_field_queryset(self, db, db_field, request):
        related = db_field.remote_field.model
        if related is Organization:
            # New rows may only be placed in organizations you administer.
            return Organization.objects.using(db).restrict(request.user, "add")
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


# --- object actions: buttons on a page, and the same for each selected row ----------------------------------


@dataclass(frozen=True)
class ObjectAction:
    route: str  # below the object's URL, e.g. "disable" or "run/<str:engine>"
    name: str  # the URL name's last part: admin:<app>_<model>_<name>
    permission: str  # has_<permission>_permission(request, obj) must say yes
    methods: tuple[str, ...]
    refused: tuple[type[Exception], ...]  # a service's refusal: said as an error, not raised
    bulk: str | None  # the description of the changelist action "<method>_selected", if any
    done: tuple[str, str] | None  # ("Disabled", "integration"): the bulk action counts instead of saying each


def object_action(
    route,
    *,
    name=None,
    permission="change",
    methods=("POST",),
    refused=(),
    bulk=None,
    done=None,
):
    """
    Mark `method(self, request, obj, **route_kwargs)` as the view at <object id>/<route>/. It runs only for
    `methods` (POST: a button), on an object the user may reach, with `permission` on it. It answers a
    message (a text: success; or (text, level)), a response of its own, or nothing; either way without a
    response it goes back to the object's page. With `bulk`, the changelist gets the action
    "<method>_selected" doing the same to each selected row the user has `permission` on; with `done`
    (verb, noun) it says how many instead of each one's message.
    """

    def mark(method):
        method.object_action = ObjectAction(
            route=route,
            name=name or route.split("/")[0].replace("-", "_"),
            permission=permission,
            methods=tuple(methods),
            refused=tuple(refused),
            bulk=bulk,
            done=done,
        )
        return method

    return mark


def refusal_text(exc) -> str:
    messages_ = getattr(exc, "messages", None)
    return messages_[0] if messages_ else str(exc)


class ObjectActionsMixin:
    """Makes the URLs, views and bulk actions of the methods marked with `object_action`."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attr, method in list(vars(cls).items()):
            spec = getattr(method, "object_action", None)
            if spec is not None and spec.bulk:
                setattr(cls, f"{attr}_selected", cls._bulk(attr, spec))

    @classmethod
    def _object_actions(cls):
        for attr in dir(cls):
            spec = getattr(getattr(cls, attr, None), "object_action", None)
            if spec is not None:
                yield attr, spec

    @staticmethod
    def _bulk(attr, spec):
        @admin.action(description=spec.bulk, permissions=[spec.permission])
        def bulk(self, request, queryset):
            return self.run_for_each(request, queryset, attr, spec)

        bulk.__name__ = f"{attr}_selected"
        return bulk

    # --- what an admin class may refine ----------------------------------------------------------------
    def action_label(self, obj) -> str:
        """How a row is named in a bulk action's messages."""
        return str(obj)

    def action_queryset(self, queryset):
        """The selected rows as a bulk action walks them (select_related what the services read)."""
        return queryset

    def object_url(self, obj):
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])

    def allows_action(self, request, permission, obj) -> bool:
        return getattr(self, f"has_{permission}_permission")(request, obj)

    # --- URLs and views ----------------------------------------------------------------------------------
    def get_urls(self):
        opts = self.model._meta
        urls = [
            path(
                f"<path:object_id>/{spec.route}/",
                self.admin_site.admin_view(self._object_action_view(attr, spec)),
                name=f"{opts.app_label}_{opts.model_name}_{spec.name}",
            )
            for attr, spec in self._object_actions()
        ]
        return [*urls, *super().get_urls()]

    def _object_action_view(self, attr, spec):
        def view(request, object_id, **kwargs):
            if request.method not in spec.methods:
                return HttpResponseNotAllowed(list(spec.methods))
            obj = self.get_object(request, object_id)  # 404 outside your scope
            if not self.allows_action(request, spec.permission, obj):
                raise PermissionDenied
            try:
                answer = getattr(self, attr)(request, obj, **kwargs)
            except spec.refused as exc:
                answer = (refusal_text(exc), messages.ERROR)
            if isinstance(answer, HttpResponse):
                return answer
            self._say(request, answer)
            return HttpResponseRedirect(self.object_url(obj))

        return view

    def run_for_each(self, request, queryset, attr, spec):
        """A bulk action: the marked method for each selected row the user may act on. Without `done`, each
        row's answer and refusal is said as it comes; with it, how many were done, then each refusal."""
        done, refused = 0, []
        for obj in self.action_queryset(queryset):
            if not self.allows_action(request, spec.permission, obj):
                refused.append(f"{self.action_label(obj)}: not allowed.")
            else:
                try:
                    answer = getattr(self, attr)(request, obj)
                except spec.refused as exc:
                    refused.append(refusal_text(exc))
                else:
                    done += 1
                    if spec.done is None:
                        self._say(request, answer)
            if spec.done is None:
                for reason in refused:
                    self.message_user(request, reason, messages.WARNING)
                refused.clear()
        if spec.done is not None:
            verb, noun = spec.done
            if done:
                self.message_user(
                    request, f"{verb} {done} {noun}{'s' if done != 1 else ''}.", messages.SUCCESS
                )
            for reason in refused:
                self.message_user(request, reason, messages.WARNING)

    def _say(self, request, answer):
        if not answer:
            return
        text, level = answer if isinstance(answer, tuple) else (answer, messages.SUCCESS)
        self.message_user(request, text, level)


def administered_organization(user):
    """The id of the one organization `user` administers, when it is exactly one (a form's default)."""
    if user.is_superuser:
        return None
    org_ids = list(Organization.objects.restrict(user, "change").values_list("pk", flat=True)[:2])
    return org_ids[0] if len(org_ids) == 1 else None
