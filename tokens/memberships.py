"""
Changing a user's place in an organization. Every membership change goes through these two (the admin's
membership page, the organization and user pages' inlines). They live here, above organizations, because a
change that ends someone's org-admin role revokes that user's org keys of the organization in the same
transaction. Authentication checks the current role regardless; this makes the keys show revoked, with
the reason on the trail.
"""

from django.db import transaction

from organizations.choices import Role
from organizations.models import Membership

from .choices import KeyKind
from .issuing import revoke_many
from .models import ApiKey


def save_membership(membership: Membership, *, actor=None) -> Membership:
    """Save a new or changed membership; one that stops its user being an org admin of the organization
    (demoted, or the row moved to another user or organization) revokes their org keys there."""
    with transaction.atomic():
        before = None
        if membership.pk:
            before = (
                Membership.objects.select_for_update()
                .select_related("user", "organization")
                .filter(pk=membership.pk)
                .first()
            )
        membership.save()
        if before is None:
            return membership
        if (before.user_id, before.organization_id) != (membership.user_id, membership.organization_id):
            reason = f"owner {before.user} was removed from {before.organization}"
        elif before.role == Role.ADMIN and membership.role != Role.ADMIN:
            reason = (
                f"owner {before.user} is no longer an org admin of {before.organization} "
                f"(now {membership.get_role_display()})"
            )
        else:
            return membership
        _revoke_owner_keys(before.user, before.organization, actor=actor, reason=reason)
    return membership


def delete_membership(membership: Membership, *, actor=None) -> None:
    """Remove a user from an organization, and revoke their org keys there."""
    with transaction.atomic():
        user, organization = membership.user, membership.organization
        membership.delete()
        _revoke_owner_keys(
            user, organization, actor=actor, reason=f"owner {user} was removed from {organization}"
        )


def _revoke_owner_keys(user, organization, *, actor, reason) -> int:
    if user.is_superuser:
        return 0  # a superuser's org key reaches what its owner does: every organization
    keys = ApiKey.objects.filter(kind=KeyKind.ORG, user=user, organization=organization)
    return revoke_many(keys, actor=actor, reason=reason)
