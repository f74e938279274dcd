"""
Ids and counts from clients, read strictly (#14, finding 4). `str.isdigit()` and `int()` accept any Unicode
decimal digit ("٣" is 3, "²" passes isdigit() and then fails int()), surrounding spaces and any size; the
database does not: a number past bigint overflowed on SQLite and in PostgreSQL's integer columns. Every id
or count a client sends (path, query, body, admin form) goes through `parse_id` or `parse_count`.
"""

import re

# PostgreSQL's bigint and SQLite's integer: the largest primary key either can hold.
MAX_ID = 2**63 - 1
# ASCII digits in canonical form (no sign, spaces or leading zero), at most as long as MAX_ID.
ID_REGEX = "[1-9][0-9]{0,18}"
_CANONICAL = re.compile("[1-9][0-9]*")


def parse_id(value) -> int | None:
    """The id `value` names (a string of ASCII digits or a JSON integer, 1 ≤ n ≤ 2**63-1), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= MAX_ID else None
    if isinstance(value, str) and len(value) <= len(str(MAX_ID)) and _CANONICAL.fullmatch(value):
        number = int(value)
        return number if number <= MAX_ID else None
    return None


def parse_count(value, maximum: int) -> int | None:
    """A whole number of at least 1 in the same strict form, capped at `maximum` (more is not an error)."""
    if not isinstance(value, str) or not _CANONICAL.fullmatch(value):
        return None
    # Length first: int() refuses strings past 4,300 digits, and a longer number is over the cap anyway.
    return maximum if len(value) > len(str(maximum)) else min(int(value), maximum)


class IdConverter:
    """`<id:pk>` in a URL: an id as parse_id reads it; anything else does not match the route (a 404)."""

    regex = ID_REGEX

    def to_python(self, value):
        number = parse_id(value)
        if number is None:
            raise ValueError(f"Not an id: {value!r}")  # Django's resolver: no match
        return number

    def to_url(self, value):
        return str(value)
