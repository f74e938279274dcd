"""Change history of configuration (settings, mappings, rules, keys): who changed what, when.

Every configuration model registers `history = ConfigHistory(excluded_fields=[...])`. The excluded fields are
secrets (never copied into a historical table) and operational state the hot paths write all day (status,
cursors, counters, last-used stamps): history is about people changing configuration, not the hub running.
"""

import contextvars
import os
import sys
from contextlib import contextmanager, nullcontext

from simple_history.models import HistoricalRecords
from simple_history.utils import bulk_create_with_history

# Who is acting, as a service that was told its actor says (the key that subscribed, the user who rotated a
# key): it wins over the ambient request and command line. (user or None, change reason or None).
_actor: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("history_actor", default=None)


@contextmanager
def history_actor(*, user=None, reason: str | None = None):
    """Attribute the configuration changes made inside the block to `user` and/or `reason`."""
    token = _actor.set((user, reason[:100] if reason else reason))
    try:
        yield
    finally:
        _actor.reset(token)


def describe_actor(label: str) -> str:
    """The services' actor labels ("key:<prefix>", "user:<name>", "system") as a change reason."""
    if label.startswith("key:"):
        return f"API key sy_{label[4:]}_…"
    return label


def actor_context(actor):
    """history_actor() for a services-style `actor` (a user, a label string, or None: whoever is ambient)."""
    if actor is None:
        return nullcontext()
    if isinstance(actor, str):
        return history_actor(reason=describe_actor(actor))
    return history_actor(user=actor)


def record_change(instance, *, actor=None):
    """Write the history row of a change made with queryset.update() (which sends no signal): `instance`
    must hold the stored values (refresh_from_db). No row when no tracked field changed."""
    records = type(instance)._config_history
    with actor_context(actor):
        if records.tracked_change(instance):
            records.create_historical_record(instance, "~")


def bulk_create(model, rows: list) -> list:
    """model.objects.bulk_create(rows) with their history rows (bulk_create sends no post_save), attributed
    like a save would be."""
    if not rows:
        return []
    records = model._config_history
    return bulk_create_with_history(
        rows,
        model,
        default_user=records.get_history_user(rows[0]),
        default_change_reason=records.get_change_reason_for_object(rows[0], "+", None),
    )


def _request():
    # HistoryRequestMiddleware keeps the current request here; DRF sets `.user` and `.auth` (the ApiKey)
    # on this underlying Django request once it has authenticated a key.
    return getattr(HistoricalRecords.context, "request", None)


def _command_reason() -> str | None:
    # Management commands have no request to name the actor: the command line does. runserver serves
    # requests, which name their own.
    argv = sys.argv
    if len(argv) > 1 and os.path.basename(argv[0]) == "manage.py" and argv[1] != "runserver":
        return f"manage.py {argv[1]}"
    return None


class ConfigHistory(HistoricalRecords):
    """HistoricalRecords that records configuration changes only.

    simple-history writes a historical row on every post_save. The hot paths (order ingest, routing,
    deliveries, manifest polls, key last-used stamps, status transitions) save these same models with
    update_fields naming only excluded fields, and that would add a row per order or per request, each a
    copy of an unchanged configuration. So a save writes no row when its update_fields are all untracked,
    nor when the save changed no tracked field since the last row (one indexed read, paid only by saves
    that may touch tracked fields: configuration edits, as the hot paths use update_fields or update()).
    """

    def __init__(self, *, excluded_fields, **kwargs):
        super().__init__(excluded_fields=list(excluded_fields), **kwargs)

    def contribute_to_class(self, cls, name):
        super().contribute_to_class(cls, name)
        cls._config_history = self  # for record_change()

    def post_save(self, instance, created, using=None, **kwargs):
        if created or kwargs.get("raw", False):
            return super().post_save(instance, created, using=using, **kwargs)
        if self.tracked_change(instance, kwargs.get("update_fields")):
            super().post_save(instance, created, using=using, **kwargs)

    def tracked_change(self, instance, update_fields=None) -> bool:
        """Whether saving `instance` (with `update_fields`) changed a tracked field since the last row."""
        tracked = self.fields_included(instance)
        if update_fields is not None:
            names = {f.name for f in tracked} | {f.attname for f in tracked}
            if not names.intersection(update_fields):
                return False
        last = getattr(instance, self.manager_name).order_by("-history_date", "-history_id").first()
        if last is None:
            return True
        return any(getattr(last, f.attname) != getattr(instance, f.attname) for f in tracked)

    def get_history_user(self, instance):
        if hasattr(instance, "_history_user"):
            return instance._history_user
        actor = _actor.get()
        if actor is not None and actor[0] is not None:
            return actor[0]
        return super().get_history_user(instance)

    def get_change_reason_for_object(self, instance, history_type, using):
        reason = super().get_change_reason_for_object(instance, history_type, using)
        if reason:
            return reason
        actor = _actor.get()
        if actor is not None and actor[1]:
            return actor[1]
        request = _request()
        if request is not None:
            # A key's request: name the key (an org key's owner is the history_user as well).
            prefix = getattr(getattr(request, "auth", None), "prefix", None)
            return f"API key sy_{prefix}_…" if prefix else None
        return _command_reason()
