"""
Event `sequence` numbers (issue 16, docs/connectors/contract.md, "Webhook deliveries"): one counter per
integration and object, taken in the transaction that records the event. The upsert locks the counter's row
until that transaction ends, so a second writer of the same object waits and numbers after it: the numbers
follow commit order, and they outlive any subscription (a resubscription continues them).
"""

from collections import Counter

from django.db import connection

from ..models import WebhookSequence

Key = tuple[int, str, str]  # (integration id, object type, object id)

_CHUNK = 2000  # counters per statement (four parameters each: well under SQLite's and PostgreSQL's limits)


def take(keys: list[Key]) -> dict[Key, list[int]]:
    """
    The next numbers for each key, as many as it appears in `keys`, ascending. Counters are upserted in one
    statement per chunk, in sorted key order, so two writers never take two counters in opposite orders.
    """
    counts = Counter(keys)
    ordered = sorted(counts)
    table = connection.ops.quote_name(WebhookSequence._meta.db_table)
    taken: dict[Key, list[int]] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            values = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            params = [p for key in chunk for p in (*key, counts[key])]
            # PostgreSQL and SQLite (3.35+) both read this upsert.
            cursor.execute(
                f"INSERT INTO {table} (integration_id, object_type, object_id, last) VALUES {values} "  # noqa: S608 - quoted names, values are parameters
                "ON CONFLICT (integration_id, object_type, object_id) "
                f"DO UPDATE SET last = {table}.last + excluded.last "
                "RETURNING integration_id, object_type, object_id, last",
                params,
            )
            for integration_id, object_type, object_id, last in cursor.fetchall():
                key = (integration_id, object_type, object_id)
                n = counts[key]
                taken[key] = list(range(last - n + 1, last + 1))
    return taken
