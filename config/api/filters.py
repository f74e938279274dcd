import django_filters


class UpdatedSinceFilterSet(django_filters.FilterSet):
    """Every list accepts ?updated_since=<ISO 8601 time> (API.md, Conventions)."""

    updated_since = django_filters.IsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte", help_text="Only objects changed at or after this time."
    )
