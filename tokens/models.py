"""The API key: what a key is, and what it belongs to. (Idempotency-Key records are the api app's.)"""

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.history import ConfigHistory
from integrations.models import Integration
from organizations.models import Organization
from organizations.scoping import restricted

from .choices import KeyKind, KeyState


@dataclass(frozen=True)
class KeyScope:
    """
    What a key belongs to, and so what it reaches: an integration key its integration's rows in its
    organization, an org key its whole organization, a global key (no organization) every organization.
    """

    organization: Organization | None = None
    integration: Integration | None = None

    @property
    def is_global(self) -> bool:
        return self.organization is None

    def __str__(self) -> str:
        """Whose key it is, in a sentence: the integration's name, the organization's, or the platform."""
        if self.integration is not None:
            return self.integration.name
        return str(self.organization) if self.organization is not None else "the platform"


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

    objects = restricted(
        member_access="integration", member_view=("manage_keys",), member_change="manage_keys"
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

    @property
    def scope(self) -> KeyScope:
        """What the key belongs to (see KeyScope); reads no relation that the key's kind does not have."""
        return KeyScope(
            organization=self.organization if self.organization_id is not None else None,
            integration=self.integration if self.integration_id is not None else None,
        )

    @property
    def notify_address(self) -> str:
        """Where news of the key goes (its expiry): its integration's address, else its owner's, else its
        organization's; empty when there is none."""
        if self.integration_id is not None:
            return self.integration.notify_address
        return (self.user.email if self.user_id is not None else "") or (
            self.organization.notification_email if self.organization_id is not None else ""
        )
