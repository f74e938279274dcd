"""Helpers of the catalog and stock API tests."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.models import Integration

ALL_GRANTS = [
    "products:read",
    "products:write",
    "locations:read",
    "locations:write",
    "inventory:read",
    "inventory:write",
]


def switch(integration, flow, on):
    Integration.objects.filter(pk=integration.pk).update(**{f"flow_{flow}": on})


def all_pages(client, url, max_pages=20) -> list[dict]:
    rows = []
    for _ in range(max_pages):
        if not url:
            break
        response = client.get(url)
        assert response.status_code == 200, response.content
        rows += response.json()["results"]
        url = response.json()["next"]
    assert not url, "still paging"
    return rows


def query_count(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(queries)
