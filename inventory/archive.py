"""
Archived products (DELETE /products/{id}, issue 16): the row, its SKU, its stock rows and every order line
naming it are kept, but it sells nowhere — the inventory engine recomputes it to 0 for every channel (and
announces that as any figure change) — its stock pushes are refused per row, and routing holds orders
naming it. Restoring it (the admin) makes it sellable again and its figures are recomputed.
"""

from django.db import transaction
from django.utils import timezone

from core.errors import DomainError
from integrations.choices import EventType
from integrations.webhooks import outbox

from .models import Product
from .services import mark_changed


class AlreadyArchived(DomainError):
    """Archiving an archived product, or restoring one that is not: 409 conflict, nothing changed."""

    api_code = "conflict"


def _payload(product) -> dict:
    return {
        "id": str(product.pk),
        "sku": product.sku,
        "archived_at": product.archived_at.isoformat() if product.archived_at else None,
    }


def archive_product(product, *, integration=None) -> Product:
    """
    Archive `product` in one transaction: archived_at set, its figures marked for recompute (0 everywhere)
    and product.deleted recorded. AlreadyArchived when it is archived already.
    """
    with transaction.atomic():
        locked = Product.objects.select_for_update().get(pk=product.pk)
        if locked.archived_at is not None:
            raise AlreadyArchived(f"Product {locked.sku} is already archived.", details={"sku": [locked.sku]})
        locked.archived_at = timezone.now()
        locked.save(update_fields=["archived_at", "updated_at"])
        mark_changed(locked.organization_id, [locked.pk])
        outbox.emit(
            locked.organization_id,
            EventType.PRODUCT_DELETED,
            "product",
            locked.pk,
            _payload(locked),
            integration=integration,
        )
    return locked


def restore_product(product) -> Product:
    """
    Bring an archived product back: sellable again, its figures recomputed (orders held for it are retried)
    and product.updated recorded. AlreadyArchived (409) when it is not archived.
    """
    with transaction.atomic():
        locked = Product.objects.select_for_update().get(pk=product.pk)
        if locked.archived_at is None:
            raise AlreadyArchived(f"Product {locked.sku} is not archived.", details={"sku": [locked.sku]})
        locked.archived_at = None
        locked.save(update_fields=["archived_at", "updated_at"])
        mark_changed(locked.organization_id, [locked.pk], stock_up=True)
        outbox.emit(locked.organization_id, EventType.PRODUCT_UPDATED, "product", locked.pk, _payload(locked))
    return locked


def archived_skus(product_ids) -> list[str]:
    """The SKUs of the archived products among `product_ids`, sorted (one query)."""
    archived = Product.objects.filter(pk__in=set(product_ids), archived_at__isnull=False)
    return sorted(archived.values_list("sku", flat=True))
