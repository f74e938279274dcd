import math

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from core.history import ConfigHistory
from integrations.models import Integration
from organizations.models import Organization
from organizations.scoping import restricted

from .choices import LocationKind
from .skus import lookalike_key, lookalike_message, normalize_sku


class Product(models.Model):
    """A sellable item of an organization's catalog, identified by its SKU (normalised: inventory/skus.py)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField("SKU", max_length=100)
    # NFKC of the SKU, unique per organization: the database refuses a look-alike of another SKU. Null only
    # where the 0005 migration found two existing look-alikes (it logged them); set once, on creation.
    # NULL rather than "": NULLs are distinct in the unique constraint, an empty string would not be.
    sku_key = models.TextField("SKU look-alike key", null=True, editable=False)  # noqa: DJ001
    name = models.CharField(max_length=255)
    barcode = models.CharField(max_length=64, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    weight = models.DecimalField(
        max_digits=10, decimal_places=3, null=True, blank=True, help_text="Kilograms."
    )
    active = models.BooleanField(default=True)
    archived_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Archived (deleted through the API): kept with its SKU and history, sold nowhere.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = restricted()

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "sku"], name="product_unique_sku_per_org"),
            models.UniqueConstraint(
                fields=["organization", "sku_key"], name="product_unique_sku_lookalike_per_org"
            ),
        ]
        indexes = [models.Index(fields=["organization", "-updated_at"], name="product_org_recent_idx")]

    def __str__(self):
        return f"{self.sku} — {self.name}"

    def save(self, *args, **kwargs):
        if self._state.adding:
            self.sku = normalize_sku(self.sku)
            self.sku_key = lookalike_key(self.sku)
        super().save(*args, **kwargs)

    def clean(self):
        """A new SKU normalised; empty once normalised, or a look-alike of another SKU: refused (forms, CSV)."""
        if not self._state.adding:
            return  # the SKU is the product's identity: never rewritten (a legacy one stays reachable as is)
        self.sku = normalize_sku(self.sku or "")
        if not self.sku:
            raise ValidationError({"sku": "A SKU needs visible characters."})
        if self.organization_id is not None:
            existing = (
                Product.objects.filter(organization_id=self.organization_id, sku_key=lookalike_key(self.sku))
                .exclude(sku=self.sku)
                .values_list("sku", flat=True)
                .first()
            )
            if existing is not None:
                raise ValidationError({"sku": lookalike_message(existing)})


class SkuMapping(models.Model):
    """An integration's own SKU for a product: channel SKUs are translated in, 3PL SKUs out and back in."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="sku_mappings")
    external_sku = models.CharField(max_length=100)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="sku_mappings")
    history = ConfigHistory(excluded_fields=[])

    objects = restricted(organization="integration__organization", member_access="integration")

    class Meta:
        ordering = ["integration", "external_sku"]
        verbose_name = "SKU mapping"
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "external_sku"], name="skumapping_unique_external"
            ),
            models.UniqueConstraint(fields=["integration", "product"], name="skumapping_unique_product"),
        ]

    def __str__(self):
        return f"{self.external_sku} → {self.product.sku}"

    def save(self, *args, **kwargs):
        self.external_sku = normalize_sku(self.external_sku)  # looked up normalised (inventory/skus.py)
        super().save(*args, **kwargs)

    def clean(self):
        self.external_sku = normalize_sku(self.external_sku or "")


class Location(models.Model):
    """A place stock sits: a warehouse, a 3PL site or a store; managed by the integration that reports it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="locations")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=LocationKind.choices, default=LocationKind.WAREHOUSE)
    address = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    managed_by = models.ForeignKey(
        Integration,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_locations",
        help_text="The integration (3PL, WMS) that reports this location's stock and ships from it.",
    )
    priority = models.PositiveIntegerField(default=100, help_text="Routing preference: lower ships first.")
    ships = models.BooleanField(default=True, help_text="Orders may be routed here.")
    sells = models.BooleanField(default=True, help_text="Its stock counts towards what channels may sell.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = restricted(member_access="managed_by")

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="location_unique_name_per_org")
        ]

    def __str__(self):
        return self.name


class ChannelLocation(models.Model):
    """A channel sells from these locations; a channel with none sells from every sellable location."""

    channel = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="channel_locations")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="channel_links")

    objects = restricted(organization="channel__organization", member_access="channel")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "location"], name="channellocation_unique")]

    def __str__(self):
        return f"{self.channel} sells from {self.location}"


class InventoryLevel(models.Model):
    """Stock of one product at one location. available = on_hand − committed."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="levels")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="levels")
    on_hand = models.IntegerField(default=0)
    committed = models.IntegerField(default=0, help_text="Reserved by shipping requests not yet shipped.")
    incoming = models.IntegerField(default=0, help_text="Expected (purchase orders, transfers).")
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = restricted(organization="product__organization", member_access="location__managed_by")

    class Meta:
        ordering = ["product", "location"]
        constraints = [
            models.UniqueConstraint(fields=["product", "location"], name="level_unique_product_location"),
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="level_on_hand_non_negative"),
            models.CheckConstraint(condition=Q(committed__gte=0), name="level_committed_non_negative"),
            models.CheckConstraint(condition=Q(incoming__gte=0), name="level_incoming_non_negative"),
        ]
        indexes = [models.Index(fields=["location", "-updated_at"], name="level_location_recent_idx")]

    def __str__(self):
        return f"{self.product.sku} @ {self.location}: {self.on_hand}"

    @property
    def available(self):
        return self.on_hand - self.committed


class InventoryBuffer(models.Model):
    """Stock held back from channels: org-wide, or for a location, product or channel; most specific wins."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="buffers")
    location = models.ForeignKey(
        Location, null=True, blank=True, on_delete=models.CASCADE, related_name="buffers"
    )
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.CASCADE, related_name="buffers"
    )
    channel = models.ForeignKey(
        Integration, null=True, blank=True, on_delete=models.CASCADE, related_name="buffers"
    )
    quantity = models.PositiveIntegerField(null=True, blank=True, help_text="Units held back.")
    percent = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True, help_text="Percent of available held back."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = restricted(member_access="channel")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(quantity__isnull=False, percent__isnull=True)
                    | Q(quantity__isnull=True, percent__isnull=False)
                ),
                name="buffer_quantity_xor_percent",
            ),
            models.CheckConstraint(
                condition=Q(percent__isnull=True) | Q(percent__gte=0, percent__lte=100),
                name="buffer_percent_range",
            ),
            models.UniqueConstraint(
                fields=["organization", "location", "product", "channel"],
                name="buffer_unique_scope",
                nulls_distinct=False,
            ),
        ]

    def __str__(self):
        amount = f"{self.quantity} units" if self.quantity is not None else f"{self.percent}%"
        scope = ", ".join(str(x) for x in (self.location, self.product, self.channel) if x) or "everything"
        return f"Hold back {amount} of {scope}"

    @property
    def specificity(self) -> int:
        return sum(x is not None for x in (self.location_id, self.product_id, self.channel_id))

    def held_back(self, available: int) -> int:
        if available <= 0:
            return 0
        if self.quantity is not None:
            return self.quantity
        return math.ceil(available * self.percent / 100)  # round up: never oversell by a fraction


class ChannelInventory(models.Model):
    """
    What a channel may sell of a product, as the inventory engine last computed it (`available`; a change
    emits inventory.updated), and what a manifest connector last accepted (`published`).
    """

    channel = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="channel_inventory")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="channel_inventory")
    available = models.IntegerField(default=0)
    published = models.IntegerField(
        null=True,
        blank=True,
        help_text="The figure a manifest connector last accepted (empty: never pushed).",
    )
    published_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = restricted(organization="channel__organization", member_access="channel")

    class Meta:
        verbose_name_plural = "channel inventory"
        constraints = [
            models.UniqueConstraint(fields=["channel", "product"], name="channelinventory_unique"),
            models.CheckConstraint(condition=Q(available__gte=0), name="channelinventory_non_negative"),
        ]

    def __str__(self):
        return f"{self.product.sku} on {self.channel}: {self.available}"


class AvailabilityChange(models.Model):
    """
    A product whose availability must be recomputed (written in the transaction that moved its stock, so a
    change is never lost to a dead worker); no product: the whole organization (a buffer or link changed).
    The inventory engine drains these rows.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    stock_up = models.BooleanField(
        default=False,
        help_text="Stock may have become available (on hand up, a reservation given back, a buffer or link "
        "changed): orders waiting for it are retried.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "id"], name="availchange_org_idx")]

    def __str__(self):
        return f"{self.product_id or 'everything'} in {self.organization_id}"
