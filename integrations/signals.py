"""
Signals the outbound side sends for the layers above it (STYLE.md §3: integrations sits below automations,
so it announces; the exceptions engine listens and raises or resolves SyncExceptions).
"""

from django.dispatch import Signal

# A delivery ran out of retries. Arguments: delivery.
delivery_dead = Signal()
# A delivery to a subscription that had one dead now succeeded. Arguments: delivery.
delivery_recovered = Signal()
# Consecutive outbound failures moved an integration to `error`. Arguments: integration, reason.
integration_failing = Signal()
# An outbound success brought an integration back to `connected`. Arguments: integration.
integration_recovered = Signal()
# An integration's status changed (sent after the commit). Arguments: organization_id, integration_id,
# previous, status (the values of IntegrationStatus).
status_changed = Signal()
