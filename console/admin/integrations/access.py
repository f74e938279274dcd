"""The member access page of an integration: which of the organization's members may view it, change it or
manage its keys (django-guardian object permissions, granted through integrations.access)."""

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from integrations import access
from organizations.models import Organization

from ..mixins import object_action


class MemberAccessMixin:
    """For IntegrationAdmin (with ObjectActionsMixin): the integration's org admins grant access."""

    def has_manage_access_permission(self, request, obj):
        return Organization.objects.tenancy.allows(request.user, "change", obj.organization)

    @object_action("access", methods=("GET", "POST"), permission="manage_access")
    def access(self, request, integration):
        """Per-integration object permissions for the organization's members."""
        if request.method == "POST":
            wanted = {
                user.pk: {p for p in access.MEMBER_PERMS if request.POST.get(f"perm-{user.pk}-{p}") == "on"}
                for user in access.members(integration)
            }
            changes = access.set_member_access(integration, wanted, actor=request.user)
            self.message_user(request, f"Saved member access ({len(changes)} change(s)).", messages.SUCCESS)
            return HttpResponseRedirect(request.path)
        rows = [
            {
                "user": user,
                "perms": [(perm, access.PERM_LABELS[perm], perm in held) for perm in access.MEMBER_PERMS],
            }
            for user, held in access.member_access(integration)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": integration,
            "title": f"Member access to “{integration.name}”",
            "rows": rows,
            "perm_labels": [access.PERM_LABELS[p] for p in access.MEMBER_PERMS],
        }
        return TemplateResponse(request, "admin/integrations/integration/access.html", context)
