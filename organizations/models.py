from django.conf import settings
from django.db import models

from .choices import Role
from .scoping import restricted


class Organization(models.Model):
    """A seller: the tenant that owns integrations, catalog, stock and orders."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(
        max_length=60, unique=True, help_text="Short identifier used in URLs and commands."
    )
    notification_email = models.EmailField(
        blank=True, help_text="Where exceptions are sent when an integration has no address of its own."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = restricted(organization="", members_see_all=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "organization"

    def __str__(self):
        return self.name


class Membership(models.Model):
    """A user's place in an organization: org admin (everything in the org) or member (what is granted)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    existing_account = models.BooleanField(
        default=False,
        db_default=False,  # rows written by code that predates the field (a rolling deploy) get it too
        editable=False,
        help_text="The account existed before it joined (added by its address): this organization's admins "
        "may not manage it (password, name, status).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = restricted()

    class Meta:
        ordering = ["organization", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique_user_org"),
        ]

    def __str__(self):
        return f"{self.user} in {self.organization} ({self.get_role_display()})"
