"""
Explicit calls upward, after the commit.

A lower app that did something a higher app must react to (an order arrived, an order became ready, stock
changed, an integration changed status) calls `fire(TRIGGER, **facts)`; the app that reacts registers the one
handler of that trigger in its AppConfig.ready(). Unlike Django signals, every trigger is listed here with the
facts it carries, has exactly one handler, runs only once the transaction commits (never for a change that was
rolled back), and a trigger nobody handles is an error rather than silence. `docs/architecture.md` lists who
fires and who handles each.
"""

from collections.abc import Callable
from functools import partial

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

ORDER_RECEIVED = "order_received"
ORDER_READY = "order_ready"
AVAILABILITY_CHANGED = "availability_changed"
INTEGRATION_STATUS_CHANGED = "integration_status_changed"

# trigger -> the facts its handler is called with (keyword arguments)
TRIGGERS: dict[str, tuple[str, ...]] = {
    ORDER_RECEIVED: ("organization_id", "order_id", "created"),
    ORDER_READY: ("organization_id", "order_id"),
    AVAILABILITY_CHANGED: ("organization_id",),
    INTEGRATION_STATUS_CHANGED: ("organization_id", "integration_id", "previous", "status"),
}

_handlers: dict[str, Callable[..., None]] = {}


def register(trigger: str, handler: Callable[..., None]) -> None:
    """Make `handler` the one reaction to `trigger` (called from an AppConfig.ready())."""
    if trigger not in TRIGGERS:
        raise ImproperlyConfigured(
            f"Unknown trigger {trigger!r}; the triggers are listed in core/triggers.py."
        )
    current = _handlers.get(trigger)
    if current is not None and current is not handler:
        raise ImproperlyConfigured(
            f"Trigger {trigger!r} already has a handler: {current.__module__}.{current.__name__}."
        )
    _handlers[trigger] = handler


def handler_of(trigger: str) -> Callable[..., None]:
    try:
        return _handlers[trigger]
    except KeyError:
        raise ImproperlyConfigured(
            f"Nothing handles the trigger {trigger!r}: is its app installed?"
        ) from None


def fire(trigger: str, **facts) -> None:
    """Call the trigger's handler with `facts` once the current transaction commits (at once outside one)."""
    expected = TRIGGERS.get(trigger)
    if expected is None or set(facts) != set(expected):
        raise TypeError(f"Trigger {trigger!r} carries {expected}, not {tuple(sorted(facts))}.")
    transaction.on_commit(partial(handler_of(trigger), **facts))
