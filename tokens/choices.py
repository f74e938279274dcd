from django.db import models
from django.utils.translation import gettext_lazy as _


class KeyKind(models.TextChoices):
    INTEGRATION = "integration", _("Integration key")
    ORG = "org", _("Organization key")
    GLOBAL = "global", _("Global key")


class Expiration(models.TextChoices):
    NEVER = "never", _("Never")
    DAYS_30 = "30", _("30 days")
    DAYS_90 = "90", _("90 days")
    DAYS_365 = "365", _("365 days")
    DATE = "date", _("On a date")


class KeyState(models.TextChoices):
    ACTIVE = "active", _("Active")
    ROTATING = "rotating", _("Rotating out")
    EXPIRED = "expired", _("Expired")
    REVOKED = "revoked", _("Revoked")


BADGE = {
    KeyState.ACTIVE: "green",
    KeyState.ROTATING: "amber",
    KeyState.EXPIRED: "grey",
    KeyState.REVOKED: "red",
}
