"""
CSV import/export of the catalog and of stock (django-import-export). Both are bound to one organization,
the importing user's choice among those they administer: rows are matched and created there and nowhere
else. Writes go through inventory.services, so outbox events and exceptions happen as through the API.
"""

import numbers
from collections import defaultdict
from copy import copy

from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets
from import_export.instance_loaders import CachedInstanceLoader
from import_export.results import RowResult

from inventory import services
from inventory.models import InventoryLevel, Location, Product
from inventory.skus import normalize_sku

# --- spreadsheet formulae (issue 14, finding 5) ------------------------------------------------------------
# A cell a spreadsheet would run as a formula: OWASP's list of leading characters, also after leading
# whitespace. Written by hand because the library's IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT only drops one
# leading "=" (not +, -, @, tab or CR; "==1" stays a formula) and turns every cell into text.
FORMULA_STARTS = ("=", "+", "-", "@")
FORMULA_CONTROLS = ("\t", "\r")


def _runs_as_formula(text: str) -> bool:
    # Leading quotes count through, so a text that starts with a quote is quoted once more and an import
    # can take exactly one quote off (escape_formula and unescape_formula are inverses).
    text = text.lstrip("'")
    return text.startswith(FORMULA_CONTROLS) or text.lstrip().startswith(FORMULA_STARTS)


def escape_formula(text: str) -> str:
    """OWASP's escape: a single quote in front of a text a spreadsheet would run as a formula."""
    return "'" + text if _runs_as_formula(text) else text


def unescape_formula(text: str) -> str:
    """The text `escape_formula` was given (a cell of one of our exports, imported back)."""
    return text[1:] if text.startswith("'") and _runs_as_formula(text[1:]) else text


class OrganizationBoundResource(resources.ModelResource):
    """
    A resource that reads and writes one organization's rows; without one it sees nothing (fails closed).
    Text cells are escaped against spreadsheet formulae on export, whatever the format, and unescaped on
    import, so an export imports back unchanged.
    """

    def __init__(self, organization=None, **kwargs):
        super().__init__(**kwargs)
        self.organization = organization

    def export_field(self, field, instance, **kwargs):
        value = super().export_field(field, instance, **kwargs)
        # Numbers keep their sign (a negative price is not a formula); any other text is escaped.
        if isinstance(value, str) and not isinstance(field.get_value(instance), numbers.Number):
            return escape_formula(value)
        return value

    def before_import(self, dataset, **kwargs):
        if self.organization is None:
            raise ValueError("Choose the organization to import into.")
        for index, row in enumerate(dataset):
            dataset[index] = tuple(unescape_formula(v) if isinstance(v, str) else v for v in row)


class SkuWidget(widgets.CharWidget):
    """A SKU cell read as every SKU is (inventory/skus.py): an existing SKU in another Unicode form is found."""

    def clean(self, value, row=None, **kwargs):
        value = super().clean(value, row, **kwargs)
        return normalize_sku(value) if isinstance(value, str) else value


class ProductResource(OrganizationBoundResource):
    """
    Products by SKU: an existing SKU of the organization is updated, a new one created; a new look-alike of
    an existing SKU is a row error (Product.clean).
    """

    sku = fields.Field(attribute="sku", column_name="sku", widget=SkuWidget())

    class Meta:
        model = Product
        name = "Products by SKU"
        fields = ("sku", "name", "barcode", "price", "weight", "active")
        import_id_fields = ("sku",)
        instance_loader_class = CachedInstanceLoader
        clean_model_instances = True
        skip_unchanged = True
        report_skipped = True

    def get_queryset(self):
        if self.organization is None:
            return Product.objects.none()
        return Product.objects.filter(organization=self.organization)

    def init_instance(self, row=None):
        return Product(organization=self.organization)

    def do_instance_save(self, instance, is_create):
        item = {"sku": instance.sku, **{f: getattr(instance, f) for f in services.PRODUCT_FIELDS}}
        _, _, [product] = services.upsert_products(self.organization, [item])
        instance.pk = product.pk


class StockResource(OrganizationBoundResource):
    """
    Stock by SKU and location name. Import sets absolute on-hand counts per location through
    `services.set_stock`: known SKUs are applied, unknown ones skipped, reported and raised as one exception.
    """

    sku = fields.Field(attribute="product__sku", column_name="sku")
    location = fields.Field(attribute="location__name", column_name="location")
    on_hand = fields.Field(attribute="on_hand", column_name="on_hand", widget=widgets.IntegerWidget())
    committed = fields.Field(attribute="committed", column_name="committed", readonly=True)
    incoming = fields.Field(attribute="incoming", column_name="incoming", readonly=True)
    available = fields.Field(attribute="available", column_name="available", readonly=True)

    class Meta:
        model = InventoryLevel
        name = "Stock by SKU and location"
        fields = ("sku", "location", "on_hand", "committed", "incoming", "available")
        import_id_fields = ("sku", "location")
        report_skipped = True

    def get_queryset(self):
        if self.organization is None:
            return InventoryLevel.objects.none()
        return InventoryLevel.objects.filter(product__organization=self.organization).select_related(
            "product", "location"
        )

    def get_import_fields(self):
        # committed, incoming and available are exported for reading; an import sets on hand only.
        return [f for f in super().get_import_fields() if not f.readonly]

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        skus = {normalize_sku(str(v).strip()) for v in dataset["sku"]} if "sku" in dataset.headers else set()
        self.locations = {loc.name: loc for loc in Location.objects.filter(organization=self.organization)}
        self.products = {
            p.sku: p for p in Product.objects.filter(organization=self.organization, sku__in=skus)
        }
        self.levels = {
            (level.product_id, level.location_id): level
            for level in InventoryLevel.objects.filter(
                product__in=list(self.products.values()), location__in=list(self.locations.values())
            )
        }
        self.pending = defaultdict(dict)  # location → {sku: on_hand}, in file order; the last row wins
        self.unknown_skus = set()

    def import_row(self, row, instance_loader, **kwargs):
        # Rows are checked here and applied per location in after_import, so set_stock sees a whole push.
        result = self.get_row_result_class()()
        sku = normalize_sku(str(row.get("sku") or "").strip())
        name = str(row.get("location") or "").strip()
        errors = {}
        if not sku:
            errors["sku"] = ["Required."]
        location = self.locations.get(name)
        if location is None:
            errors["location"] = [f"No location named “{name}” in {self.organization}."]
        try:
            on_hand = int(str(row.get("on_hand")).strip())
            if on_hand < 0:
                raise ValueError
        except (TypeError, ValueError):
            errors["on_hand"] = ["A whole number, 0 or more."]
        if errors:
            result.import_type = RowResult.IMPORT_TYPE_INVALID
            result.validation_error = ValidationError(errors)
            return result

        self.pending[location][sku] = on_hand
        product = self.products.get(sku)
        if product is None:
            self.unknown_skus.add(sku)
            result.import_type = RowResult.IMPORT_TYPE_SKIP
            result.diff = [f"{sku} (unknown SKU)", name, on_hand]  # autoescaped by the template
            return result
        if product.archived_at is not None:  # set_stock refuses an archived product's count
            result.import_type = RowResult.IMPORT_TYPE_SKIP
            result.diff = [f"{sku} (archived: refused)", name, on_hand]
            return result
        level = self.levels.get((product.pk, location.pk))
        before = level or InventoryLevel(product=product, location=location)
        after = copy(before)
        after.on_hand = on_hand
        if level is None:
            result.import_type = RowResult.IMPORT_TYPE_NEW
        elif level.on_hand == on_hand:
            result.import_type = RowResult.IMPORT_TYPE_SKIP
        else:
            result.import_type = RowResult.IMPORT_TYPE_UPDATE
        diff = self.get_diff_class()(self, before, level is None)
        diff.compare_with(self, after)
        result.diff = diff.as_html()
        result.instance = after
        return result

    def after_import(self, dataset, result, **kwargs):
        # Deliberately not ModelResource.after_import: set_stock writes the rows, no sequences to reset.
        result.unknown_skus = sorted(self.unknown_skus)
        if self._is_dry_run(kwargs):
            return
        for location, counts in self.pending.items():
            services.set_stock(location, [{"sku": sku, "on_hand": n} for sku, n in counts.items()])
