"""Change history of configuration (settings, mappings, rules, keys): who changed what, when.

Every configuration model registers `history = ConfigHistory(excluded_fields=[...])`. The excluded fields are
secrets (never copied into a historical table) and operational state the hot paths write all day (status,
cursors, counters, last-used stamps): history is about people changing configuration, not the hub running.
"""

import contextvars
from contextlib import contextmanager

from simple_history.models import HistoricalRecords

# Who is acting when there is no admin request to read the user from (HistoryRequestMiddleware covers that):
# an API call with a key, a management command. (user or None, change reason or None).
_actor: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("history_actor", default=None)


@contextmanager
def history_actor(*, user=None, reason: str | None = None):
    """Attribute the configuration changes made inside the block to `user` and/or `reason`."""
    token = _actor.set((user, reason[:100] if reason else reason))
    try:
        yield
    finally:
        _actor.reset(token)


def set_history_actor(*, user=None, reason: str | None = None):
    """For callers that cannot wrap a block (a request handled in steps): returns the token to reset."""
    return _actor.set((user, reason[:100] if reason else reason))


def reset_history_actor(token):
    _actor.reset(token)


def current_actor() -> tuple | None:
    return _actor.get()


class ConfigHistory(HistoricalRecords):
    """HistoricalRecords that records configuration changes only.

    simple-history writes a historical row on every post_save. The hot paths (order ingest, routing,
    deliveries, manifest polls, key last-used stamps, status transitions) save these same models with
    update_fields naming only excluded fields, and that would add a row per order or per request, each a
    copy of an unchanged configuration. So a save writes no row when its update_fields are all untracked,
    nor when a full save changed no tracked field since the last row (one indexed read, paid on full saves
    only, which are configuration edits: the hot paths use update_fields or queryset.update()).
    """

    def __init__(self, *, excluded_fields, **kwargs):
        super().__init__(excluded_fields=list(excluded_fields), **kwargs)

    def _tracked_attnames(self, instance) -> set[str]:
        return {f.attname for f in self.fields_included(instance)}

    def post_save(self, instance, created, using=None, **kwargs):
        if not created and not kwargs.get("raw", False) and not self._changes_tracked(instance, kwargs):
            return
        super().post_save(instance, created, using=using, **kwargs)

    def _changes_tracked(self, instance, kwargs) -> bool:
        tracked = self.fields_included(instance)
        update_fields = kwargs.get("update_fields")
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
        return actor[1] if actor is not None else None
