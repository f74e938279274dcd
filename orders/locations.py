"""
Switching a location off and on (DELETE /locations/{id}, the admin; issue 16). An inactive location's stock
no longer counts towards what channels may sell (inventory.figures) and routing no longer sends orders there.
It cannot be switched off while shipping requests there are still open: their stock is reserved there and
their 3PL still owes them, so they are fulfilled, canceled or rejected first.
"""

from django.db import transaction

from core.errors import DomainError
from inventory.models import Location
from inventory.services import mark_changed

from .models import ShippingRequest
from .state import OPEN_REQUEST


class LocationConflict(DomainError):
    """The location's state forbids the change (409 conflict): already switched off or on, or requests open."""

    api_code = "conflict"


def deactivate_location(location) -> Location:
    """
    Switch `location` off, in one transaction under its row lock: every channel's figures are recomputed
    without its stock. LocationConflict when it is inactive already, or names its open shipping requests.
    """
    with transaction.atomic():
        locked = Location.objects.select_for_update().get(pk=location.pk)
        if not locked.active:
            raise LocationConflict(f"Location {locked} is already inactive.")
        open_ids = sorted(
            ShippingRequest.objects.filter(location=locked, status__in=OPEN_REQUEST).values_list(
                "pk", flat=True
            )
        )
        if open_ids:
            raise LocationConflict(
                f"Location {locked} has {len(open_ids)} open shipping request(s): fulfill, cancel or reject "
                "them first.",
                details={"shipping_requests": [str(pk) for pk in open_ids[:100]]},
            )
        locked.active = False
        locked.save(update_fields=["active", "updated_at"])
        mark_changed(locked.organization_id)
    return locked


def reactivate_location(location) -> Location:
    """Switch an inactive location back on: its stock counts again and routing may use it (409 if active)."""
    with transaction.atomic():
        locked = Location.objects.select_for_update().get(pk=location.pk)
        if locked.active:
            raise LocationConflict(f"Location {locked} is already active.")
        locked.active = True
        locked.save(update_fields=["active", "updated_at"])
        mark_changed(locked.organization_id)
    return locked
