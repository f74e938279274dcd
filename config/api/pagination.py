"""Cursor pagination as API.md says: {"results": [...], "next": url|null}, ?limit= (default 100, max 500)."""

from rest_framework.pagination import CursorPagination as DrfCursorPagination
from rest_framework.response import Response


class CursorPagination(DrfCursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "limit"
    cursor_query_param = "cursor"
    # Newest first, ties broken by id so the order is stable while rows are added.
    ordering = ("-created_at", "-pk")

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {"results": schema, "next": {"type": "string", "format": "uri", "nullable": True}},
        }
