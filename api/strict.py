"""
Strict by default (issue 17, item 3): the API refuses what it does not name, as a 400 `validation_error`
whose details name each offending field the way any other field error is named, before anything is written.

* `StrictInput`, the base of every request serializer: a body field the serializer does not declare — at the
  top or in a nested object (`lines.0.colour`) — is refused, and so is one it declares read-only.
* `no_body`: an unsafe operation that reads no body declares so once; the schema says it takes none
  (request=None) and `check_no_body` refuses any field sent to it.
* `check_query`: a list endpoint refuses a query parameter its filters, pagination and negotiation do not read.
* `repeated`: a batch naming one key twice (a SKU in a stock push or a bulk upsert) is refused, naming the rows.
"""

from collections.abc import Callable, Iterable, Mapping

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.settings import api_settings

UNKNOWN = "Unknown field."
READ_ONLY = "Read-only: it cannot be set."
UNKNOWN_PARAMETER = "Unknown query parameter."


class StrictInput(serializers.Serializer):
    # A request body's serializer: fields it does not declare writable are refused, each named. (A comment,
    # not a docstring: the schema would show a docstring as the description of every body without its own.)

    def unknown_fields(self, data) -> dict[str, list[str]]:
        if not isinstance(data, Mapping):
            return {}
        fields = self.fields
        writable = [name for name, field in fields.items() if not field.read_only]
        unknown = f"{UNKNOWN[:-1]} (allowed: {', '.join(writable) or 'none'})."
        return {
            str(name): [READ_ONLY if name in fields else unknown]
            for name in data
            if name not in fields or fields[name].read_only
        }

    def to_internal_value(self, data):
        unknown = self.unknown_fields(data)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as refused:
            if not unknown:
                raise
            detail = refused.detail
            if not isinstance(detail, Mapping):
                detail = {api_settings.NON_FIELD_ERRORS_KEY: detail}
            raise serializers.ValidationError({**detail, **unknown}) from None
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class StrictModelInput(StrictInput, serializers.ModelSerializer):
    # A ModelSerializer that also reads request bodies (a comment, as StrictInput's).
    pass


def no_body(**schema):
    """An unsafe operation that reads no body: `extend_schema(request=None, **schema)`, and enforced."""

    def decorate(function):
        function = extend_schema(request=None, **schema)(function)
        function.reads_no_body = True
        return function

    return decorate


def check_no_body(handler, request) -> None:
    """A body sent (with POST, PUT or PATCH) to an operation declared `no_body` is refused, naming each field."""
    if not getattr(handler, "reads_no_body", False) or request.stream is None:
        return
    data = request.data
    if isinstance(data, Mapping):
        if data:
            raise serializers.ValidationError({str(name): [UNKNOWN] for name in data})
    elif data not in (None, ""):
        raise serializers.ValidationError("This operation takes no body.")


def check_query(query_params, allowed: Iterable[str]) -> None:
    """Each query parameter not in `allowed` is refused, named."""
    unknown = sorted(set(query_params) - set(allowed))
    if unknown:
        raise serializers.ValidationError({name: [UNKNOWN_PARAMETER] for name in unknown})


def repeated(rows: list, key: Callable, field: str, name: str, message: str) -> None:
    """
    Refuses a batch in which two rows have the same `key(row)`: details name every row of each such key
    (`items.0.sku`, `items.3.sku`) with `message`, which may use {value} and {rows} (the row numbers).
    """
    at: dict = {}
    for index, row in enumerate(rows):
        at.setdefault(key(row), []).append(index)
    details: dict[str, list[str]] = {}
    for value, indexes in at.items():
        if len(indexes) > 1:
            rows_text = ", ".join(str(i) for i in indexes)
            for index in indexes:
                details[f"{field}.{index}.{name}"] = [message.format(value=value, rows=rows_text)]
    if details:
        raise serializers.ValidationError(details)
