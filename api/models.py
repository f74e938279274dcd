"""
What the API machinery keeps for itself: the Idempotency-Key claims and their responses to replay
(api/idempotency.py). The table keeps the name it had when the model lived in tokens: the move changed only
which app owns it (api/migrations/0001, tokens/migrations/0006), no row moved.
"""

from django.db import models
from django.utils import timezone

from core.fields import EncryptedJSONField
from tokens.models import ApiKey


def key_owner(api_key: ApiKey) -> str:
    """What an API key acts for, as idempotency records are kept: its integration, its organization, or all."""
    if api_key.integration_id is not None:
        return f"integration:{api_key.integration_id}"
    if api_key.organization_id is not None:
        return f"organization:{api_key.organization_id}"
    return "global"


class IdempotencyRecord(models.Model):
    """
    A POST's Idempotency-Key claim and, once done, its response to replay (IETF draft semantics). Keys are
    the owner's (an integration, an organization's own keys, the platform's), not one API key's: a retry
    sent with the key that replaced a rotated one replays the first answer instead of acting twice.
    """

    api_key = models.ForeignKey(
        ApiKey, on_delete=models.CASCADE, related_name="+", help_text="The API key that sent it first."
    )
    owner = models.CharField(max_length=40, help_text="What the key acts for: integration:<id>, …")
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
        db_table = "tokens_idempotencyrecord"
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotency_unique_key_per_owner"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expires_idx")]

    def __str__(self):
        return self.key

    def save(self, *args, **kwargs):
        if not self.owner:
            self.owner = key_owner(self.api_key)
        super().save(*args, **kwargs)
