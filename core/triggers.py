"""
Explicit calls upward: what a lower app tells (after the commit) or asks (at once) the app above it.

A lower app that did something a higher app must react to (an order arrived, an order became ready, stock
changed, an integration changed status) calls `fire(TRIGGER, **facts)`; the app that reacts registers the one
handler of that trigger in its AppConfig.ready(). Unlike Django signals, every trigger is listed here with the
facts it carries, has exactly one handler, runs only once the transaction commits (never for a change that was
rolled back, and once per commit however often the same facts were fired in it), and a trigger nobody handles
is an error rather than silence.

A question is the same, answered at once: a lower app that needs a higher app's decision inside its own
transaction (is the hold engine on here, to apply the rules to a new order?) calls `ask(QUESTION, **facts)`; the app
above registers the one answer with `register_answer`. `docs/architecture.md` lists who fires, who asks, and
who handles each.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from core.transactions import on_commit_once

ORDER_RECEIVED = "order_received"
ORDER_READY = "order_ready"
AVAILABILITY_CHANGED = "availability_changed"
INTEGRATION_STATUS_CHANGED = "integration_status_changed"

# trigger -> the facts its handler is called with (keyword arguments)
TRIGGERS: dict[str, tuple[str, ...]] = {
    # A channel created or updated an order (orders.ingest).
    ORDER_RECEIVED: ("organization_id", "order_id", "created"),
    # An order became ready to route outside the hold engine's own task (a hold released, a mapping fixed).
    ORDER_READY: ("organization_id", "order_id"),
    # Stock, commitments, buffers or channel links moved; the AvailabilityChange rows say what.
    AVAILABILITY_CHANGED: ("organization_id",),
    # An integration's status changed (values of IntegrationStatus).
    INTEGRATION_STATUS_CHANGED: ("organization_id", "integration_id", "previous", "status"),
}

# Is this engine ("hold", "routing", "inventory", "exceptions") on for the organization? Ingest asks for the
# hold engine (off: a new order is ready at once), the manifest inventory push for the inventory engine.
ENGINE_ON = "engine_on"

# question -> the facts its answer is called with
QUESTIONS: dict[str, tuple[str, ...]] = {
    ENGINE_ON: ("organization_id", "engine"),
}

_handlers: dict[str, Callable[..., object]] = {}


def _register(kind: str, known: dict, name: str, handler: Callable[..., object]) -> None:
    if name not in known:
        raise ImproperlyConfigured(f"Unknown {kind} {name!r}; they are listed in core/triggers.py.")
    current = _handlers.get(name)
    if current is not None and current is not handler:
        raise ImproperlyConfigured(
            f"The {kind} {name!r} already has a handler: {current.__module__}.{current.__name__}."
        )
    _handlers[name] = handler


def register(trigger: str, handler: Callable[..., None]) -> None:
    """Make `handler` the one reaction to `trigger` (called from an AppConfig.ready())."""
    _register("trigger", TRIGGERS, trigger, handler)


def register_answer(question: str, answer: Callable[..., object]) -> None:
    """Make `answer` the one that answers `question` (called from an AppConfig.ready())."""
    _register("question", QUESTIONS, question, answer)


def handler_of(name: str) -> Callable[..., object]:
    handler = _handlers.get(name)
    if handler is None:
        raise ImproperlyConfigured(f"Nothing handles {name!r}: is its app installed?")
    return handler


def _check(kind: str, known: dict, name: str, facts: dict) -> None:
    expected = known.get(name)
    if expected is None or set(facts) != set(expected):
        raise TypeError(f"The {kind} {name!r} carries {expected}, not {tuple(sorted(facts))}.")


@dataclass(frozen=True)
class Firing:
    """A fired trigger waiting for the commit; equal firings (same trigger and facts) run once per commit."""

    trigger: str
    facts: tuple[tuple[str, object], ...]

    def __call__(self) -> None:
        handler_of(self.trigger)(**dict(self.facts))


def fire(trigger: str, **facts) -> None:
    """Call the trigger's handler with `facts` once the current transaction commits (at once outside one)."""
    _check("trigger", TRIGGERS, trigger, facts)
    handler_of(trigger)  # a trigger nobody handles fails here, in the code that fired it
    on_commit_once(Firing(trigger, tuple(sorted(facts.items()))))


def ask(question: str, **facts):
    """The answer of the app above, at once (inside the caller's transaction)."""
    _check("question", QUESTIONS, question, facts)
    return handler_of(question)(**facts)


@contextmanager
def handled_by(name: str, handler: Callable[..., object] | None) -> Iterator[None]:
    """Tests and benches: `handler` (None: nothing) handles or answers `name` in the block, then the usual one."""
    previous = _handlers.get(name)
    _handlers[name] = handler
    try:
        yield
    finally:
        if previous is None:
            _handlers.pop(name, None)
        else:
            _handlers[name] = previous
