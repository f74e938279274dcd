"""
Exceptions — the business records a person sees and fixes (an unmapped SKU, a dead webhook receiver, an
integration in Error) — are raised and resolved through this module by every app, the same way.

The records and their rules belong to the exceptions engine (automations/exceptions.py keeps them); it registers
itself here when Django starts. This module sits in core so that every layer may call it, including the
integrations app below the engine, without importing the layer above.
"""

from typing import Protocol

from django.core.exceptions import ImproperlyConfigured


class ExceptionKeeper(Protocol):
    def raise_exception(
        self, organization, kind, message, *, integration=None, entity_type="", entity_id="", data=None
    ): ...

    def resolve(self, organization, kind, *, integration=None, entity_type="", entity_id="") -> int: ...


_keeper: ExceptionKeeper | None = None


def register(keeper: ExceptionKeeper) -> None:
    global _keeper
    _keeper = keeper


def _the_keeper() -> ExceptionKeeper:
    if _keeper is None:
        raise ImproperlyConfigured("No exception keeper is registered: is the automations app installed?")
    return _keeper


def raise_exception(
    organization, kind, message, *, integration=None, entity_type="", entity_id="", data=None
):
    """Open an exception, or count another occurrence of the open one with the same cause; returns the record."""
    return _the_keeper().raise_exception(
        organization,
        kind,
        message,
        integration=integration,
        entity_type=entity_type,
        entity_id=entity_id,
        data=data,
    )


def resolve_exception(organization, kind, *, integration=None, entity_type="", entity_id="") -> int:
    """Resolve the open exception of a cause that cleared; returns how many were resolved."""
    return _the_keeper().resolve(
        organization, kind, integration=integration, entity_type=entity_type, entity_id=entity_id
    )
