"""
What the order flow announces to the engines above it (STYLE.md §3: orders sits below automations). Sent
after the commit, so a receiver that enqueues a task never sees a row that is not there yet.
"""

from django.dispatch import Signal

# An order was created or updated by its channel. Arguments: organization_id, order_id, created.
order_received = Signal()
# An order became ready to route (a hold lifted, a mapping fixed). Arguments: organization_id, order_id.
order_ready = Signal()
