"""Query filters of the exceptions endpoint; every list also takes ?updated_since= (API.md, Conventions)."""

import django_filters

from api.filters import UpdatedSinceFilterSet
from automations.choices import ExceptionKind, ExceptionStatus
from automations.models import SyncException


class SyncExceptionFilter(UpdatedSinceFilterSet):
    status = django_filters.ChoiceFilter(choices=ExceptionStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ExceptionKind.choices)

    class Meta:
        model = SyncException
        fields = ["status", "kind"]
