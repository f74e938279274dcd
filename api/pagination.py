"""
Cursor pagination as docs/connectors/contract.md says: {"results": [...], "next": url|null}, ?limit= (default
100, max 500).

A keyset cursor over (ordering field, id). DRF's CursorPagination keeps only the first field in its cursor
and breaks ties with an offset capped at 1000, so a bulk write (thousands of rows sharing one timestamp)
made it serve the same page forever; here the cursor holds both values and the next page starts strictly
after them.
"""

import binascii
import json
from base64 import urlsafe_b64decode, urlsafe_b64encode

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from rest_framework import serializers
from rest_framework.pagination import CursorPagination as DrfCursorPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from core.ids import parse_count, parse_id


class CursorPagination(DrfCursorPagination):
    """Newest first by creation, ties broken by id: a stable order while rows are added."""

    page_size = 100
    max_page_size = 500
    page_size_query_param = "limit"
    cursor_query_param = "cursor"
    ordering = ("-created_at", "-pk")

    @property
    def _field(self):
        return self.ordering[0].lstrip("-")

    @property
    def _descending(self):
        return self.ordering[0].startswith("-")

    def get_page_size(self, request):
        """A whole number from 1 to 500 (docs/connectors/contract.md: "max 500"); anything else is a 400 —
        over 500 too: a silent cap served 500 rows while `next` kept asking for more (issue 17).

        DRF's own falls back to the default for anything it cannot read, so `limit=abc` silently served 100.
        """
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        size = parse_count(raw, self.max_page_size + 1)  # more than the maximum reads as one more
        if size is None or size > self.max_page_size:
            raise serializers.ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return size

    def paginate_queryset(self, queryset, request, view=None):
        self.request, self.base_url = request, request.build_absolute_uri()
        self.page_size = self.get_page_size(request)
        queryset = queryset.order_by(*self.ordering)
        position = self._decode(request, queryset.model)
        if position is not None:
            value, pk = position
            op = "lt" if self._descending else "gt"
            queryset = queryset.filter(
                Q(**{f"{self._field}__{op}": value}) | Q(**{self._field: value, f"pk__{op}": pk})
            )
        rows = list(queryset[: self.page_size + 1])
        self.page, self.has_next = rows[: self.page_size], len(rows) > self.page_size
        return self.page

    def get_next_link(self):
        if not self.has_next:
            return None
        last = self.page[-1]
        value = getattr(last, self._field)
        value = value.isoformat() if hasattr(value, "isoformat") else value
        token = urlsafe_b64encode(json.dumps([value, last.pk]).encode()).decode()
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def _decode(self, request, model):
        raw = request.query_params.get(self.cursor_query_param)
        if raw is None:
            return None
        try:
            value, pk = json.loads(urlsafe_b64decode(raw.encode()))
            value = model._meta.get_field(self._field).to_python(value)
            pk = parse_id(pk) if isinstance(pk, int) else None  # past bigint: an overflow on SQLite
            if value is None or pk is None:
                raise ValueError
        except (ValueError, TypeError, UnicodeError, binascii.Error, DjangoValidationError):
            raise serializers.ValidationError({"cursor": ["Invalid cursor."]}) from None
        return value, pk

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {"results": schema, "next": {"type": "string", "format": "uri", "nullable": True}},
        }


class RecentlyUpdatedPagination(CursorPagination):
    """Newest change first (lists whose rows change in place, like stock levels)."""

    ordering = ("-updated_at", "-pk")


class BySkuPagination(CursorPagination):
    """Alphabetical by SKU."""

    ordering = ("sku", "pk")
