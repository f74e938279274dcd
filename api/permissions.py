"""Every endpoint declares the grant each action needs; a key without it gets 403 `missing_grant`."""

from django.core.exceptions import ImproperlyConfigured
from rest_framework import exceptions, permissions

NO_GRANT = None  # e.g. GET /me: any valid key


class MissingGrant(exceptions.PermissionDenied):
    def __init__(self, grant):
        super().__init__(f"This key lacks the {grant} grant.", code="missing_grant")
        self.details = {"required": [grant]}


def required_grant(view, request):
    """The grant the view declares for this action (viewsets) or method (plain views). Fails closed."""
    grants = getattr(view, "grants", None)
    if grants is None:
        raise ImproperlyConfigured(f"{type(view).__name__} declares no grants.")
    action = getattr(view, "action", None) or request.method
    if action == "metadata" and hasattr(view, "action_map"):
        # DRF's OPTIONS answer checks each write method on a clone of the request: judge it as that action.
        action = view.action_map.get(request.method.lower(), action)
    if action not in grants and request.method in grants:
        action = request.method
    if action not in grants:
        # OPTIONS, and methods the view has no handler for (it answers 405 itself), need no grant.
        if request.method == "OPTIONS" or not hasattr(view, request.method.lower()):
            return NO_GRANT
        raise ImproperlyConfigured(f"{type(view).__name__} declares no grant for {action}.")
    return grants[action]


class GrantPermission(permissions.BasePermission):
    def has_permission(self, request, view):
        key = request.auth
        if key is None:
            raise exceptions.NotAuthenticated()
        grant = required_grant(view, request)
        if grant is not NO_GRANT and grant not in key.grants:
            raise MissingGrant(grant)
        return True
