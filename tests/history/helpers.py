"""Counting and reading configuration history rows."""

from django.apps import apps


def history_models():
    found = [m for m in apps.get_models() if hasattr(m, "_config_history")]
    assert found, "no configuration model registers history: the checks below would pass on nothing"
    return found


def history_rows() -> dict[str, int]:
    """Historical rows per configuration model."""
    return {m._meta.label: m.history.count() for m in history_models()}


def rows_of(obj):
    """The object's historical rows, newest first."""
    return list(obj.history.order_by("-history_date", "-history_id"))
