from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.fields import EncryptedJSONField
from core.history import ConfigHistory
from integrations.models import Integration
from organizations.models import Organization

from .choices import KeyKind, KeyState


class ApiKey(models.Model):
    """
    A bearer key `sy_<prefix>_<secret>`. Only a keyed HMAC of the secret is stored; the prefix finds the row.
    Integration keys see their integration's data, org keys their organization's, global keys everything.
    """

    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=KeyKind.choices)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    integration = models.ForeignKey(
        Integration, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="Owner of an org key; its actions are recorded as this user.",
    )
    prefix = models.CharField(max_length=8, unique=True, help_text="Public part shown in the admin.")
    secret_hash = models.CharField(max_length=64, help_text="HMAC-SHA256 of the secret, hex.")
    pepper_id = models.PositiveSmallIntegerField(help_text="Which API_KEY_PEPPERS entry keyed the hash.")
    grants = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_ips = models.JSONField(
        default=list, blank=True, help_text="CIDR ranges the key may be used from; empty: anywhere."
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=200, blank=True)
    revoke_reason = models.CharField(max_length=300, blank=True)
    replaced_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replaces",
        help_text="The key that rotation or regeneration made in this one's place.",
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    expiry_notified_at = models.DateTimeField(null=True, blank=True)
    expiry_recorded_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The secret's hash never reaches the history table; the rest excluded is usage and expiry bookkeeping.
    history = ConfigHistory(
        excluded_fields=[
            "secret_hash",
            "pepper_id",
            "last_used_at",
            "last_used_ip",
            "expiry_notified_at",
            "expiry_recorded_at",
        ]
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                name="apikey_kind_owner_consistent",
                condition=(
                    Q(kind=KeyKind.INTEGRATION, integration__isnull=False, organization__isnull=False)
                    | Q(
                        kind=KeyKind.ORG,
                        integration__isnull=True,
                        organization__isnull=False,
                        user__isnull=False,
                    )
                    | Q(kind=KeyKind.GLOBAL, integration__isnull=True, organization__isnull=True)
                ),
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="apikey_org_recent_idx"),
            models.Index(
                fields=["expires_at"], name="apikey_expires_idx", condition=Q(revoked_at__isnull=True)
            ),
        ]

    def __str__(self):
        return f"{self.name} (sy_{self.prefix}_…)"

    def state(self, now=None) -> KeyState:
        now = now or timezone.now()
        if self.revoked_at:
            return KeyState.REVOKED
        if self.expires_at and self.expires_at <= now:
            return KeyState.EXPIRED
        if self.replaced_by_id:
            return KeyState.ROTATING
        return KeyState.ACTIVE

    @property
    def display(self) -> str:
        return f"sy_{self.prefix}_…"


class IdempotencyRecord(models.Model):
    """A POST's Idempotency-Key claim and, once done, its response to replay (IETF draft semantics)."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and canonical body.")
    status_code = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Empty while in progress."
    )
    # Encrypted: a response may carry a secret shown once (a new webhook subscription's whsec_…), kept here
    # for replay for IDEMPOTENCY_TTL_HOURS.
    response_body = EncryptedJSONField(null=True, blank=True, default=None)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique_key_per_api_key"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expires_idx")]

    def __str__(self):
        return self.key
