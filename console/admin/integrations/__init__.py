"""The integrations admin, one module per model: connectors, integrations (with the add wizard, export and
import, and member access), webhook subscriptions and deliveries, and the audit trail."""

from . import connectors, deliveries, events, integrations, subscriptions  # noqa: F401 - registers them
