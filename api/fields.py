"""Serializer fields for ids and whole numbers in request bodies, read strictly (core/ids.py)."""

from rest_framework import serializers

from api.filters import ZONE_REQUIRED, zoneless
from core.ids import parse_id


class IdField(serializers.CharField):
    """
    An object's id in a body: a string to clients (docs/connectors/contract.md: ids are opaque), read by
    `parse_id`, so "٣", " 1" or a number past bigint is a 400 naming the field. A JSON integer is read too, as
    CharField would.
    """

    default_error_messages = {"invalid_id": "Not a valid id."}

    def to_internal_value(self, data):
        number = parse_id(data)
        if number is None:
            self.fail("invalid_id")
        return number

    def to_representation(self, value):
        return str(value)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time in a body, with its zone: a time without one (`2026-01-01T10:00:00`) is a 400."""

    default_error_messages = {"zoneless": ZONE_REQUIRED}

    def to_internal_value(self, value):
        if isinstance(value, str) and zoneless(value):
            self.fail("zoneless")
        return super().to_internal_value(value)


class StrictIntegerField(serializers.IntegerField):
    """
    A JSON integer. DRF's IntegerField also takes strings through int(), which reads any Unicode digit ("٣"
    is 3) and surrounding spaces, and "5.0" or 5.0: a count is a JSON number (docs/connectors/contract.md).
    """

    default_error_messages = {"invalid": "Must be a whole number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)
