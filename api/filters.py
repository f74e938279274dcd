from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime
from django_filters.fields import IsoDateTimeField
from django_filters.widgets import BooleanWidget

from core.ids import parse_id

ZONE_REQUIRED = "A time zone is required (Z or an offset such as +02:00), e.g. 2026-01-01T00:00:00Z."


def zoneless(value: str) -> bool:
    """An ISO 8601 time (or date) without a zone: which instant it names depends on where it is read."""
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        return False  # out of range: refused as invalid by the field
    return parsed is not None and parsed.tzinfo is None


class UtcIsoDateTimeField(IsoDateTimeField):
    """
    An ISO 8601 time, compared in UTC. PostgreSQL refuses a zone offset beyond ±15:59 (Python allows up to
    24 h), and such a time sent as is made the query fail with a 500; converted, it is an ordinary instant.
    """

    def to_python(self, value):
        if isinstance(value, str) and zoneless(value):
            raise ValidationError(ZONE_REQUIRED, code="invalid")
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00-01:00: before the first representable instant
            raise ValidationError("Out of the supported range of times.", code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class StrictBooleanWidget(BooleanWidget):
    """true/false/1/0 as BooleanWidget reads them; anything else is passed on for the field to refuse."""

    def value_from_datadict(self, data, files, name):
        value = super().value_from_datadict(data, files, name)
        raw = data.get(name)
        return raw if value is None and raw not in (None, "") else value


class StrictBooleanField(forms.NullBooleanField):
    def to_python(self, value):
        if isinstance(value, str):
            raise ValidationError("Must be true or false.", code="invalid")
        return super().to_python(value)


class StrictBooleanFilter(django_filters.BooleanFilter):
    """
    ?active=true|false (or 1|0). django-filter's own ignores a value it cannot read (?active=yes filtered
    nothing); a bad query is a 400 (docs/connectors/contract.md).
    """

    field_class = StrictBooleanField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", StrictBooleanWidget)
        super().__init__(*args, **kwargs)


class IdFormField(forms.Field):
    """An id as `parse_id` reads it; not stripped (forms.CharField would let " 1" through as 1)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        number = parse_id(value)
        if number is None:
            raise ValidationError("Not a valid id.", code="invalid")
        return number


class IdFilter(django_filters.CharFilter):
    """
    ?location=<id>: a malformed id is a 400 naming the parameter, not a 500 or an empty list. A CharFilter to
    the schema: ids are opaque strings to clients (docs/connectors/contract.md).
    """

    field_class = IdFormField


class UpdatedSinceFilterSet(django_filters.FilterSet):
    """Every list accepts ?updated_since=<ISO 8601 time> (docs/connectors/contract.md, "Conventions")."""

    updated_since = UtcIsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte", help_text="Only objects changed at or after this time."
    )
