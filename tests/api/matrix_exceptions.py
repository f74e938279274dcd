"""
Exceptions in the tenant-boundary matrix (tests/api/test_tenant_matrix.py): `ENTRIES` for its REGISTRY and
`build(world)` for its `world` fixture. Import this module after `Tenancy` is defined there.

Tenant A's channel and 3PL each have an exception with canary text, organization A has one of no
integration (org keys only), and Globex's channel one, so the other organization's lists are not vacuous.
The outsiders' POST names A's order as its entity: it is free text, so the report is made — for the
outsider's own integration, never counted on A's exception.
"""

from django.db.models import Q

from automations import exceptions
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind
from tests.api.test_tenant_matrix import Tenancy


def build(world):
    """An exception each for A's channel, A's 3PL, organization A itself and Globex's channel."""
    w = world
    for integration, message in ((w.channel, "CANARY-A shop"), (w.tpl, "CANARY-A 3pl"), (w.b, "Globex")):
        exceptions.raise_exception(
            integration.organization_id,
            ExceptionKind.CONNECTOR_REPORTED,
            f"{message} exception",
            integration=integration,
            entity_type="order",
            entity_id=w.order.pk,
        )
    exceptions.raise_exception(w.org_a, ExceptionKind.STUCK_ORDER, "CANARY-ORG-A stuck", entity_type="order")


def exceptions_of_a(w):
    return SyncException.objects.filter(
        Q(integration__in=w.tenant_a) | Q(organization=w.org_a, integration=None)
    )


EXCEPTIONS = dict(tenant=exceptions_of_a, org=lambda w: SyncException.objects.filter(organization=w.org_a))


def report_body(w):
    # A's channel's exception names this very entity; an outsider's report must open its own.
    return {"message": "outsider report", "entity_type": "order", "entity_id": str(w.order.pk)}


ENTRIES: dict[str, Tenancy] = {
    "api:exception-list": Tenancy(**EXCEPTIONS, body=report_body),
    "api:exception-detail": Tenancy(
        **EXCEPTIONS, obj=lambda w: exceptions_of_a(w).filter(integration=w.channel).get()
    ),
}
