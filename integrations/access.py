"""
Members' access to an integration: the django-guardian object permissions an org admin grants its
organization's members on it (view it, change it, manage its keys), each change on the audit trail.
"""

from django.contrib.auth import get_user_model
from django.db import transaction
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from organizations.choices import Role
from organizations.scoping import MEMBER_ACTIONS

from .audit import record_event
from .choices import EventKind
from .models import Integration

# The permissions a member may hold on an integration, and how the access page names them.
MEMBER_PERMS = tuple(f"{action}_integration" for action in MEMBER_ACTIONS)
PERM_LABELS = {
    "view_integration": "View",
    "change_integration": "Change",
    "manage_keys_integration": "Manage keys",
}


def members(integration: Integration):
    """The users with the member role in the integration's organization (org admins need no grants)."""
    return (
        get_user_model()
        .objects.filter(memberships__organization=integration.organization, memberships__role=Role.MEMBER)
        .order_by("username")
    )


def member_access(integration: Integration) -> list[tuple]:
    """Each member with the set of MEMBER_PERMS they hold on the integration."""
    return [(user, set(get_perms(user, integration)) & set(MEMBER_PERMS)) for user in members(integration)]


def set_member_access(integration: Integration, wanted: dict, *, actor=None) -> list[str]:
    """
    Give each member exactly the permissions in `wanted[user.pk]` (absent: none) and record what moved as
    one PERMISSIONS_CHANGED event ("+change_integration alice"). Users who are not members are ignored.
    Returns the changes.
    """
    changes = []
    with transaction.atomic():
        for user, held in member_access(integration):
            for perm in MEMBER_PERMS:
                want = perm in wanted.get(user.pk, ())
                if want and perm not in held:
                    assign_perm(f"integrations.{perm}", user, integration)
                    changes.append(f"+{perm} {user.get_username()}")
                elif not want and perm in held:
                    remove_perm(f"integrations.{perm}", user, integration)
                    changes.append(f"-{perm} {user.get_username()}")
        if changes:
            record_event(
                integration,
                EventKind.PERMISSIONS_CHANGED,
                "Member access changed: " + ", ".join(changes),
                actor=actor,
                data={"changes": changes},
            )
    return changes
