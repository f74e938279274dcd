"""Counting and reading configuration history rows."""

from django.apps import apps


def history_models():
    return [m for m in apps.get_models() if hasattr(m, "_config_history")]


def history_rows() -> dict[str, int]:
    """Historical rows per configuration model."""
    return {m._meta.label: m.history.count() for m in history_models()}


def rows_of(obj):
    """The object's historical rows, newest first."""
    return list(obj.history.order_by("-history_date", "-history_id"))
