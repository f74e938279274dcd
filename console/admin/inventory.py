"""
The catalog and stock in the admin: products and stock levels with CSV import/export into one organization,
SKU mappings, locations, buffers, channel links and what each channel was last told. Saves go through the
inventory services (outbox events, the availability recompute).
"""

import os

from django.contrib import admin, messages
from django.db.models import F
from import_export.admin import ImportExportMixin
from import_export.formats import base_formats
from import_export.tmp_storages import TempFolderStorage

from console.admin.history import ConfigHistoryAdmin
from inventory import archive, services
from inventory.models import (
    ChannelInventory,
    ChannelLocation,
    InventoryBuffer,
    InventoryLevel,
    Location,
    Product,
    SkuMapping,
)
from orders.locations import LocationConflict, deactivate_location, reactivate_location
from organizations.models import Organization

from ..display import badge
from ..forms.common import same_organization_form
from ..forms.inventory import OrganizationConfirmImportForm, OrganizationImportForm, sign_upload
from .mixins import (
    ObjectActionsMixin,
    OrganizationColumnMixin,
    OrganizationScopedAdmin,
    ReadOnlyAdminMixin,
    object_action,
)
from .resources import ProductResource, StockResource

# --- CSV import/export bound to one organization ----------------------------------------------------------


class OrganizationImportExportMixin(ImportExportMixin):
    """CSV import into one organization the user administers; export of the scoped (filtered) changelist."""

    import_form_class = OrganizationImportForm
    confirm_form_class = OrganizationConfirmImportForm
    # The confirm form checks that the signed upload is still in the temp folder: pinned, not a setting.
    tmp_storage_class = TempFolderStorage
    formats = [base_formats.CSV]

    def import_organizations(self, request):
        return Organization.objects.restrict(request.user, "add").order_by("name")

    def has_import_permission(self, request):
        return Organization.objects.tenancy.reaches_any(request.user, "add")

    def has_export_permission(self, request):
        return self.has_view_permission(request)

    def create_import_form(self, request):
        form = super().create_import_form(request)
        form.fields["organization"].queryset = self.import_organizations(request)
        return form

    def create_confirm_form(self, request, import_form=None):
        form = super().create_confirm_form(request, import_form)
        form.fields["organization"].queryset = self.import_organizations(request)
        return form

    def get_confirm_form_kwargs(self, request, import_form=None):
        return {**super().get_confirm_form_kwargs(request, import_form), "user": request.user}

    def get_confirm_form_initial(self, request, import_form):
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            organization = import_form.cleaned_data["organization"]
            initial["organization"] = organization.pk
            name = os.path.basename(initial["import_file_name"])  # the temp storage keeps a full path
            initial["import_file_name"] = sign_upload(
                name,
                request.user,
                organization,
                initial["format"],
                initial["resource"],
            )
        return initial

    def get_valid_export_item_pks(self, request):
        # Rows picked for export from the changelist: only those the user may see.
        return self.get_queryset(request).values_list("pk", flat=True)

    def get_import_resource_kwargs(self, request, **kwargs):
        form = kwargs.get("form")
        cleaned = getattr(form, "cleaned_data", None) or {}
        return {"organization": cleaned.get("organization")}


# --- changes that move what every channel may sell -------------------------------------------------------


class RecomputesAvailability:
    """
    Saving or deleting these rows (buffers, channel links, a location's flags) moves availability across the
    whole catalog: the inventory engine is told in the same transaction (services.mark_changed).
    """

    availability_org_field = "organization_id"

    def _org_of(self, obj):
        value = obj
        for part in self.availability_org_field.split("__"):
            value = getattr(value, part)
        return value

    def changes_availability(self, form, change) -> bool:
        return True

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if self.changes_availability(form, change):
            services.mark_changed(self._org_of(obj))

    def delete_model(self, request, obj):
        org_id = self._org_of(obj)
        super().delete_model(request, obj)
        services.mark_changed(org_id)

    def delete_queryset(self, request, queryset):
        org_ids = set(queryset.values_list(self.availability_org_field, flat=True))
        super().delete_queryset(request, queryset)
        for org_id in sorted(org_ids):
            services.mark_changed(org_id)


# --- catalog --------------------------------------------------------------------------------------------


class ArchivedFilter(admin.SimpleListFilter):
    title = "archived"
    parameter_name = "archived"

    def lookups(self, request, model_admin):
        return [("no", "In the catalog"), ("yes", "Archived")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(archived_at__isnull=self.value() == "no")
        return queryset


@admin.register(Product)
class ProductAdmin(
    OrganizationImportExportMixin, OrganizationColumnMixin, ObjectActionsMixin, OrganizationScopedAdmin
):
    """
    The catalog; CSV import/export by SKU. Saves go through the product upsert (outbox events); archiving
    and restoring through inventory.archive (buttons on the page, and bulk actions).
    """

    change_form_template = "admin/inventory/product/change_form.html"
    actions = ["archive_product_selected", "restore_product_selected"]
    resource_classes = [ProductResource]
    list_display = ["sku", "name", "price", "active", "archived_badge", "updated_at", "organization"]
    list_filter = ["active", ArchivedFilter]
    list_select_related = ["organization"]
    search_fields = ["sku", "name", "barcode"]
    fields = [
        "organization",
        "sku",
        "name",
        "barcode",
        "price",
        "weight",
        "active",
        "archived_at",
        "created_at",
        "updated_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        fixed = ["archived_at", "created_at", "updated_at"]
        # The SKU is the product's identity (order lines and mappings name it); it does not move orgs either.
        return [*fixed, "organization", "sku"] if obj is not None else fixed

    def save_model(self, request, obj, form, change):
        item = {"sku": obj.sku, **{f: getattr(obj, f) for f in services.PRODUCT_FIELDS}}
        _, _, [product] = services.upsert_products(obj.organization, [item])
        obj.pk = product.pk

    @admin.display(description="archived", ordering="archived_at")
    def archived_badge(self, obj):
        if obj.archived_at is None:
            return ""
        return badge({"archived": "grey"}, "archived", "Archived")

    def action_label(self, obj):
        return f"Product {obj.sku}"

    @object_action(
        "archive", refused=(archive.AlreadyArchived,), bulk="Archive selected", done=("Archived", "product")
    )
    def archive_product(self, request, product):
        archive.archive_product(product)
        return f"Archived product {product.sku}: it sells nowhere until it is restored."

    @object_action(
        "restore", refused=(archive.AlreadyArchived,), bulk="Restore selected", done=("Restored", "product")
    )
    def restore_product(self, request, product):
        archive.restore_product(product)
        return f"Restored product {product.sku}: it sells again."


@admin.register(SkuMapping)
class SkuMappingAdmin(ConfigHistoryAdmin, OrganizationScopedAdmin):
    form = same_organization_form("integration", "product")
    list_display = ["external_sku", "integration", "product"]
    list_filter = ["integration"]
    list_select_related = ["integration", "product"]
    search_fields = ["external_sku", "product__sku", "product__name"]
    autocomplete_fields = ["product"]


# --- locations and stock --------------------------------------------------------------------------------


@admin.register(Location)
class LocationAdmin(
    RecomputesAvailability, OrganizationColumnMixin, ObjectActionsMixin, OrganizationScopedAdmin
):
    """
    Where stock sits. A location is switched off and on with the buttons (orders.locations: not while
    shipping requests there are open), not by editing `active`.
    """

    change_form_template = "admin/inventory/location/change_form.html"
    actions = ["deactivate_selected", "reactivate_selected"]
    form = same_organization_form("organization", "managed_by")
    list_display = [
        "name",
        "active_badge",
        "kind",
        "managed_by",
        "priority",
        "ships",
        "sells",
        "organization",
    ]
    list_filter = ["active", "kind", "managed_by"]
    list_select_related = ["managed_by", "organization"]
    search_fields = ["name"]

    def changes_availability(self, form, change) -> bool:
        # A new location holds no stock yet; an existing one counts (or stops counting) when a flag moves.
        return change and bool({"active", "sells"} & set(form.changed_data))

    def get_readonly_fields(self, request, obj=None):
        return ["active"] if obj is not None else []

    @admin.display(description="active", ordering="active")
    def active_badge(self, obj):
        return badge({True: "green", False: "grey"}, obj.active, "Active" if obj.active else "Inactive")

    def action_label(self, obj):
        return f"Location {obj}"

    @object_action(
        "deactivate",
        refused=(LocationConflict,),
        bulk="Deactivate selected",
        done=("Deactivated", "location"),
    )
    def deactivate(self, request, location):
        deactivate_location(location)
        return f"Deactivated {location}: its stock no longer counts for channels and routing skips it."

    @object_action(
        "reactivate",
        refused=(LocationConflict,),
        bulk="Reactivate selected",
        done=("Reactivated", "location"),
    )
    def reactivate(self, request, location):
        reactivate_location(location)
        return f"Reactivated {location}."


@admin.register(InventoryLevel)
class InventoryLevelAdmin(OrganizationImportExportMixin, OrganizationScopedAdmin):
    """Stock per product and location; hand edits and CSV imports set on hand through set_stock."""

    resource_classes = [StockResource]
    import_template_name = "admin/inventory/inventorylevel/import.html"
    skip_admin_log = True  # set_stock records every change as an outbox event
    form = same_organization_form("product", "location")
    list_display = ["sku", "location", "on_hand", "committed", "available", "incoming", "updated_at"]
    list_filter = ["location", "location__managed_by"]
    list_select_related = ["product", "location"]
    search_fields = ["product__sku", "product__name"]
    autocomplete_fields = ["product"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_available=F("on_hand") - F("committed"))

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["product", "location", "on_hand"]
        return ["product", "location", "on_hand", "committed", "available", "incoming", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        # committed follows shipping requests; incoming has no hand-edit rule yet.
        return (
            [] if obj is None else ["product", "location", "committed", "available", "incoming", "updated_at"]
        )

    @admin.display(description="SKU", ordering="product__sku")
    def sku(self, obj):
        return obj.product.sku

    @admin.display(description="available", ordering="_available")
    def available(self, obj):
        return obj.available

    def save_model(self, request, obj, form, change):
        _, errors = services.set_stock(obj.location, [{"sku": obj.product.sku, "on_hand": obj.on_hand}])
        if errors:  # an archived product's count is refused (an unknown SKU cannot happen here)
            self.message_user(request, f"{obj.product.sku}: refused ({errors[0]['code']}).", messages.ERROR)
        if obj.pk is None:
            obj.pk = InventoryLevel.objects.get(product=obj.product, location=obj.location).pk

    def add_success_message(self, result, request):
        super().add_success_message(result, request)
        unknown = getattr(result, "unknown_skus", [])
        if unknown:
            shown = ", ".join(unknown[:20]) + ("…" if len(unknown) > 20 else "")
            self.message_user(
                request,
                f"{len(unknown)} unknown SKU(s) skipped and raised as an exception: {shown}",
                messages.WARNING,
            )


@admin.register(InventoryBuffer)
class InventoryBufferAdmin(RecomputesAvailability, OrganizationColumnMixin, OrganizationScopedAdmin):
    """Stock held back from channels; the most specific matching buffer wins."""

    form = same_organization_form("organization", "location", "product", "channel")
    list_display = ["__str__", "quantity", "percent", "location", "product", "channel", "organization"]
    list_filter = ["location", "channel"]
    list_select_related = ["location", "product", "channel", "organization"]
    search_fields = ["product__sku", "location__name", "channel__name"]
    autocomplete_fields = ["product"]


@admin.register(ChannelLocation)
class ChannelLocationAdmin(RecomputesAvailability, OrganizationScopedAdmin):
    """Which locations a channel sells from (none: every selling location)."""

    availability_org_field = "channel__organization_id"
    form = same_organization_form("channel", "location")
    list_display = ["channel", "location"]
    list_filter = ["channel", "location"]
    list_select_related = ["channel", "location"]


@admin.register(ChannelInventory)
class ChannelInventoryAdmin(ReadOnlyAdminMixin, OrganizationScopedAdmin):
    """What each channel was last told it may sell (written by the inventory engine)."""

    list_display = ["sku", "channel", "available", "published_at", "updated_at"]
    list_filter = ["channel"]
    list_select_related = ["product", "channel"]
    search_fields = ["product__sku", "product__name"]

    @admin.display(description="SKU", ordering="product__sku")
    def sku(self, obj):
        return obj.product.sku
