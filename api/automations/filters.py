"""Query filters of the exceptions endpoint; every list also takes ?updated_since=
(docs/connectors/contract.md, "Conventions")."""

import django_filters

from api.filters import UpdatedSinceFilterSet
from automations.choices import ExceptionStatus
from automations.models import SyncException
from core.sync_exceptions import ExceptionKind


class SyncExceptionFilter(UpdatedSinceFilterSet):
    status = django_filters.ChoiceFilter(choices=ExceptionStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ExceptionKind.choices)

    class Meta:
        model = SyncException
        fields = ["status", "kind"]
