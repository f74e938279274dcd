from django.db import models
from django.utils.translation import gettext_lazy as _


class LocationKind(models.TextChoices):
    WAREHOUSE = "warehouse", _("Warehouse")
    THREE_PL = "3pl", _("3PL")
    STORE = "store", _("Store")
