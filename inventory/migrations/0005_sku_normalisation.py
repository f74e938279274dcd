"""
SKUs normalised (#14, finding 10e; inventory/skus.py): existing product SKUs and mapping SKUs become NFC without
format characters, and products get their look-alike key, unique per organization from here on.

Existing data is never merged or renamed by guesswork. A SKU whose normal form is already another row's SKU is
left as it was; of two existing look-alikes the older keeps the key and the other is left without one (the
constraint ignores NULL). Each such row is logged for a person to rename; lookups still find it by its exact
SKU (inventory.services.resolve_skus tries the SKU as sent before its normal form).
"""

import logging
import unicodedata

from django.db import migrations, models

logger = logging.getLogger("switchyard.migrations")


# Copied from inventory/skus.py: a migration keeps the rule of its day.
def normalize_sku(value):
    visible = "".join(char for char in value if unicodedata.category(char) != "Cf")
    return unicodedata.normalize("NFC", visible)


def _normalise_column(model, owner, column, what):
    """Store `column` normalised, row by row, unless its normal form is already taken under the same owner."""
    taken = set(model.objects.values_list(owner, column))
    for pk, owner_id, sku in model.objects.order_by("pk").values_list("pk", owner, column):
        normal = normalize_sku(sku)
        if normal == sku:
            continue
        if (owner_id, normal) in taken:
            logger.warning("%s %s: %r left as it is; its normal form %r is taken.", what, pk, sku, normal)
            continue
        model.objects.filter(pk=pk).update(**{column: normal})
        taken.discard((owner_id, sku))
        taken.add((owner_id, normal))


def normalise_skus(apps, schema_editor):
    Product = apps.get_model("inventory", "Product")
    SkuMapping = apps.get_model("inventory", "SkuMapping")

    _normalise_column(Product, "organization_id", "sku", "Product")

    keys = set()
    for pk, organization_id, sku in Product.objects.order_by("pk").values_list(
        "pk", "organization_id", "sku"
    ):
        key = unicodedata.normalize("NFKC", normalize_sku(sku))
        if (organization_id, key) in keys:
            logger.warning(
                "Product %s: SKU %r looks like another SKU of its organization; rename one.", pk, sku
            )
            key = None
        else:
            keys.add((organization_id, key))
        Product.objects.filter(pk=pk).update(sku_key=key)

    _normalise_column(SkuMapping, "integration_id", "external_sku", "SKU mapping")


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0004_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="product",
            name="sku_key",
            field=models.TextField(editable=False, null=True, verbose_name="SKU look-alike key"),
        ),
        migrations.RunPython(normalise_skus, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="product",
            constraint=models.UniqueConstraint(
                fields=("organization", "sku_key"), name="product_unique_sku_lookalike_per_org"
            ),
        ),
    ]
