from django.db import models

from integrations.models import Integration
from organizations.models import Organization

from .choices import ExceptionKind, ExceptionStatus


class SyncException(models.Model):
    """Something that could not flow and needs a person: deduplicated per (integration, kind, entity)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sync_exceptions")
    integration = models.ForeignKey(
        Integration, null=True, blank=True, on_delete=models.CASCADE, related_name="sync_exceptions"
    )
    kind = models.CharField(max_length=40, choices=ExceptionKind.choices)
    entity_type = models.CharField(max_length=40, blank=True, help_text="e.g. order, product, delivery.")
    entity_id = models.CharField(max_length=100, blank=True)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=ExceptionStatus.choices, default=ExceptionStatus.OPEN)
    occurrences = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-last_seen", "-pk"]
        verbose_name = "exception"
        constraints = [
            # One open exception per cause; a resolved one may come back as a new row.
            models.UniqueConstraint(
                fields=["organization", "integration", "kind", "entity_type", "entity_id"],
                condition=models.Q(status="open"),
                nulls_distinct=False,
                name="syncexception_one_open_per_cause",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "status", "-last_seen"], name="syncexc_org_status_idx"),
            models.Index(fields=["integration", "status", "-last_seen"], name="syncexc_integration_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.message[:60]}"
