"""
What the API machinery keeps for itself: the Idempotency-Key claims and their responses to replay
(api/idempotency.py). The table keeps the name it had when the model lived in tokens: the move changed only
which app owns it (api/migrations/0001, tokens/migrations/0006), no row moved.
"""

from django.db import models
from django.utils import timezone

from core.fields import EncryptedJSONField
from tokens.models import ApiKey


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
        db_table = "tokens_idempotencyrecord"
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique_key_per_api_key"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expires_idx")]

    def __str__(self):
        return self.key
