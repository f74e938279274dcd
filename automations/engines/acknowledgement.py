"""
The exceptions engine's acknowledgement step: a shipping request still `pending` longer than its fulfiller's
`acknowledge_within_minutes` setting (integrations/catalog.py) raises one `unacknowledged_request` exception
on the request, for its fulfiller; once the request is no longer pending (acknowledged, rejected, canceled,
fulfilled) or gone, the sweep resolves it. Set-based and idempotent like the rest of the sweep.
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import CharField, Exists, OuterRef
from django.db.models.functions import Cast

from core.sync_exceptions import ExceptionKind
from integrations.connector_settings import setting
from integrations.models import Integration
from orders.choices import ShippingRequestStatus
from orders.models import ShippingRequest

from ..choices import ExceptionStatus
from ..models import SyncException

KIND = ExceptionKind.UNACKNOWLEDGED_REQUEST
SETTING = "acknowledge_within_minutes"
BATCH = 1000  # per fulfiller and run; what is left over is taken by the next sweep


def _open(org):
    return SyncException.objects.filter(
        organization=org, kind=KIND, status=ExceptionStatus.OPEN, entity_type="shipping_request"
    )


def raise_unacknowledged(org, now) -> int:
    """Open an exception for each request overdue for acknowledgement and not yet raised; returns how many."""
    raised = 0
    fulfillers = Integration.objects.filter(
        pk__in=ShippingRequest.objects.filter(organization=org, status=ShippingRequestStatus.PENDING).values(
            "fulfiller"
        )
    ).select_related("connector")
    for fulfiller in fulfillers.order_by("pk"):
        minutes = setting(fulfiller, SETTING)
        if not isinstance(minutes, int) or isinstance(minutes, bool):
            continue  # a connector without the setting (a manifest 3PL, say) is not held to a delay
        with transaction.atomic():
            raised += _raise_for(org, fulfiller, minutes, now)
    return raised


def _raise_for(org, fulfiller, minutes, now) -> int:
    overdue = ShippingRequest.objects.filter(
        organization=org,
        fulfiller=fulfiller,
        status=ShippingRequestStatus.PENDING,
        created_at__lt=now - timedelta(minutes=minutes),
    )
    mine = _open(org).filter(integration=fulfiller)
    # Still overdue and already raised: seen again now, so the stale rule never closes a live cause.
    mine.filter(entity_id__in=overdue.annotate(key=Cast("pk", CharField())).values("key")).update(
        last_seen=now
    )
    already = mine.filter(entity_id=Cast(OuterRef("pk"), CharField()))
    requests = list(
        overdue.filter(~Exists(already))
        .select_related("order", "location")
        .order_by("created_at", "pk")[:BATCH]
    )
    SyncException.objects.bulk_create(
        [
            SyncException(
                organization=org,
                integration=fulfiller,
                kind=KIND,
                entity_type="shipping_request",
                entity_id=str(request.pk),
                message=(
                    f"Order {request.order}: the shipping request to {request.location} was sent at "
                    f"{request.created_at:%Y-%m-%d %H:%M} UTC and {fulfiller.name} has not acknowledged it "
                    f"within {minutes} minutes (its “Acknowledge within” setting). Check that it is "
                    "connected and fetching its shipping requests."
                ),
                data={"order": str(request.order_id), "sent_at": request.created_at.isoformat()},
                first_seen=now,
                last_seen=now,
            )
            for request in requests
        ],
        ignore_conflicts=True,  # one an overlapping sweep inserted first: the one-open-per-cause rule
    )
    return len(requests)


def still_pending():
    """The subquery `resolve_cleared` keeps an exception open for: its request is still pending."""
    return ShippingRequest.objects.annotate(key=Cast("pk", CharField())).filter(
        key=OuterRef("entity_id"), status=ShippingRequestStatus.PENDING
    )


def cleared(org):
    """This step's open exceptions whose request is no longer pending (or is gone)."""
    return _open(org).filter(~Exists(still_pending()))
